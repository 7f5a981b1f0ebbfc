//! Who an HTTP upload comes from: each open room connection gets a random `upload_key` in its
//! `welcome`, and an upload that carries it is shown as that member's. A name in a header could
//! be anyone's; a key is only known to its connection.

use crate::digest::hex;
use app::protocol::RoomId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The `upload_key`s of open room connections: who an HTTP upload comes from.
#[derive(Default)]
pub struct UploadKeys {
    keys: Mutex<HashMap<String, (RoomId, String)>>,
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
    /// A fresh key naming `name` in `room`; `None` only when no randomness is available.
    pub fn register(self: &Arc<Self>, room: &RoomId, name: &str) -> Option<UploadKey> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).ok()?;
        let key = hex(&bytes);
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), (room.clone(), name.to_owned()));
        Some(UploadKey { keys: self.clone(), key })
    }

    /// The member name behind `key`, if it belongs to an open connection to `room`.
    pub fn name_for(&self, room: &RoomId, key: &str) -> Option<String> {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.get(key).filter(|(r, _)| r == room).map(|(_, name)| name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_keys_name_their_member_in_their_room_only_while_open() {
        let keys = Arc::new(UploadKeys::default());
        let (a, b) = (RoomId::parse("a").expect("id"), RoomId::parse("b").expect("id"));
        let key = keys.register(&a, "Ana").expect("key");
        assert_eq!(keys.name_for(&a, key.key()).as_deref(), Some("Ana"));
        assert_eq!(keys.name_for(&b, key.key()), None, "not in another room");
        assert_eq!(keys.name_for(&a, "guess"), None);
        let k = key.key().to_owned();
        drop(key);
        assert_eq!(keys.name_for(&a, &k), None, "gone with the connection");
    }
}
