//! Rooms as resources: creation with an owner token and a join link, access checks for every
//! room route, listing, status, deletion, and archiving of idle rooms.
//!
//! Tokens are capabilities: 256 random bits, shown once at creation, stored only as SHA-256. A
//! private room (the default) answers 401 without a token and 403 with a wrong one; the owner
//! token can also delete the room. Public rooms need no token to join.

use crate::event_log::EventLogError;
use crate::shards::hex;
use crate::state::AppState;
use crate::storage::{NewRoom, RoomRow, now_unix};
use app::protocol::{PhotoCounts, RefinementInfo, RoomId, RoomSettings, StreamPosition};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;
use tracing::{info, warn};

/// Errors of the JSON API, each with a status, a stable code and a message for the user.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{1}")]
    BadRequest(&'static str, String),
    #[error("this room needs a token: open it with its invitation link")]
    MissingToken,
    #[error("{0}")]
    Forbidden(String),
    #[error("{1}")]
    NotFound(&'static str, String),
    #[error("{1}")]
    Limit(&'static str, String),
    #[error("too many requests from your address; retry in {0} s")]
    RateLimited(u64),
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(code, _) => (StatusCode::BAD_REQUEST, code),
            Self::MissingToken => (StatusCode::UNAUTHORIZED, "token_required"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(code, _) => (StatusCode::NOT_FOUND, code),
            Self::Limit(code, _) => (StatusCode::CONFLICT, code),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        }
    }
}

impl From<EventLogError> for ApiError {
    fn from(err: EventLogError) -> Self {
        match err {
            EventLogError::NoSuchRoom(room) => Self::NotFound("room_not_found", format!("there is no room {room}")),
            other => {
                warn!(err = %other, "storage failure");
                Self::Unavailable("the room could not be read; try again".into())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let mut response = (status, Json(serde_json::json!({ "error": code, "message": self.to_string() }))).into_response();
        if let Self::RateLimited(seconds) = self
            && let Ok(value) = seconds.to_string().parse()
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// `?token=` on room routes; the `Authorization: Bearer` header works too.
#[derive(Debug, Default, Deserialize)]
pub struct TokenQuery {
    pub token: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Member,
    Owner,
}

fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn new_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| ApiError::Unavailable("no randomness available; try again".into()))?;
    Ok(hex(&bytes))
}

/// The token a request carries, from the query or the Authorization header.
pub fn request_token<'a>(headers: &'a HeaderMap, query: &'a TokenQuery) -> Option<&'a str> {
    query.token.as_deref().filter(|t| !t.is_empty()).or_else(|| {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
    })
}

/// Checks that the room exists and the request may enter it with `need`. Opening an archived
/// room brings it back.
pub async fn authorize(
    state: &AppState,
    raw_room: &str,
    headers: &HeaderMap,
    query: &TokenQuery,
    need: Access,
) -> Result<(RoomId, Access), ApiError> {
    let room = RoomId::parse(raw_room).map_err(|err| ApiError::BadRequest("bad_room_id", err.to_string()))?;
    let token = request_token(headers, query).map(str::to_owned);
    let storage = state.inner.events.storage().clone();
    let id = room.clone();
    let row = tokio::task::spawn_blocking(move || storage.room(id.as_str()))
        .await
        .map_err(|_| ApiError::Unavailable("try again".into()))?
        .map_err(|err| ApiError::from(EventLogError::from(err)))?
        .ok_or_else(|| ApiError::NotFound("room_not_found", format!("there is no room {room}")))?;
    let access = check(&row, token.as_deref(), need)?;
    if row.archived_at.is_some() {
        restore(state, &room).await;
    }
    Ok((room, access))
}

fn check(row: &RoomRow, token: Option<&str>, need: Access) -> Result<Access, ApiError> {
    let hash = token.map(token_hash);
    let is_owner = hash.is_some() && hash == row.owner_hash;
    let is_member = hash.is_some() && hash == row.join_hash;
    match need {
        Access::Owner if is_owner => Ok(Access::Owner),
        Access::Owner if token.is_none() => Err(ApiError::MissingToken),
        Access::Owner => Err(ApiError::Forbidden("only the room's owner can do this".into())),
        Access::Member if is_owner => Ok(Access::Owner),
        Access::Member if is_member || row.public => Ok(Access::Member),
        Access::Member if token.is_none() => Err(ApiError::MissingToken),
        Access::Member => Err(ApiError::Forbidden("this link's token is not valid for this room".into())),
    }
}

async fn restore(state: &AppState, room: &RoomId) {
    let storage = state.inner.events.storage().clone();
    let pipeline = state.inner.pipeline.clone();
    let id = room.clone();
    let restored = tokio::task::spawn_blocking(move || {
        storage.set_archived(id.as_str(), None)?;
        // Photos that were waiting when it was archived continue.
        pipeline.recover().map(|_| ())
    })
    .await;
    match restored {
        Ok(Ok(())) => info!(room = %room, "archived room restored"),
        _ => warn!(room = %room, "could not restore an archived room"),
    }
}

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
    body: Result<Json<CreateRoom>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedRoom>), ApiError> {
    let Json(request) = body.map_err(|err| ApiError::BadRequest("bad_body", err.body_text()))?;
    let name: String = request.name.chars().filter(|c| !c.is_control()).collect::<String>().trim().to_owned();
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
        let storage = events.storage();
        if storage.room_count().map_err(EventLogError::from)? >= max_rooms {
            return Err(ApiError::Limit("room_limit", format!("this server holds its maximum of {max_rooms} rooms")));
        }
        for attempt in 0..20u32 {
            let candidate = if attempt == 0 { base.clone() } else { format!("{base}-{}", attempt + 1) };
            let Ok(id) = RoomId::parse(&candidate) else { continue };
            let new = NewRoom { id: id.as_str(), name: &display, public, owner_hash: &owner_hash, join_hash: &join_hash };
            if events.create_room(&new)? {
                return Ok(id);
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
    Path(raw_room): Path<String>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
) -> Result<Json<RoomStatus>, ApiError> {
    let (room, _) = authorize(&state, &raw_room, &headers, &query, Access::Member).await?;
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
    Path(raw_room): Path<String>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let (room, _) = authorize(&state, &raw_room, &headers, &query, Access::Owner).await?;
    let shared = state.inner.clone();
    let id = room.clone();
    tokio::task::spawn_blocking(move || -> Result<(), EventLogError> {
        shared.pipeline.forget(&id);
        shared.events.storage().delete_room(id.as_str())?;
        shared.events.unload(&id);
        let dir = shared.data_dir.join("rooms").join(id.as_str());
        if let Err(err) = std::fs::remove_dir_all(&dir)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            warn!(%err, dir = %dir.display(), "could not delete a deleted room's files");
        }
        Ok(())
    })
    .await
    .map_err(|_| ApiError::Unavailable("try again".into()))??;
    info!(room = %room, "room deleted by its owner");
    Ok(StatusCode::NO_CONTENT)
}

/// Archives rooms nobody has used for `idle`: they leave memory and are flagged in storage,
/// with every photo, event and model kept. Opening one restores it.
pub fn archive_idle(state: &AppState, idle: Duration) -> usize {
    let shared = &state.inner;
    let cutoff = now_unix() - idle.as_secs() as i64;
    let Ok(rows) = shared.events.storage().rooms() else { return 0 };
    let mut archived = 0;
    for row in rows.into_iter().filter(|r| r.archived_at.is_none() && r.last_active <= cutoff) {
        let Ok(room) = RoomId::parse(&row.id) else { continue };
        if shared.events.connections(&room) > 0 {
            continue;
        }
        if shared.events.storage().set_archived(&row.id, Some(now_unix())).is_ok() {
            shared.pipeline.forget(&room);
            shared.events.unload(&room);
            info!(room = %room, "idle room archived");
            archived += 1;
        }
    }
    archived
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(public: bool) -> RoomRow {
        RoomRow {
            id: "r".into(),
            name: "r".into(),
            public,
            owner_hash: Some(token_hash("owner")),
            join_hash: Some(token_hash("join")),
            created_at: 0,
            last_active: 0,
            archived_at: None,
        }
    }

    #[test]
    fn tokens_grant_what_they_should() {
        let private = row(false);
        assert!(matches!(check(&private, None, Access::Member), Err(ApiError::MissingToken)));
        assert!(matches!(check(&private, Some("guess"), Access::Member), Err(ApiError::Forbidden(_))));
        assert_eq!(check(&private, Some("join"), Access::Member).ok(), Some(Access::Member));
        assert_eq!(check(&private, Some("owner"), Access::Member).ok(), Some(Access::Owner));
        assert!(matches!(check(&private, Some("join"), Access::Owner), Err(ApiError::Forbidden(_))));
        assert_eq!(check(&row(true), None, Access::Member).ok(), Some(Access::Member));
        assert!(matches!(check(&row(true), None, Access::Owner), Err(ApiError::MissingToken)));
    }

    #[test]
    fn slugs_are_valid_room_ids() {
        for (name, want) in [("Auditorio", "auditorio"), ("Sceaux castle 2", "sceaux-castle-2"), ("  ¡¡", "room"), ("a//b", "a-b")] {
            assert_eq!(slug(name), want);
            assert!(RoomId::parse(&slug(name)).is_ok());
        }
        assert!(RoomId::parse(&slug(&"x".repeat(500))).is_ok());
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let (a, b) = (new_token().expect("random"), new_token().expect("random"));
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
