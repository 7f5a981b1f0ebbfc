//! The typed messages that travel between the browser and the server.
//!
//! One definition serves both ends: the server serialises these with serde_json, the WASM client
//! deserialises the same types, so a field cannot drift between them. Control messages are JSON
//! text frames tagged by `type`; bulk data (photos, point shards) travels over HTTP, never here.
//! `docs/protocol.md` shows an example of every message.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Bumped whenever a message changes incompatibly. The client states it in `hello`; the server
/// refuses versions it does not speak, so an old tab gets a clear message instead of garbage.
pub const PROTOCOL_VERSION: u32 = 1;

/// Frames larger than this are refused by the server before parsing.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// WebSocket close codes Vestige uses besides the standard ones (RFC 6455 leaves 4000-4999 to
/// applications). Clients decide from the code whether reconnecting can help.
pub mod close_code {
    /// The server is shutting down or restarting; reconnect with backoff.
    pub const GOING_AWAY: u16 = 1001;
    /// The client did not say `hello` in time or spoke an unsupported version; do not retry
    /// without reloading.
    pub const PROTOCOL_MISMATCH: u16 = 4000;
    /// Missing or wrong room token; retrying will not help.
    pub const UNAUTHORIZED: u16 = 4001;
    /// The room does not exist (or was deleted).
    pub const ROOM_NOT_FOUND: u16 = 4004;
    /// The client fell too far behind; reconnect and resume from the last (epoch, seq).
    pub const TOO_SLOW: u16 = 4008;
    /// The server could not serve the room right now (storage failure); retry with backoff.
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// A room's identifier as it appears in URLs and on disk.
///
/// Lowercase ASCII letters, digits and single inner hyphens, 1 to 64 characters: the same string
/// is a URL segment and a directory name, so anything that could mean a path (`..`, `/`, `\`,
/// NUL) or differ only by case is refused up front.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoomId(String);

/// Why a string is not a valid [`RoomId`]; the message tells the user what to type instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoomIdError {
    #[error("a room name cannot be empty")]
    Empty,
    #[error("a room name has at most {max} characters (got {got})", max = RoomId::MAX_LEN)]
    TooLong { got: usize },
    #[error(
        "a room name uses only lowercase letters, digits and hyphens (found {found:?} at position {at})"
    )]
    BadCharacter { found: char, at: usize },
    #[error("a room name cannot start or end with a hyphen, or contain two in a row")]
    BadHyphen,
}

impl RoomId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, RoomIdError> {
        if raw.is_empty() {
            return Err(RoomIdError::Empty);
        }
        let chars = raw.chars().count();
        if chars > Self::MAX_LEN {
            return Err(RoomIdError::TooLong { got: chars });
        }
        if let Some((at, found)) = raw
            .chars()
            .enumerate()
            .find(|(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(RoomIdError::BadCharacter { found, at });
        }
        if raw.starts_with('-') || raw.ends_with('-') || raw.contains("--") {
            return Err(RoomIdError::BadHyphen);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RoomId {
    type Error = RoomIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<RoomId> for String {
    fn from(value: RoomId) -> Self {
        value.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Messages a browser (or the CLI) sends to the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// First message on every connection.
    Hello {
        /// The client's [`PROTOCOL_VERSION`].
        version: u32,
        /// Display name chosen by the user; the server trims and bounds it.
        #[serde(default)]
        name: Option<String>,
        /// Where this client's copy of the room stream ends, when it had one. The server then
        /// sends exactly the events after it, or a fresh snapshot when it cannot.
        #[serde(default)]
        resume: Option<StreamPosition>,
    },
    /// Liveness probe; the server answers with the same nonce.
    Ping { nonce: u64 },
    /// A line of text for everyone in the room, appended to the room's stream.
    Note { text: String },
}

/// Messages the server sends to a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The answer to `hello`: the connection is established.
    Welcome {
        version: u32,
        room: RoomId,
        /// Unique for the server's lifetime; used in logs and presence.
        connection_id: u64,
        /// The server's crate version, shown in the page footer.
        server_version: String,
        /// The room stream's head when this connection joined it.
        head: StreamPosition,
    },
    /// The whole room state at `position`. `reset` is true when the client asked to resume but
    /// the events it missed are no longer available: it must replace, not merge, what it has.
    Snapshot { position: StreamPosition, reset: bool, room: RoomSnapshot },
    /// One event of the room stream. `seq` is exactly one more than the previous event's.
    Event { epoch: String, seq: u64, event: RoomEvent },
    Pong { nonce: u64 },
    /// Something the client sent was refused. The connection stays open unless a close frame
    /// follows, so one bad message never costs the user the session.
    Error { code: ErrorCode, message: String },
}

/// A position in a room's event stream: Centrifugo's (epoch, offset). `seq` counts events from 1
/// within an epoch; a new epoch means the history before it cannot be replayed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamPosition {
    pub epoch: String,
    pub seq: u64,
}

/// Something that happened in a room, in the order every member sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RoomEvent {
    /// A member sent a line of text to everyone (also how scripts and tests mark the stream).
    Note { by: String, text: String },
    /// A photo was stored durably and waits for reconstruction. `position` counts the room's
    /// photos from 1 in upload order.
    PhotoQueued { photo: String, name: String, by: String, bytes: u64, position: u32 },
}

/// A photo as the room lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhotoSummary {
    /// SHA-256 of the bytes, lowercase hex.
    pub id: String,
    pub name: String,
    pub by: String,
    pub status: PhotoState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhotoState {
    Queued,
}

/// Everything a newcomer needs to draw the room as it is now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RoomSnapshot {
    /// Notes in stream order, at most [`RoomSnapshot::MAX_NOTES`] of the latest.
    pub notes: Vec<String>,
    /// How many events the stream has carried in this epoch.
    pub events: u64,
    /// Every photo of the room, in upload order.
    #[serde(default)]
    pub photos: Vec<PhotoSummary>,
}

impl RoomSnapshot {
    pub const MAX_NOTES: usize = 50;

