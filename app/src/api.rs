//! The browser's calls to the server's HTTP API, and what it remembers in local storage.
//!
//! Browser-only: compiled with the `hydrate` feature.

use crate::protocol::RoomId;
use serde::Deserialize;

#[derive(Deserialize)]
struct Created {
    id: String,
    join_link: String,
    owner_token: String,
}

#[derive(Deserialize)]
struct ApiError {
    message: String,
}

/// Creates a room; returns the path of its page with the join token. The owner token is kept
/// in this browser: it lets this browser cancel or remove anyone's photo in the room.
pub async fn create_room(name: &str) -> Result<String, String> {
    let request = gloo_net::http::Request::post("/api/rooms")
        .json(&serde_json::json!({ "name": name }))
        .map_err(|err| err.to_string())?;
    let response = request.send().await.map_err(|_| "The server cannot be reached; try again.".to_owned())?;
    if response.ok() {
        let created: Created = response.json().await.map_err(|err| err.to_string())?;
        if let Some(storage) = storage() {
            let _ = storage.set_item(&format!("vestige.owner.{}", created.id), &created.owner_token);
        }
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

/// The owner token of a room this browser created, if it did.
pub fn owner_token(room: &RoomId) -> Option<String> {
    storage()?.get_item(&format!("vestige.owner.{room}")).ok().flatten().filter(|t| !t.is_empty())
}

/// Who this browser is: kept in local storage, chosen in the lobby on the first visit.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    pub user: String,
    pub name: String,
    pub colour: String,
    /// The secret behind this browser's uploader id (see `hello`): never shown, never shared.
    pub key: String,
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    match web_sys::window().and_then(|w| w.crypto().ok()).map(|c| c.get_random_values_with_u8_array(&mut buffer)) {
        Some(Ok(_)) => buffer.iter().map(|b| format!("{b:02x}")).collect(),
        // No WebCrypto: Math.random is weak, but the key only guards against mistakes then.
        _ => (0..bytes).map(|_| format!("{:02x}", (js_sys::Math::random() * 256.0) as u8)).collect(),
    }
}

use crate::pages::COLOURS;

/// The stored identity; a fresh one (random id, no name yet) on a first visit.
pub fn identity() -> Identity {
    let storage = storage();
    let get = |key: &str| storage.as_ref().and_then(|s| s.get_item(key).ok().flatten()).filter(|v| !v.is_empty());
    let user = get("vestige.user").unwrap_or_else(|| {
        let id = format!("u-{:012x}", (js_sys::Math::random() * 2f64.powi(48)) as u64);
        if let Some(storage) = &storage {
            let _ = storage.set_item("vestige.user", &id);
        }
        id
    });
    let colour = get("vestige.colour").filter(|c| COLOURS.contains(&c.as_str())).unwrap_or_else(|| {
        COLOURS[(js_sys::Math::random() * COLOURS.len() as f64) as usize % COLOURS.len()].to_owned()
    });
    let key = get("vestige.key").filter(|k| k.len() >= 32).unwrap_or_else(|| {
        let key = random_hex(16);
        if let Some(storage) = &storage {
            let _ = storage.set_item("vestige.key", &key);
        }
        key
    });
    Identity { user, name: get("vestige.name").unwrap_or_default(), colour, key }
}

pub fn save_identity(name: &str, colour: &str) {
    if let Some(storage) = storage() {
        let _ = storage.set_item("vestige.name", name);
        let _ = storage.set_item("vestige.colour", colour);
    }
}

/// Rooms this browser has been in, newest first: (id, link path).
pub fn recent_rooms() -> Vec<(String, String)> {
    storage()
        .and_then(|s| s.get_item("vestige.recent").ok().flatten())
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_default()
}

pub fn remember_room(room: &RoomId, token: Option<&str>) {
    let link = match token {
        Some(token) => format!("/rooms/{room}?token={token}"),
        None => format!("/rooms/{room}"),
    };
    let mut rooms = recent_rooms();
    rooms.retain(|(id, _)| id != room.as_str());
    rooms.insert(0, (room.to_string(), link));
    rooms.truncate(12);
    if let (Some(storage), Ok(json)) = (storage(), serde_json::to_string(&rooms)) {
        let _ = storage.set_item("vestige.recent", &json);
    }
}
