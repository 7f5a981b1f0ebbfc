//! One WebSocket connection to a room: the `hello` handshake, then the message loop.
//!
//! A bad frame earns an `error` message and the session continues; only a failed handshake,
//! an oversized frame (refused by the transport) or server shutdown closes it.

use crate::event_log::{Backlog, Joined};
use crate::state::AppState;
use app::protocol::{
    ClientMessage, ErrorCode, MAX_MESSAGE_BYTES, PROTOCOL_VERSION, RoomEvent, RoomId, ServerMessage,
    StreamPosition, close_code,
};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use tracing::{Instrument, debug, error, info, info_span, warn};

/// How long a client may stay silent after connecting before it must have said `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one frame may take to leave before the peer counts as gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_NOTE_CHARS: usize = 1000;
const MAX_NAME_CHARS: usize = 40;

pub async fn upgrade(
    Path(raw_room): Path<String>,
    State(state): State<AppState>,
    ws: WebSocketUpgrade,
) -> Response {
    let room = match RoomId::parse(&raw_room) {
        Ok(room) => room,
        Err(err) => {
            return (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({
                "error": "bad_room_id",
                "message": err.to_string(),
            })))
                .into_response();
        }
    };
    let connection_id = state.next_connection_id();
    let span = info_span!("session", room = %room, connection = connection_id);
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| run(socket, state, room, connection_id).instrument(span))
}

async fn run(mut socket: WebSocket, state: AppState, room: RoomId, connection_id: u64) {
    let _open = state.track_connection();
    let stopping = stopping(state.inner.shutdown.clone());
    tokio::pin!(stopping);
    info!("connected");

    let hello = match tokio::time::timeout(HELLO_TIMEOUT, handshake(&mut socket)).await {
        Ok(Ok(hello)) => hello,
        Ok(Err(Refusal { code, reason })) => {
            warn!(reason, "handshake refused");
            close(&mut socket, code, reason).await;
            return;
        }
        Err(_) => {
            close(&mut socket, close_code::PROTOCOL_MISMATCH, "no hello within 10 s").await;
            return;
        }
    };
    let events = state.inner.events.clone();
    let joined = {
        let room = room.clone();
        let resume = hello.resume.clone();
        tokio::task::spawn_blocking(move || events.join(&room, resume.as_ref())).await
    };
    let joined = match joined {
        Ok(Ok(joined)) => joined,
        Ok(Err(err)) => {
            error!(%err, "cannot open the room stream");
            close(&mut socket, close_code::INTERNAL_ERROR, "the room is unavailable, try again").await;
            return;
        }
        Err(err) => {
            error!(%err, "join task failed");
            close(&mut socket, close_code::INTERNAL_ERROR, "the room is unavailable, try again").await;
            return;
        }
    };
    let Joined { head, backlog, mut queue, membership } = joined;
    let welcome = ServerMessage::Welcome {
        version: PROTOCOL_VERSION,
        room: room.clone(),
        connection_id,
        server_version: env!("CARGO_PKG_VERSION").to_owned(),
        head,
    };
    if send(&mut socket, &welcome.to_json()).await.is_err() {
        return;
    }
    let backlog = match backlog {
        Backlog::UpToDate => Vec::new(),
        Backlog::Events(frames) => frames,
        Backlog::Snapshot { frame, .. } => vec![frame],
    };
    for frame in backlog {
        if send(&mut socket, &frame).await.is_err() {
            return;
        }
    }
    let author = hello.name;

    loop {
        tokio::select! {
            frame = socket.recv() => {
                let Some(Ok(frame)) = frame else { break };
                let reply = match frame {
                    Message::Text(text) => answer(&state, &room, author.as_deref(), &text).await,
                    Message::Binary(_) => Some(error(ErrorCode::UnexpectedBinary,
                        "binary frames are not part of the protocol; upload photos over HTTP")),
                    Message::Close(_) => break,
                    // The transport answers pings itself.
                    Message::Ping(_) | Message::Pong(_) => None,
                };
                if let Some(reply) = reply
                    && send(&mut socket, &reply.to_json()).await.is_err()
                {
                    break;
                }
            }
            frame = queue.recv() => {
                match frame {
                    Some(frame) => {
                        if send(&mut socket, &frame).await.is_err() {
                            break;
                        }
                    }
                    None => {
                        if membership.was_too_slow() {
                            warn!("client too slow, disconnecting");
                            close(&mut socket, close_code::TOO_SLOW, "too slow to keep up; resume from your last seq").await;
                        }
                        break;
                    }
                }
            }
            () = &mut stopping => {
                close(&mut socket, close_code::GOING_AWAY, "server shutting down").await;
                break;
            }
        }
    }
    info!("disconnected");
}