    /// Folds one event into the state; the server and a resuming client both use this, so a
    /// snapshot plus the events after it always equals the state at the newest event.
    pub fn apply(&mut self, event: &RoomEvent) {
        self.events += 1;
        match event {
            RoomEvent::Note { by, text } => {
                self.notes.push(format!("{by}: {text}"));
                if self.notes.len() > Self::MAX_NOTES {
                    let excess = self.notes.len() - Self::MAX_NOTES;
                    self.notes.drain(..excess);
                }
            }
            RoomEvent::PhotoQueued { photo, name, by, .. } => self.photos.push(PhotoSummary {
                id: photo.clone(),
                name: name.clone(),
                by: by.clone(),
                status: PhotoState::Queued,
            }),
        }
    }
}

/// Machine-readable error kinds; `message` carries the human-readable explanation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, or JSON that is not a known message.
    BadMessage,
    /// A text or binary frame larger than [`MAX_MESSAGE_BYTES`].
    TooLarge,
    /// Binary frames are not part of the control protocol.
    UnexpectedBinary,
    /// The message is valid but not allowed now (e.g. a second `hello`).
    OutOfOrder,
    UnsupportedVersion,
    /// The server could not carry the request out right now; retrying may work.
    Unavailable,
}

impl ClientMessage {
    pub fn to_json(&self) -> String {
        // Serialising these plain enums cannot fail: no maps with non-string keys, no floats
        // that JSON cannot hold.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl ServerMessage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_accept_plain_names() {
        for ok in ["auditorio", "a", "sceaux-castle-2", "0"] {
            assert_eq!(RoomId::parse(ok).map(|r| r.to_string()), Ok(ok.to_owned()));
        }
    }

    #[test]
    fn room_ids_refuse_path_tricks_and_odd_characters() {
        assert_eq!(RoomId::parse(""), Err(RoomIdError::Empty));
        assert!(matches!(RoomId::parse("../etc"), Err(RoomIdError::BadCharacter { found: '.', at: 0 })));
        assert!(matches!(RoomId::parse("a/b"), Err(RoomIdError::BadCharacter { found: '/', .. })));
        assert!(matches!(RoomId::parse("Auditorio"), Err(RoomIdError::BadCharacter { found: 'A', .. })));
        assert!(matches!(RoomId::parse("a\0b"), Err(RoomIdError::BadCharacter { .. })));
        assert!(matches!(RoomId::parse("café"), Err(RoomIdError::BadCharacter { found: 'é', at: 3 })));
        assert_eq!(RoomId::parse("-a"), Err(RoomIdError::BadHyphen));
        assert_eq!(RoomId::parse("a--b"), Err(RoomIdError::BadHyphen));
        assert_eq!(RoomId::parse(&"a".repeat(65)), Err(RoomIdError::TooLong { got: 65 }));
    }

    #[test]
    fn room_id_deserialisation_validates() {
        assert!(serde_json::from_str::<RoomId>("\"ok-room\"").is_ok());
        assert!(serde_json::from_str::<RoomId>("\"../x\"").is_err());
    }

    #[test]
    fn messages_use_a_type_tag() {
        let hello = ClientMessage::Hello { version: PROTOCOL_VERSION, name: Some("Ana".into()), resume: None };
        assert_eq!(hello.to_json(), r#"{"type":"hello","version":1,"name":"Ana","resume":null}"#);
        let parsed: ClientMessage = serde_json::from_str(r#"{"type":"ping","nonce":7}"#).unwrap();
        assert_eq!(parsed, ClientMessage::Ping { nonce: 7 });
        let welcome = ServerMessage::Welcome {
            version: 1,
            room: RoomId::parse("auditorio").unwrap(),
            connection_id: 3,
            server_version: "0.1.0".into(),
            head: StreamPosition { epoch: "e1".into(), seq: 4 },
        };
        let json = welcome.to_json();
        assert_eq!(serde_json::from_str::<ServerMessage>(&json).unwrap(), welcome);
        assert!(json.starts_with(r#"{"type":"welcome""#));
    }

    #[test]
    fn hello_without_name_is_accepted() {
        let parsed: ClientMessage = serde_json::from_str(r#"{"type":"hello","version":1}"#).unwrap();
        assert_eq!(parsed, ClientMessage::Hello { version: 1, name: None, resume: None });
    }

    #[test]
    fn snapshots_fold_events_and_keep_the_latest_notes() {
        let mut state = RoomSnapshot::default();
        for i in 0..(RoomSnapshot::MAX_NOTES + 5) {
            state.apply(&RoomEvent::Note { by: "Ana".into(), text: i.to_string() });
        }
        assert_eq!(state.events as usize, RoomSnapshot::MAX_NOTES + 5);
        assert_eq!(state.notes.len(), RoomSnapshot::MAX_NOTES);
        assert_eq!(state.notes.first().map(String::as_str), Some("Ana: 5"));
    }

    #[test]
    fn unknown_types_are_errors_not_panics() {
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"launch_missiles"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>("\u{0}\u{1}").is_err());
    }
}
