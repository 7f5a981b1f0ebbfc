//! Rooms as resources: creation with an owner token and a join link, listing, status and
//! deletion. Who may enter is `crate::access`; archiving and expiry are `crate::archive`.
//!
//! Tokens are capabilities: 256 random bits, shown once at creation, stored only as SHA-256.
//! Creation is rate-limited per address and only rooms that are not archived count against the
//! server's room limit.

use crate::access::{Access, ApiError, TokenQuery, authorize, new_token, token_hash};
use crate::archive;
use crate::event_log::EventLogError;
use crate::state::AppState;
use crate::storage::{NewRoom, StorageError};
use crate::text;
use app::protocol::{PhotoCounts, RefinementInfo, RoomId, RoomSettings, StreamPosition};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use tracing::info;

#[derive(Debug, Deserialize)]
pub struct CreateRoom {
    pub name: String,
    /// Public rooms can be joined without a token. Default: private.
    #[serde(default)]
    pub public: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CreatedRoom {
    pub id: RoomId,
    pub name: String,
    pub public: bool,
    /// Lets its holder delete the room; shown only now.
    pub owner_token: String,
    /// The capability that joins the room, as carried by `join_link`.
    pub join_token: String,
    /// Path of the page to share: `/rooms/{id}?token={join_token}`.
    pub join_link: String,
}

const MAX_NAME_CHARS: usize = 80;

/// A room id from a display name: "Auditorio de León" becomes `auditorio-de-le-n`.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= 48 {
            break;
        }
    }
    let out = out.trim_end_matches('-').to_owned();
    if out.is_empty() { "room".to_owned() } else { out }
}

/// `POST /api/rooms`.
pub async fn create(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<CreateRoom>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedRoom>), ApiError> {
    if let Err(wait) = state.inner.room_creation_rate.check(peer.ip()) {
        return Err(ApiError::RateLimited(wait.as_secs().max(1)));
    }
    let Json(request) = body.map_err(|err| ApiError::BadRequest("bad_body", err.body_text()))?;
    let name = text::clean(&request.name, usize::MAX);
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::BadRequest("bad_room_name", format!("a room name has 1 to {MAX_NAME_CHARS} characters")));
    }
    let owner_token = new_token()?;
    let join_token = new_token()?;
    let max_rooms = state.inner.limits.max_rooms;
    let events = state.inner.events.clone();
    let (owner_hash, join_hash) = (token_hash(&owner_token), token_hash(&join_token));
    let base = slug(&name);
    let public = request.public;
    let display = name.clone();
    let id = tokio::task::spawn_blocking(move || -> Result<RoomId, ApiError> {
        for attempt in 0..20u32 {
            let candidate = if attempt == 0 { base.clone() } else { format!("{base}-{}", attempt + 1) };
            let Ok(id) = RoomId::parse(&candidate) else { continue };
            let new = NewRoom { id: id.as_str(), name: &display, public, owner_hash: &owner_hash, join_hash: &join_hash };
            match events.create_room_within(&new, max_rooms) {
                Ok(true) => return Ok(id),
                Ok(false) => {}
                Err(EventLogError::Storage(StorageError::RoomLimit(max))) => {
                    return Err(ApiError::Limit("room_limit", format!("this server holds its maximum of {max} rooms")));
                }
                Err(err) => return Err(err.into()),
            }
        }
        Err(ApiError::Limit("name_taken", "too many rooms have this name; choose another".into()))
    })
    .await
    .map_err(|_| ApiError::Unavailable("try again".into()))??;
    info!(room = %id, public, "room created");
    let join_link = format!("/rooms/{id}?token={join_token}");
    Ok((StatusCode::CREATED, Json(CreatedRoom { id, name, public, owner_token, join_token, join_link })))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RoomListing {
    pub id: String,
    pub name: String,
    pub public: bool,
    pub clients: usize,
    pub photos: u64,
    pub archived: bool,
    pub created_at: i64,
    pub last_active: i64,
}

/// `GET /api/rooms`: public rooms only; private rooms are not discoverable.
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<RoomListing>>, ApiError> {
    let events = state.inner.events.clone();
    let rooms = tokio::task::spawn_blocking(move || -> Result<Vec<RoomListing>, EventLogError> {
        let storage = events.storage();
        let mut out = Vec::new();
        for row in storage.rooms()?.into_iter().filter(|r| r.public) {
            let clients = RoomId::parse(&row.id).map(|id| events.connections(&id)).unwrap_or(0);
            out.push(RoomListing {
                photos: storage.photo_count(&row.id)?,
                clients,
                archived: row.archived_at.is_some(),
                id: row.id,
                name: row.name,
                public: row.public,
                created_at: row.created_at,
                last_active: row.last_active,
            });
        }
        Ok(out)
    })
    .await
    .map_err(|_| ApiError::Unavailable("try again".into()))??;
    Ok(Json(rooms))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RoomStatus {
    pub id: RoomId,
    pub name: String,
    pub public: bool,
    pub clients: usize,
    pub photos: PhotoCounts,
    pub points: u64,
    pub head: StreamPosition,
    pub last_refinement: Option<RefinementInfo>,
    pub settings: RoomSettings,
}

/// `GET /api/rooms/{id}`.
pub async fn status(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(raw_room): Path<String>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
) -> Result<Json<RoomStatus>, ApiError> {
    let (room, _) = authorize(&state, peer.ip(), &raw_room, &headers, &query, Access::Member).await?;
    let events = state.inner.events.clone();
    let id = room.clone();
    let (head, snapshot, row) = tokio::task::spawn_blocking(move || -> Result<_, EventLogError> {
        let (head, snapshot) = events.status(&id)?;
        let row = events.storage().room(id.as_str())?;
        Ok((head, snapshot, row))
    })
    .await
    .map_err(|_| ApiError::Unavailable("try again".into()))??;
    let row = row.ok_or_else(|| ApiError::NotFound("room_not_found", format!("there is no room {room}")))?;
    Ok(Json(RoomStatus {
        clients: state.inner.events.connections(&room),
        id: room,
        name: row.name,
        public: row.public,
        photos: snapshot.counts(),
        points: snapshot.manifest.points(),
        head,
        last_refinement: snapshot.last_refinement,
        settings: snapshot.settings,
    }))
}

/// `DELETE /api/rooms/{id}` with the owner token: the room, its stream, photos and model go.
pub async fn delete(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(raw_room): Path<String>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let (room, _) = authorize(&state, peer.ip(), &raw_room, &headers, &query, Access::Owner).await?;
    let shared = state.inner.clone();
    let id = room.clone();
    tokio::task::spawn_blocking(move || archive::remove(&shared, &id))
        .await
        .map_err(|_| ApiError::Unavailable("try again".into()))?
        .map_err(EventLogError::from)?;
    info!(room = %room, "room deleted by its owner");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_valid_room_ids() {
        for (name, want) in [("Auditorio", "auditorio"), ("Sceaux castle 2", "sceaux-castle-2"), ("  ¡¡", "room"), ("a//b", "a-b")] {
            assert_eq!(slug(name), want);
            assert!(RoomId::parse(&slug(name)).is_ok());
        }
        assert!(RoomId::parse(&slug(&"x".repeat(500))).is_ok());
    }
}
