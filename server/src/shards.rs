//! Point shards on disk, content-addressed, and the route that serves them.
//!
//! A shard's name is the SHA-256 of its bytes (format in `app::shard`), so a shard never
//! changes once written: the server answers with an ETag and `immutable` caching, and a client
//! that already holds a shard never fetches it again, even across refinements.

use crate::access::{Access, ApiError, TokenQuery, authorize};
use crate::content_addressed;
use crate::digest::hex;
use crate::durable::write_durably;
use crate::state::AppState;
use app::protocol::{RoomId, ShardRef};
use app::shard::{self, ShardPoint};
use axum::extract::{ConnectInfo, Path, Query, State};
use std::net::SocketAddr;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::path::{Path as FsPath, PathBuf};

#[derive(Clone, Debug)]
pub struct ShardStore {
    data_dir: PathBuf,
}

impl ShardStore {
    pub fn new(data_dir: &FsPath) -> Self {
        Self { data_dir: data_dir.to_owned() }
    }

    pub fn path(&self, room: &RoomId, hash: &str) -> PathBuf {
        self.data_dir.join("rooms").join(room.as_str()).join("shards").join(hash)
    }

    /// Stores one shard durably; `None` when there are no points to store.
    pub fn put(&self, room: &RoomId, points: &[recon::Point]) -> std::io::Result<Option<ShardRef>> {
        if points.is_empty() {
            return Ok(None);
        }
        let points: Vec<ShardPoint> =
            points.iter().map(|p| ShardPoint { position: p.position, color: p.color }).collect();
        let bytes = shard::encode(&points);
        let hash = hex(&Sha256::digest(&bytes));
        let path = self.path(room, &hash);
        // Same name, same bytes: a shard that exists is already complete.
        if !path.exists() {
            write_durably(&path, &bytes)?;
        }
        Ok(Some(ShardRef { hash, points: points.len() as u32 }))
    }

    /// Stores a whole model as shards of at most [`shard::MAX_POINTS`] points.
    pub fn put_all(&self, room: &RoomId, points: &[recon::Point]) -> std::io::Result<Vec<ShardRef>> {
        points.chunks(shard::MAX_POINTS).filter_map(|chunk| self.put(room, chunk).transpose()).collect()
    }
}

fn is_hash(s: &str) -> bool {
    crate::digest::is_sha256_hex(s)
}

/// `GET /api/rooms/{room}/shards/{hash}`.
pub async fn get_shard(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((raw_room, hash)): Path<(String, String)>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (room, _) = authorize(&state, peer.ip(), &raw_room, &headers, &query, Access::Member).await?;
    if !is_hash(&hash) {
        return Err(ApiError::BadRequest("bad_shard_hash", "a shard name is 64 lowercase hex digits".into()));
    }
    let etag = content_addressed::etag(&hash);
    if let Some(unchanged) = content_addressed::not_modified(&headers, &etag) {
        return Ok(unchanged);
    }
    let path = state.inner.pipeline.shards().path(&room, &hash);
    let bytes = match tokio::fs::read(&path).await {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::NotFound("shard_not_found", "this room has no such shard".into()));
        }
        Err(_) => return Err(ApiError::Unavailable("the shard could not be read; try again".into())),
    };
    Ok(content_addressed::immutable(bytes, "application/octet-stream", &etag))
}

/// `GET /api/rooms/{room}/model.ply`: every point at full precision, binary PLY.
pub async fn model_ply(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(raw_room): Path<String>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (room, _) = authorize(&state, peer.ip(), &raw_room, &headers, &query, Access::Member).await?;
    let model = current_model(&state, &room).await?;
    let bytes = tokio::task::spawn_blocking(move || recon::export::ply_bytes(&model.points))
        .await
        .map_err(|_| ApiError::Unavailable("the model could not be exported; try again".into()))?;
    Ok(download(bytes, "application/octet-stream", &format!("{room}.ply")))
}

/// `GET /api/rooms/{room}/cameras.json`: every photo with its pose when registered.
pub async fn cameras_json(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(raw_room): Path<String>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (room, _) = authorize(&state, peer.ip(), &raw_room, &headers, &query, Access::Member).await?;
    let model = current_model(&state, &room).await?;
    let events = state.inner.events.clone();
    let photos = {
        let room = room.clone();
        tokio::task::spawn_blocking(move || events.status(&room))
            .await
            .map_err(|_| ApiError::Unavailable("try again".into()))?
            .map_err(ApiError::from)?
            .1
            .photos
    };
    let ids: Vec<String> = photos.iter().map(|p| p.id.clone()).collect();
    let records: Vec<PhotoCamera> = recon::export::camera_records(&ids, &model.cameras)
        .into_iter()
        .zip(&photos)
        .map(|(record, photo)| PhotoCamera {
            photo: record.image,
            image: photo.name.clone(),
            registered: record.registered,
            k: record.k,
            rotation: record.rotation,
            center: record.center,
        })
        .collect();
    let body = serde_json::to_vec_pretty(&records).map_err(|_| ApiError::Unavailable("try again".into()))?;
    Ok(download(body, "application/json", &format!("{room}-cameras.json")))
}

/// One photo of `cameras.json`: its id, its file name, and the pose keys of the datasets'
/// `ground_truth.json` (`K`, `R_world_to_camera`, `center`).
#[derive(serde::Serialize)]
struct PhotoCamera {
    photo: String,
    image: String,
    registered: bool,
    #[serde(rename = "K")]
    k: Option<[[f64; 3]; 3]>,
    #[serde(rename = "R_world_to_camera")]
    rotation: Option<[[f64; 3]; 3]>,
    center: Option<[f64; 3]>,
}

async fn current_model(state: &AppState, room: &RoomId) -> Result<std::sync::Arc<recon::Model>, ApiError> {
    let pipeline = state.inner.pipeline.clone();
    let room = room.clone();
    tokio::task::spawn_blocking(move || pipeline.model(&room))
        .await
        .map_err(|_| ApiError::Unavailable("the model could not be read; try again".into()))?
        .map_err(|err| ApiError::Unavailable(err.to_string()))
}

fn download(bytes: Vec<u8>, content_type: &'static str, file_name: &str) -> Response {
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}
