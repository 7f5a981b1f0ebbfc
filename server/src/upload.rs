//! `PUT /api/rooms/{room}/photos/{photo_id}`: a photo's bytes, stored durably before the answer.
//!
//! The id is the SHA-256 of the bytes, computed by the client. The server checks it, so a retried
//! upload lands on the same id and never duplicates, and a corrupted transfer is refused instead
//! of stored. A 201 means the file is fsynced and the room's `photo_queued` event is committed;
//! a 200 means the room already had this photo.
//!
//! Nothing is read before the room, the token and the rate limit are checked. The body is then
//! streamed to a temporary file unique to this request while it is hashed, under a size limit and
//! a deadline, so an upload costs a small buffer, not its size, in memory. The image check that
//! follows decodes with bounded memory, a few at a time.

use crate::access::{Access, ApiError, TokenQuery, authorize};
use crate::digest::{hex, is_sha256_hex};
use crate::durable;
use crate::event_log::EventLogError;
use crate::layout::photo_path;
use crate::state::AppState;
use crate::storage::{NewPhoto, StorageError};
use crate::text;
use crate::uploaders::Uploader;
use app::protocol::RoomId;
use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::Ordering;
use tokio::io::AsyncWriteExt;
use tracing::{Instrument, info, info_span, warn};

/// The header carrying the photo's original file name, for display only: UTF-8, percent-encoded
/// (RFC 8187 `UTF-8''…` or plain), or ASCII.
pub const NAME_HEADER: &str = "x-photo-name";
/// The header carrying the `upload_key` of the uploader's room connection (see `welcome`).
pub const SESSION_HEADER: &str = "x-vestige-session";
/// Who an upload is shown as when it names no open room connection.
pub const ANONYMOUS_UPLOADER: &str = "API upload";

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the photo id must be the SHA-256 of the bytes, as 64 lowercase hex digits")]
    BadPhotoId,
    #[error("the bytes do not match the photo id (SHA-256 {actual}); the upload was corrupted, send it again")]
    HashMismatch { actual: String },
    #[error("the photo is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("could not read the upload: {0}")]
    Body(String),
    #[error("the upload took longer than {0} s; send it again over a faster connection")]
    BodyTimeout(u64),
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
            Self::BadPhotoId => (StatusCode::BAD_REQUEST, "bad_photo_id"),
            Self::HashMismatch { .. } => (StatusCode::BAD_REQUEST, "hash_mismatch"),
            Self::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Self::Body(_) => (StatusCode::BAD_REQUEST, "bad_body"),
            Self::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "timeout"),
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
        let mut response =
            (status, Json(serde_json::json!({ "error": code, "message": self.to_string() }))).into_response();
        if matches!(self, Self::TooLarge { .. } | Self::BodyTimeout(_)) {
            // The rest of the body was not read; the connection cannot carry another request.
            response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
        }
        response
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
    body: Body,
) -> Result<(StatusCode, Json<Uploaded>), UploadError> {
    let rejected = |err: UploadError| {
        state.inner.uploads_rejected.fetch_add(1, Ordering::Relaxed);
        err
    };
    let (room, _) = authorize(&state, peer.ip(), &raw_room, &headers, &query, Access::Member).await?;
    if let Err(wait) = state.inner.upload_rate.check(peer.ip()) {
        return Err(rejected(ApiError::RateLimited(wait.as_secs().max(1)).into()));
    }
    if !is_sha256_hex(&photo_id) {
        return Err(rejected(UploadError::BadPhotoId));
    }
    let limit = state.inner.max_upload_bytes;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(rejected(UploadError::TooLarge { limit }));
    }
    let name = headers.get(NAME_HEADER).and_then(|v| text::decode_header(v.as_bytes())).map(|n| text::clean(&n, 200));
    let by = headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|key| state.inner.upload_keys.uploader_for(&room, key))
        .unwrap_or_else(|| Uploader::anonymous(ANONYMOUS_UPLOADER));
    let span = info_span!("photo", room = %room, photo = %&photo_id[..12]);
    let tmp = durable::partial_path(&photo_path(&state.inner.data_dir, &room, &photo_id));
    let received = receive(body, &tmp, limit, state.inner.body_timeout).instrument(span.clone()).await;
    let (actual, size) = match received {
        Ok(received) => received,
        Err(err) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(rejected(err));
        }
    };
    if actual != photo_id {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(rejected(UploadError::HashMismatch { actual }));
    }
    let name = name.filter(|n| !n.is_empty());
    let uploaded = ingest_file(&state, &room, &actual, tmp, size, name, by).instrument(span).await?;
    let status = if uploaded.duplicate { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(uploaded)))
}

/// Streams `body` into `tmp` while hashing it; fsyncs it. Returns the SHA-256 and the size.
async fn receive(
    body: Body,
    tmp: &FsPath,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<(String, u64), UploadError> {
    let storage = |err: std::io::Error| {
        warn!(%err, path = %tmp.display(), "cannot write an upload");
        UploadError::Storage
    };
    if let Some(dir) = tmp.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(storage)?;
    }
    let file = tokio::fs::File::create(tmp).await.map_err(storage)?;
    let mut file = tokio::io::BufWriter::with_capacity(256 * 1024, file);
    let mut hasher = Sha256::new();
    let mut size = 0usize;
    let mut chunks = body.into_data_stream();
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let chunk = tokio::time::timeout_at(until, chunks.next())
            .await
            .map_err(|_| UploadError::BodyTimeout(deadline.as_secs()))?;
        let Some(chunk) = chunk else { break };
        let chunk = chunk.map_err(|err| UploadError::Body(err.to_string()))?;
        size += chunk.len();
        if size > limit {
            return Err(UploadError::TooLarge { limit });
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(storage)?;
    }
    file.flush().await.map_err(storage)?;
    file.into_inner().sync_all().await.map_err(storage)?;
    Ok((hex(&hasher.finalize()), size as u64))
}

