//! Who an HTTP upload comes from: each open room connection gets a random `upload_key` in its
//! `welcome`, and an upload that carries it is shown as that member's. A name in a header could
//! be anyone's; a key is only known to its connection.
//!
//! An uploader also has an id, derived from the secret `key` its browser keeps (sent in
//! `hello`): photos carry it, and only that id (or the room's owner) may cancel or remove them.
//! The id is a hash, so showing it to everyone gives nobody the secret.

use crate::digest::{hex, sha256_hex};
use app::protocol::RoomId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The `upload_key`s of open room connections: who an HTTP upload comes from.
#[derive(Default)]
pub struct UploadKeys {
    keys: Mutex<HashMap<String, (RoomId, Uploader)>>,
}

/// Who a photo comes from: the name others see, and the id that may cancel or remove it
/// (`None` for uploads that name no connection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uploader {
    pub name: String,
    pub id: Option<String>,
}

impl Uploader {
    pub fn anonymous(name: &str) -> Self {
        Self { name: name.to_owned(), id: None }
    }
}

/// The public id of the holder of `secret` in `room`: unlinkable across rooms, and the secret
/// cannot be recovered from it.
pub fn uploader_id(room: &RoomId, secret: &str) -> String {
    sha256_hex(format!("vestige uploader\0{room}\0{secret}").as_bytes())[..32].to_owned()
}

/// A secret for a connection whose browser sent none: its photos are its own while it lasts.
pub fn fresh_secret() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(hex(&bytes))
}

/// One connection's key; it stops naming anyone when dropped.
pub struct UploadKey {
    keys: Arc<UploadKeys>,
    key: String,
}

impl UploadKey {
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl Drop for UploadKey {
    fn drop(&mut self) {
        self.keys.keys.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.key);
    }
}

impl UploadKeys {
    /// A fresh key naming `uploader` in `room`; `None` only when no randomness is available.
    pub fn register(self: &Arc<Self>, room: &RoomId, uploader: Uploader) -> Option<UploadKey> {
        let key = fresh_secret()?;
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), (room.clone(), uploader));
        Some(UploadKey { keys: self.clone(), key })
    }

    /// The member behind `key`, if it belongs to an open connection to `room`.
    pub fn uploader_for(&self, room: &RoomId, key: &str) -> Option<Uploader> {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.get(key).filter(|(r, _)| r == room).map(|(_, uploader)| uploader.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_keys_name_their_member_in_their_room_only_while_open() {
        let keys = Arc::new(UploadKeys::default());
        let (a, b) = (RoomId::parse("a").expect("id"), RoomId::parse("b").expect("id"));
        let ana = Uploader { name: "Ana".into(), id: Some(uploader_id(&a, "secret")) };
        let key = keys.register(&a, ana.clone()).expect("key");
        assert_eq!(keys.uploader_for(&a, key.key()), Some(ana));
        assert_eq!(keys.uploader_for(&b, key.key()), None, "not in another room");
        assert_eq!(keys.uploader_for(&a, "guess"), None);
        let k = key.key().to_owned();
        drop(key);
        assert_eq!(keys.uploader_for(&a, &k), None, "gone with the connection");
    }

    #[test]
    fn uploader_ids_differ_by_room_and_secret() {
        let (a, b) = (RoomId::parse("a").expect("id"), RoomId::parse("b").expect("id"));
        assert_eq!(uploader_id(&a, "s"), uploader_id(&a, "s"));
        assert_ne!(uploader_id(&a, "s"), uploader_id(&b, "s"));
        assert_ne!(uploader_id(&a, "s"), uploader_id(&a, "t"));
        assert_eq!(uploader_id(&a, "s").len(), 32);
    }
}
