//! One WebSocket connection to a room: the `hello` handshake, then the message loop.
//!
//! A bad frame earns an `error` message and the session continues; only a failed handshake,
//! an oversized frame (refused by the transport) or server shutdown closes it.

use crate::state::AppState;
use app::protocol::{
    ClientMessage, ErrorCode, MAX_MESSAGE_BYTES, PROTOCOL_VERSION, RoomId, ServerMessage, close_code,
};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use tracing::{Instrument, debug, info, info_span, warn};

/// How long a client may stay silent after connecting before it must have said `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

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

    match tokio::time::timeout(HELLO_TIMEOUT, handshake(&mut socket)).await {
        Ok(Ok(())) => {}
        Ok(Err(Refusal { code, reason })) => {
            warn!(reason, "handshake refused");
            close(&mut socket, code, reason).await;
            return;
        }
        Err(_) => {
            close(&mut socket, close_code::PROTOCOL_MISMATCH, "no hello within 10 s").await;
            return;
        }
    }
    let welcome = ServerMessage::Welcome {
        version: PROTOCOL_VERSION,
        room: room.clone(),
        connection_id,
        server_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    if send(&mut socket, &welcome).await.is_err() {
        return;
    }

    loop {
        tokio::select! {
            frame = socket.recv() => {
                let Some(Ok(frame)) = frame else { break };
                let reply = match frame {
                    Message::Text(text) => answer(&text),
                    Message::Binary(_) => Some(error(ErrorCode::UnexpectedBinary,
                        "binary frames are not part of the protocol; upload photos over HTTP")),
                    Message::Close(_) => break,
                    // The transport answers pings itself.
                    Message::Ping(_) | Message::Pong(_) => None,
                };
                if let Some(reply) = reply
                    && send(&mut socket, &reply).await.is_err()
                {
                    break;
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

/// Waits for the first text frame, which must be a `hello` in a version we speak.
async fn handshake(socket: &mut WebSocket) -> Result<(), Refusal> {
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
            Ok(ClientMessage::Hello { version, .. }) if version == PROTOCOL_VERSION => Ok(()),
            Ok(ClientMessage::Hello { .. }) => Err(mismatch("unsupported protocol version")),
            Ok(_) | Err(_) => Err(mismatch("the first message must be hello")),
        };
    }
}

/// The reply to one text frame after the handshake.
fn answer(text: &str) -> Option<ServerMessage> {
    match serde_json::from_str::<ClientMessage>(text) {
        Ok(ClientMessage::Ping { nonce }) => Some(ServerMessage::Pong { nonce }),
        Ok(ClientMessage::Hello { .. }) => {
            Some(error(ErrorCode::OutOfOrder, "hello was already received on this connection"))
        }
        Err(err) => {
            debug!(%err, "bad message");
            Some(error(ErrorCode::BadMessage, &format!("not a valid message: {err}")))
        }
    }
}

fn error(code: ErrorCode, message: &str) -> ServerMessage {
    ServerMessage::Error { code, message: message.to_owned() }
}

async fn send(socket: &mut WebSocket, message: &ServerMessage) -> Result<(), axum::Error> {
    socket.send(Message::Text(message.to_json().into())).await
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame { code, reason: reason.into() };
    // The peer may already be gone; nothing useful to do about it.
    let _ = socket.send(Message::Close(Some(frame))).await;
}
