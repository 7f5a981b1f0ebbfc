//! `PUT /api/rooms/{room}/photos/{photo_id}`: a photo's bytes, stored durably before the answer.
//!
//! The id is the SHA-256 of the bytes, computed by the client. The server checks it, so a retried
//! upload lands on the same id and never duplicates, and a corrupted transfer is refused instead
//! of stored. A 201 means the file is fsynced and the room's `photo_queued` event is committed;
//! a 200 means the room already had this photo.

use crate::event_log::EventLogError;
use crate::room::{Access, ApiError, TokenQuery, authorize};
use crate::state::AppState;
use crate::storage::{NewPhoto, StorageError};
use app::protocol::RoomId;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use std::net::SocketAddr;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::atomic::Ordering;
use std::path::{Path as FsPath, PathBuf};
use tracing::{Instrument, info, info_span, warn};

/// The header carrying the photo's original file name, for display only.
pub const NAME_HEADER: &str = "x-photo-name";
/// The header carrying the uploader's display name.
pub const MEMBER_HEADER: &str = "x-member-name";

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{0}")]
    BadRoom(String),
    #[error("the photo id must be the SHA-256 of the bytes, as 64 lowercase hex digits")]
    BadPhotoId,
    #[error("the bytes do not match the photo id (SHA-256 {actual}); the upload was corrupted, send it again")]
    HashMismatch { actual: String },
    #[error("the photo is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("could not read the upload: {0}")]
    Body(String),
    #[error("not a photo Vestige can use: {0}")]
    Unsupported(String),
    #[error("the photo could not be decoded: {0}")]
    Undecodable(String),
    #[error("the photo could not be stored; nothing was kept, try again")]
    Storage,
    #[error("the room already has its maximum of {0} photos")]
    PhotoLimit(u64),
    #[error(transparent)]
    Room(#[from] ApiError),
}

impl UploadError {
    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRoom(_) => (StatusCode::BAD_REQUEST, "bad_room_id"),
            Self::BadPhotoId => (StatusCode::BAD_REQUEST, "bad_photo_id"),
            Self::HashMismatch { .. } => (StatusCode::BAD_REQUEST, "hash_mismatch"),
            Self::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Self::Body(_) => (StatusCode::BAD_REQUEST, "bad_body"),
            Self::Unsupported(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_image"),
            Self::Undecodable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "undecodable_image"),
            Self::Storage => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
            Self::PhotoLimit(_) => (StatusCode::CONFLICT, "photo_limit"),
            // Answered by the room's own response below.
            Self::Room(_) => (StatusCode::INTERNAL_SERVER_ERROR, "room"),
        }
    }
}

impl IntoResponse for UploadError {
    fn into_response(self) -> Response {
        if let Self::Room(err) = self {
            return err.into_response();
        }
        let (status, code) = self.status();
        (status, Json(serde_json::json!({ "error": code, "message": self.to_string() }))).into_response()
    }
}

#[derive(Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct Uploaded {
    pub photo: String,
    /// The photo's place in the room's upload order (1-based); absent for a repeat.
    pub position: Option<u32>,
    /// The seq of the `photo_queued` event; absent for a repeat.
    pub seq: Option<u64>,
    pub duplicate: bool,
}

pub async fn put_photo(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((raw_room, photo_id)): Path<(String, String)>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Uploaded>), UploadError> {
    let (room, _) = authorize(&state, &raw_room, &headers, &query, Access::Member).await?;
    if let Err(wait) = state.inner.upload_rate.check(peer.ip()) {
        state.inner.uploads_rejected.fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::RateLimited(wait.as_secs().max(1)).into());
    }
    let limit = state.inner.max_upload_bytes;
    let bytes = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => UploadError::TooLarge { limit },
        _ => UploadError::Body(rejection.body_text()),
    });
    let name = header_text(&headers, NAME_HEADER, 200);
    let by = header_text(&headers, MEMBER_HEADER, 40).unwrap_or_else(|| "someone".to_owned());
    let uploaded = match bytes {
        Ok(bytes) => ingest(&state, &room, Some(photo_id), name, by, bytes).await,
        Err(err) => {
            state.inner.uploads_rejected.fetch_add(1, Ordering::Relaxed);
            Err(err)
        }
    }?;
    let status = if uploaded.duplicate { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(uploaded)))
}

