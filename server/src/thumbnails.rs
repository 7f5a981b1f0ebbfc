//! `GET /api/rooms/{room}/photos/{photo}/thumbnail`: a small JPEG of each photo, so every
//! member's cards show the photo and not only its name.
//!
//! Made once, on first request, from the stored photo (upright, after EXIF orientation) and kept
//! next to it; named by the photo's SHA-256 like shards, so it is served with an ETag and
//! `immutable` caching. Making one decodes the photo, so it takes an `--image-checks` slot like
//! the upload check: memory stays bounded however many cards ask at once.

use crate::access::{Access, ApiError, TokenQuery, authorize};
use crate::content_addressed;
use crate::digest::is_sha256_hex;
use crate::durable::write_durably;
use crate::layout::{photo_path, thumbnail_path};
use crate::state::AppState;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use std::net::SocketAddr;
use std::path::Path as FsPath;
use tracing::warn;

/// The longer side of a thumbnail, in pixels: sharp on a 48 CSS px card at 3x density.
pub const SIDE: u32 = 160;
const QUALITY: u8 = 80;

#[derive(Debug, thiserror::Error)]
pub enum ThumbnailError {
    #[error("the photo could not be read")]
    Read(#[source] std::io::Error),
    #[error("the photo could not be decoded: {0}")]
    Decode(#[from] recon::ReconError),
    #[error("the thumbnail could not be encoded: {0}")]
    Encode(String),
    #[error("the thumbnail could not be stored")]
    Write(#[source] std::io::Error),
}

/// A JPEG of `photo` whose longer side is at most [`SIDE`].
pub fn make(photo: &[u8]) -> Result<Vec<u8>, ThumbnailError> {
    let max_pixels = recon::Settings::default().max_input_pixels;
    let decoded = recon::decode::decode_photo(photo, SIDE, max_pixels)?;
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, QUALITY)
        .encode_image(&decoded.rgb)
        .map_err(|err| ThumbnailError::Encode(err.to_string()))?;
    Ok(out)
}

/// The thumbnail's bytes, made and stored first if it does not exist yet.
fn load_or_make(photo: &FsPath, thumbnail: &FsPath) -> Result<Vec<u8>, ThumbnailError> {
    if let Ok(bytes) = std::fs::read(thumbnail) {
        return Ok(bytes);
    }
    let bytes = make(&std::fs::read(photo).map_err(ThumbnailError::Read)?)?;
    // Two requests racing both write whole files under names of their own; either result is
    // the same thumbnail.
    write_durably(thumbnail, &bytes).map_err(ThumbnailError::Write)?;
    Ok(bytes)
}

pub async fn get_thumbnail(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((raw_room, photo)): Path<(String, String)>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (room, _) = authorize(&state, peer.ip(), &raw_room, &headers, &query, Access::Member).await?;
    if !is_sha256_hex(&photo) {
        return Err(ApiError::BadRequest("bad_photo_id", "a photo id is 64 lowercase hex digits".into()));
    }
    let etag = content_addressed::etag(&photo);
    if let Some(unchanged) = content_addressed::not_modified(&headers, &etag) {
        return Ok(unchanged);
    }
    let source = photo_path(&state.inner.data_dir, &room, &photo);
    if !tokio::fs::try_exists(&source).await.unwrap_or(false) {
        return Err(ApiError::NotFound("photo_not_found", "this room has no such photo".into()));
    }
    let target = thumbnail_path(&state.inner.data_dir, &room, &photo);
    let _slot = state.inner.image_checks.acquire().await.map_err(|_| ApiError::Unavailable("try again".into()))?;
    let made = tokio::task::spawn_blocking(move || load_or_make(&source, &target))
        .await
        .map_err(|_| ApiError::Unavailable("the thumbnail could not be made; try again".into()))?;
    let bytes = match made {
        Ok(bytes) => bytes,
        Err(err) => {
            warn!(%err, "no thumbnail");
            return Err(ApiError::Unavailable(format!("{err}; try again")));
        }
    };
    Ok(content_addressed::immutable(bytes, "image/jpeg", &etag))
}