/// The WebSocket `upload_image` path: the bytes are already in memory. `photo_id`, when given,
/// must be their SHA-256.
pub async fn ingest_bytes(
    state: &AppState,
    room: &RoomId,
    photo_id: Option<String>,
    name: Option<String>,
    by: Uploader,
    bytes: Vec<u8>,
) -> Result<Uploaded, UploadError> {
    let rejected = |err: UploadError| {
        state.inner.uploads_rejected.fetch_add(1, Ordering::Relaxed);
        err
    };
    if photo_id.as_deref().is_some_and(|id| !is_sha256_hex(id)) {
        return Err(rejected(UploadError::BadPhotoId));
    }
    let actual = crate::digest::sha256_hex(&bytes);
    if photo_id.is_some_and(|id| id != actual) {
        return Err(rejected(UploadError::HashMismatch { actual }));
    }
    let tmp = durable::partial_path(&photo_path(&state.inner.data_dir, room, &actual));
    let size = bytes.len() as u64;
    let written = {
        let tmp = tmp.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            if let Some(dir) = tmp.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut file = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut file, &bytes)?;
            file.sync_all()
        })
        .await
    };
    if !matches!(written, Ok(Ok(()))) {
        let _ = std::fs::remove_file(&tmp);
        return Err(rejected(UploadError::Storage));
    }
    let span = info_span!("photo", room = %room, photo = %&actual[..12]);
    ingest_file(state, room, &actual, tmp, size, name, by).instrument(span).await
}

/// Checks, stores and queues a received photo whose bytes are in the fsynced temporary file
/// `tmp` and hash to `photo_id`: the path shared by the HTTP upload and `upload_image`.
async fn ingest_file(
    state: &AppState,
    room: &RoomId,
    photo_id: &str,
    tmp: PathBuf,
    size: u64,
    name: Option<String>,
    by: Uploader,
) -> Result<Uploaded, UploadError> {
    let shared = state.inner.clone();
    let stored = async {
        check_image(state, &tmp).await?;
        let (state, room, photo_id) = (state.clone(), room.clone(), photo_id.to_owned());
        tokio::task::spawn_blocking(move || store(&state, &room, &photo_id, &tmp, size, name, &by))
            .instrument(info_span!("store"))
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

/// Refuses what the reconstruction could never use, before acknowledging it: wrong format,
/// truncated data, absurd dimensions. At most `--image-checks` run at once, each with memory
/// bounded by the file's size, not by the pixel count its header claims.
async fn check_image(state: &AppState, tmp: &FsPath) -> Result<(), UploadError> {
    let cleanup = |err: UploadError| {
        let _ = std::fs::remove_file(tmp);
        err
    };
    let _slot = state.inner.image_checks.acquire().await.map_err(|_| UploadError::Storage)?;
    let path = tmp.to_owned();
    let checked = tokio::task::spawn_blocking(move || -> Result<(), UploadError> {
        use recon::ReconError;
        let bytes = std::fs::read(&path).map_err(|_| UploadError::Storage)?;
        let max_pixels = recon::Settings::default().max_input_pixels;
        match recon::decode::validate_photo(&bytes, max_pixels) {
            Ok(_) => Ok(()),
            Err(
                err @ (ReconError::EmptyInput
                | ReconError::UnsupportedFormat
                | ReconError::ImageTooLarge { .. }
                | ReconError::ImageTooSmall { .. }),
            ) => Err(UploadError::Unsupported(err.to_string())),
            Err(err) => Err(UploadError::Undecodable(err.to_string())),
        }
    })
    .await;
    match checked {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(cleanup(err)),
        Err(_) => Err(cleanup(UploadError::Storage)),
    }
}

/// Puts the checked file in place and records the photo. Runs on a blocking thread.
fn store(
    state: &AppState,
    room: &RoomId,
    photo_id: &str,
    tmp: &FsPath,
    size: u64,
    name: Option<String>,
    by: &Uploader,
) -> Result<Uploaded, UploadError> {
    let path = photo_path(&state.inner.data_dir, room, photo_id);
    // The same photo uploaded twice at once: whichever lands first stays, the other's
    // identical bytes are dropped. Either way the file is whole and durable before the record.
    durable::publish(tmp, &path).map_err(|err| {
        warn!(%err, path = %path.display(), "cannot write photo");
        let _ = std::fs::remove_file(tmp);
        UploadError::Storage
    })?;
    let name = name.unwrap_or_else(|| format!("{}.jpg", &photo_id[..12]));
    let new = NewPhoto { id: photo_id, name: &name, by: &by.name, uploader: by.id.as_deref(), bytes: size };
    match state.inner.events.append_photo(room, &new, state.inner.limits.max_photos_per_room) {
        Ok(Some((position, at))) => {
            info!(position, seq = at.seq, "photo queued");
            state.inner.pipeline.enqueue(room, photo_id);
            Ok(Uploaded { photo: photo_id.to_owned(), position: Some(position), seq: Some(at.seq), duplicate: false })
        }
        Ok(None) => Ok(Uploaded { photo: photo_id.to_owned(), position: None, seq: None, duplicate: true }),
        Err(EventLogError::Storage(StorageError::PhotoLimit(max))) => Err(UploadError::PhotoLimit(max)),
        Err(EventLogError::NoSuchRoom(room)) => Err(ApiError::no_room(room.as_str()).into()),
        Err(err @ (EventLogError::Storage(_) | EventLogError::Corrupt { .. })) => {
            warn!(%err, "cannot record photo");
            Err(UploadError::Storage)
        }
    }
}