/// Checks, stores and queues one photo: the path shared by the HTTP upload and the WebSocket
/// `upload_image`. `photo_id`, when given, must be the SHA-256 of the bytes.
pub async fn ingest(
    state: &AppState,
    room: &RoomId,
    photo_id: Option<String>,
    name: Option<String>,
    by: String,
    bytes: Bytes,
) -> Result<Uploaded, UploadError> {
    let shared = state.inner.clone();
    let size = bytes.len() as u64;
    let stored = async {
        if photo_id.as_deref().is_some_and(|id| !is_sha256_hex(id)) {
            return Err(UploadError::BadPhotoId);
        }
        let span = info_span!("photo", room = %room, bytes = bytes.len());
        let state = state.clone();
        let room = room.clone();
        tokio::task::spawn_blocking(move || span.in_scope(|| store(&state, &room, photo_id.as_deref(), name, &by, &bytes)))
            .instrument(info_span!("upload"))
            .await
            .map_err(|_| UploadError::Storage)?
    }
    .await;
    match &stored {
        Ok(uploaded) if !uploaded.duplicate => {
            shared.uploads_accepted.fetch_add(1, Ordering::Relaxed);
            shared.upload_bytes.fetch_add(size, Ordering::Relaxed);
        }
        Ok(_) => {}
        Err(_) => {
            shared.uploads_rejected.fetch_add(1, Ordering::Relaxed);
        }
    }
    stored
}

/// Checks, writes and records one photo. Runs on a blocking thread: hashing, decoding and fsync
/// are all synchronous work.
fn store(
    state: &AppState,
    room: &RoomId,
    claimed_id: Option<&str>,
    name: Option<String>,
    by: &str,
    bytes: &[u8],
) -> Result<Uploaded, UploadError> {
    if bytes.is_empty() {
        return Err(UploadError::Unsupported("the file is empty".into()));
    }
    let actual = hex(&Sha256::digest(bytes));
    if claimed_id.is_some_and(|id| id != actual) {
        return Err(UploadError::HashMismatch { actual });
    }
    let photo_id = actual.as_str();
    check_image(bytes)?;
    let path = photo_path(&state.inner.data_dir, room, photo_id);
    if !path.exists() {
        write_durably(&path, bytes).map_err(|err| {
            warn!(%err, path = %path.display(), "cannot write photo");
            UploadError::Storage
        })?;
    }
    let name = name.unwrap_or_else(|| format!("{}.jpg", &photo_id[..12]));
    let new = NewPhoto { id: photo_id, name: &name, by, bytes: bytes.len() as u64 };
    match state.inner.events.append_photo(room, &new, state.inner.limits.max_photos_per_room) {
        Ok(Some((position, at))) => {
            info!(position, seq = at.seq, "photo queued");
            state.inner.pipeline.enqueue(room, photo_id);
            Ok(Uploaded { photo: photo_id.to_owned(), position: Some(position), seq: Some(at.seq), duplicate: false })
        }
        Ok(None) => Ok(Uploaded { photo: photo_id.to_owned(), position: None, seq: None, duplicate: true }),
        Err(EventLogError::Storage(StorageError::PhotoLimit(max))) => Err(UploadError::PhotoLimit(max)),
        Err(EventLogError::NoSuchRoom(room)) => {
            Err(ApiError::NotFound("room_not_found", format!("there is no room {room}")).into())
        }
        Err(err @ (EventLogError::Storage(_) | EventLogError::Corrupt { .. })) => {
            warn!(%err, "cannot record photo");
            Err(UploadError::Storage)
        }
    }
}

/// Refuses what the reconstruction could never use, before acknowledging it: wrong format,
/// truncated data, absurd dimensions. Decoding at a small size is enough to prove the file is
/// whole.
fn check_image(bytes: &[u8]) -> Result<(), UploadError> {
    use recon::ReconError;
    let settings = recon::Settings::default();
    match recon::decode::decode_photo(bytes, 256, settings.max_input_pixels) {
        Ok(_) => Ok(()),
        Err(err @ (ReconError::EmptyInput | ReconError::UnsupportedFormat | ReconError::ImageTooLarge { .. } | ReconError::ImageTooSmall { .. })) => {
            Err(UploadError::Unsupported(err.to_string()))
        }
        Err(err) => Err(UploadError::Undecodable(err.to_string())),
    }
}

pub fn photo_path(data_dir: &FsPath, room: &RoomId, photo_id: &str) -> PathBuf {
    data_dir.join("rooms").join(room.as_str()).join("photos").join(photo_id)
}

/// Writes through a temporary file, fsyncs it, renames it into place and fsyncs the directory:
/// after this returns, a power cut cannot lose or half-write the file.
pub fn write_durably(path: &FsPath, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| std::io::Error::other("no parent directory"))?;
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("part");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

fn is_sha256_hex(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A header's value as display text: valid UTF-8, no control characters, bounded.
fn header_text(headers: &HeaderMap, name: &str, max_chars: usize) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?;
    let text: String = value.chars().filter(|c| !c.is_control()).take(max_chars).collect();
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn photo_ids_are_lowercase_sha256_hex() {
        assert!(is_sha256_hex(&hex(&Sha256::digest(b"x"))));
        assert!(!is_sha256_hex(&"A".repeat(64)));
        assert!(!is_sha256_hex("../../etc/passwd"));
        assert!(!is_sha256_hex(&"a".repeat(63)));
    }

    #[test]
    fn durable_writes_replace_nothing_partially() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/photo");
        write_durably(&path, b"bytes").expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"bytes");
        assert!(!path.with_extension("part").exists());
    }
}
