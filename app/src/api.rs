//! The browser's calls to the server's HTTP API, and what it remembers in local storage.
//!
//! Browser-only: compiled with the `hydrate` feature.

use crate::protocol::RoomId;
use serde::Deserialize;

#[derive(Deserialize)]
struct Created {
    join_link: String,
}

#[derive(Deserialize)]
struct ApiError {
    message: String,
}

/// Creates a room; returns the path of its page with the join token.
pub async fn create_room(name: &str) -> Result<String, String> {
    let request = gloo_net::http::Request::post("/api/rooms")
        .json(&serde_json::json!({ "name": name }))
        .map_err(|err| err.to_string())?;
    let response = request.send().await.map_err(|_| "The server cannot be reached; try again.".to_owned())?;
    if response.ok() {
        let created: Created = response.json().await.map_err(|err| err.to_string())?;
        Ok(created.join_link)
    } else {
        Err(error_message(response).await)
    }
}

async fn error_message(response: gloo_net::http::Response) -> String {
    let status = response.status();
    response.json::<ApiError>().await.map(|e| e.message).unwrap_or_else(|_| format!("The server answered {status}."))
}

/// Why the room cannot be entered, if the server says it cannot (no room, no or wrong token);
/// `None` when it can or when the server is unreachable (then reconnecting may help).
pub async fn refusal(room: &RoomId, token: Option<&str>) -> Option<String> {
    let url = match token {
        Some(token) => format!("/api/rooms/{room}?token={token}"),
        None => format!("/api/rooms/{room}"),
    };
    let response = gloo_net::http::Request::get(&url).send().await.ok()?;
    matches!(response.status(), 401 | 403 | 404).then_some(())?;
    Some(error_message(response).await)
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

/// Keeps the room's token from the invitation link, so the room opens later without it; returns
/// the token to use.
pub fn remember_token(room: &RoomId, from_link: Option<String>) -> Option<String> {
    let key = format!("vestige.token.{room}");
    let storage = storage();
    match from_link {
        Some(token) => {
            if let Some(storage) = &storage {
                let _ = storage.set_item(&key, &token);
            }
            Some(token)
        }
        None => storage.and_then(|s| s.get_item(&key).ok().flatten()),
    }
}