/// Resolves once the server starts shutting down (or its shutdown sender is gone).
async fn stopping(mut shutdown: tokio::sync::watch::Receiver<bool>) {
    // Map the guard away immediately: it is not `Send` and must not live across an await.
    let _ = shutdown.wait_for(|stopping| *stopping).await.map(|_| ());
}

struct Refusal {
    code: u16,
    reason: &'static str,
}

/// What the client said in its `hello`.
struct Hello {
    name: Option<String>,
    resume: Option<StreamPosition>,
}

/// Waits for the first text frame, which must be a `hello` in a version we speak.
async fn handshake(socket: &mut WebSocket) -> Result<Hello, Refusal> {
    let mismatch = |reason| Refusal { code: close_code::PROTOCOL_MISMATCH, reason };
    loop {
        let frame = match socket.recv().await {
            Some(Ok(frame)) => frame,
            _ => return Err(mismatch("connection closed before hello")),
        };
        let Message::Text(text) = frame else {
            if matches!(frame, Message::Close(_)) {
                return Err(mismatch("connection closed before hello"));
            }
            continue;
        };
        return match serde_json::from_str::<ClientMessage>(&text) {
            Ok(ClientMessage::Hello { version, name, resume }) if version == PROTOCOL_VERSION => {
                Ok(Hello { name: name.map(|n| clean_name(&n)).filter(|n| !n.is_empty()), resume })
            }
            Ok(ClientMessage::Hello { .. }) => Err(mismatch("unsupported protocol version")),
            Ok(_) | Err(_) => Err(mismatch("the first message must be hello")),
        };
    }
}

/// The reply to one text frame after the handshake, if it needs one.
async fn answer(state: &AppState, room: &RoomId, author: Option<&str>, text: &str) -> Option<ServerMessage> {
    match serde_json::from_str::<ClientMessage>(text) {
        Ok(ClientMessage::Ping { nonce }) => Some(ServerMessage::Pong { nonce }),
        Ok(ClientMessage::Hello { .. }) => {
            Some(error(ErrorCode::OutOfOrder, "hello was already received on this connection"))
        }
        Ok(ClientMessage::Note { text }) => {
            let text = text.trim();
            if text.is_empty() || text.chars().count() > MAX_NOTE_CHARS {
                return Some(error(ErrorCode::BadMessage, &format!("a note has 1 to {MAX_NOTE_CHARS} characters")));
            }
            let event = RoomEvent::Note { by: author.unwrap_or("someone").to_owned(), text: text.to_owned() };
            let events = state.inner.events.clone();
            let room = room.clone();
            // The event reaches this client through its own queue, like everyone else's copy.
            match tokio::task::spawn_blocking(move || events.append(&room, event)).await {
                Ok(Ok(_)) => None,
                Ok(Err(err)) => {
                    error!(%err, "cannot append a note");
                    Some(error(ErrorCode::Unavailable, "the note was not saved; try again"))
                }
                Err(_) => Some(error(ErrorCode::Unavailable, "the note was not saved; try again")),
            }
        }
        Err(err) => {
            debug!(%err, "bad message");
            Some(error(ErrorCode::BadMessage, &format!("not a valid message: {err}")))
        }
    }
}

/// Names are shown to others: keep them short and free of control characters.
fn clean_name(raw: &str) -> String {
    raw.chars().filter(|c| !c.is_control()).take(MAX_NAME_CHARS).collect::<String>().trim().to_owned()
}

fn error(code: ErrorCode, message: &str) -> ServerMessage {
    ServerMessage::Error { code, message: message.to_owned() }
}

/// Sends one frame, giving up on a peer that has stopped reading: its TCP window is full and
/// waiting longer would only hold resources.
async fn send(socket: &mut WebSocket, frame: &str) -> Result<(), ()> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(frame.into()))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame { code, reason: reason.into() };
    // The peer may already be gone; nothing useful to do about it.
    let _ = socket.send(Message::Close(Some(frame))).await;
}
