//! Who may do what in a room: the capability tokens, the one check every room route and the
//! WebSocket go through, and the JSON error every refusal is answered with.
//!
//! A private room that the request has no valid token for answers exactly as a room that does not
//! exist, and refusals cost the address a token of its lookup bucket: room names cannot be
//! discovered by guessing.

use crate::archive;
use crate::digest::hex;
use crate::event_log::EventLogError;
use crate::state::AppState;
use crate::storage::RoomRow;
use app::protocol::{PhotoSummary, RoomId};
use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use tracing::warn;

/// Errors of the JSON API, each with a status, a stable code and a message for the user.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{1}")]
    BadRequest(&'static str, String),
    #[error("this action needs the room's owner token")]
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
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Timeout(String),
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
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Self::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "timeout"),
        }
    }

    /// The answer for a room that does not exist or that the request may not see.
    pub fn no_room(room: &str) -> Self {
        Self::NotFound(
            "room_not_found",
            format!("there is no room {room}, or it is private: open it with its invitation link"),
        )
    }
}

impl From<EventLogError> for ApiError {
    fn from(err: EventLogError) -> Self {
        match err {
            EventLogError::NoSuchRoom(room) => Self::no_room(room.as_str()),
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

pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

pub fn new_token() -> Result<String, ApiError> {
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

/// Checks that the room exists and the request from `peer` may enter it with `need`. Opening an
/// archived room brings it back.
pub async fn authorize(
    state: &AppState,
    peer: IpAddr,
    raw_room: &str,
    headers: &HeaderMap,
    query: &TokenQuery,
    need: Access,
) -> Result<(RoomId, Access), ApiError> {
    let lookups = &state.inner.lookup_rate;
    if let Err(wait) = lookups.peek(peer) {
        return Err(ApiError::RateLimited(wait.as_secs().max(1)));
    }
    let refused = |err: ApiError| {
        // Only refusals cost: members going about their room never run out.
        let _ = lookups.check(peer);
        err
    };
    let room = RoomId::parse(raw_room).map_err(|err| refused(ApiError::BadRequest("bad_room_id", err.to_string())))?;
    let token = request_token(headers, query).map(str::to_owned);
    let storage = state.inner.events.storage().clone();
    let id = room.clone();
    let row = tokio::task::spawn_blocking(move || storage.room(id.as_str()))
        .await
        .map_err(|_| ApiError::Unavailable("try again".into()))?
        .map_err(|err| ApiError::from(EventLogError::from(err)))?
        .ok_or_else(|| refused(ApiError::no_room(room.as_str())))?;
    let access = check(&row, token.as_deref(), need).map_err(refused)?;
    if row.archived_at.is_some() {
        archive::restore(state, &room).await;
    }
    Ok((room, access))
}

/// Whether a member may cancel or remove `photo`: its uploader (same id) or the room's owner.
/// Photos that name no uploader (API uploads, older rooms) are the owner's to take away.
pub fn may_take_away(photo: &PhotoSummary, member: Option<&str>, owner: bool) -> bool {
    owner || (member.is_some() && photo.uploader.as_deref() == member)
}

fn check(row: &RoomRow, token: Option<&str>, need: Access) -> Result<Access, ApiError> {
    let hash = token.map(token_hash);
    let is_owner = hash.is_some() && hash == row.owner_hash;
    let is_member = hash.is_some() && hash == row.join_hash;
    match need {
        Access::Owner if is_owner => Ok(Access::Owner),
        Access::Owner if !(is_member || row.public) => Err(ApiError::no_room(&row.id)),
        Access::Owner if token.is_none() => Err(ApiError::MissingToken),
        Access::Owner => Err(ApiError::Forbidden("only the room's owner can do this".into())),
        Access::Member if is_owner => Ok(Access::Owner),
        Access::Member if is_member || row.public => Ok(Access::Member),
        // Without a valid token a private room is indistinguishable from no room at all.
        Access::Member => Err(ApiError::no_room(&row.id)),
    }
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
        let hidden = |r: Result<Access, ApiError>| matches!(r, Err(ApiError::NotFound("room_not_found", _)));
        assert!(hidden(check(&private, None, Access::Member)));
        assert!(hidden(check(&private, Some("guess"), Access::Member)));
        assert!(hidden(check(&private, Some("guess"), Access::Owner)));
        assert_eq!(check(&private, Some("join"), Access::Member).ok(), Some(Access::Member));
        assert_eq!(check(&private, Some("owner"), Access::Member).ok(), Some(Access::Owner));
        assert!(matches!(check(&private, Some("join"), Access::Owner), Err(ApiError::Forbidden(_))));
        assert_eq!(check(&row(true), None, Access::Member).ok(), Some(Access::Member));
        assert!(matches!(check(&row(true), None, Access::Owner), Err(ApiError::MissingToken)));
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let (a, b) = (new_token().expect("random"), new_token().expect("random"));
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
