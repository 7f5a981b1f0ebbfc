//! One WebSocket connection to a room: access check, the `hello` handshake, then the message
//! loop with heartbeats.
//!
//! A bad frame earns an `error` message and the session continues; only a failed handshake, a
//! frame over the transport limit, a silent peer, falling behind, the room closing or server
//! shutdown close it, each with its documented close code.

use crate::access::{Access, ApiError, TokenQuery, authorize, may_take_away};
use crate::event_log::{Backlog, EndReason, JoinRequest, Joined, Membership};
use crate::pipeline::CommandError;
use crate::state::AppState;
use crate::text;
use crate::upload::{UploadError, ingest_bytes};
use crate::uploaders::{Uploader, fresh_secret, uploader_id};
use crate::ws_frames::{FrameGuard, Refusal};
use app::protocol::{
    ClientMessage, ErrorCode, MAX_MESSAGE_BYTES, PROTOCOL_VERSION, RoomEvent, RoomId, ServerMessage, StreamPosition,
    close_code,
};
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tracing::{Instrument, debug, error, info, info_span, warn};

type WebSocket = WebSocketStream<FrameGuard<TokioIo<hyper::upgrade::Upgraded>>>;

/// How long a client may stay silent after connecting before it must have said `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one frame may take to leave before the peer counts as gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_NOTE_CHARS: usize = 1000;
const MAX_NAME_CHARS: usize = 40;
const MAX_USER_CHARS: usize = 64;
/// Heartbeat intervals a peer may stay silent before it is dropped.
const MISSED_HEARTBEATS: u32 = 3;

pub async fn upgrade(
    Path(raw_room): Path<String>,
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
    mut request: Request,
) -> Response {
    // Refused before the upgrade, with an HTTP status and a JSON body a script or browser can read.
    let key = match websocket_key(&headers) {
        Ok(key) => key,
        Err(err) => return err.into_response(),
    };
    if !origin_allowed(&headers, &state.inner.allowed_origins) {
        return ApiError::Forbidden(
            "this page's origin may not open room connections; open Vestige from its own address".into(),
        )
        .into_response();
    }
    let (room, access) = match authorize(&state, peer.ip(), &raw_room, &headers, &query, Access::Member).await {
        Ok(entered) => entered,
        Err(err) => return err.into_response(),
    };
    let limit = state.inner.limits.max_clients_per_room;
    if state.inner.events.connections(&room) >= limit {
        return ApiError::Limit("room_full", format!("this room already has its maximum of {limit} connections"))
            .into_response();
    }
    let Some(on_upgrade) = request.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return ApiError::BadRequest("not_upgradable", "this connection cannot be upgraded to a WebSocket".into())
            .into_response();
    };
    let connection_id = state.next_connection_id();
    let span = info_span!("session", room = %room, connection = connection_id);
    // Big enough for an `upload_image` of the largest photo in base64; the frame guard holds
    // every other message to MAX_MESSAGE_BYTES from its header.
    let transport_limit = (state.inner.max_upload_bytes / 3 * 4 + 4096).max(MAX_MESSAGE_BYTES);
    // Small buffers: most connections are idle watchers, and the library's 128 KiB defaults
    // would cost that much per member. They grow when a large message needs it.
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(transport_limit))
        .max_frame_size(Some(transport_limit));
    tokio::spawn(
        async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(err) => {
                    debug!(%err, "upgrade failed");
                    return;
                }
            };
            let refusal = Refusal::default();
            let guarded =
                FrameGuard::new(TokioIo::new(upgraded), transport_limit as u64, state.inner.ws_budget.clone(), refusal.clone());
            let socket = WebSocketStream::from_raw_socket(guarded, Role::Server, Some(config)).await;
            let client = Client { connection_id, peer: peer.ip(), owner: access == Access::Owner };
            run(socket, config, refusal, state, room, client).await;
        }
        .instrument(span),
    );
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept_key(&key)) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// The client's `Sec-WebSocket-Key`, when the request is a WebSocket opening handshake.
fn websocket_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str().is_ok_and(|v| v.split(',').any(|part| part.trim().eq_ignore_ascii_case(token)))
        })
    };
    let not_websocket = || {
        ApiError::BadRequest(
            "websocket_required",
            "this address is a room's WebSocket: connect with a WebSocket client (Upgrade: websocket, Sec-WebSocket-Version: 13)".into(),
        )
    };
    if !has(header::CONNECTION, "upgrade") || !has(header::UPGRADE, "websocket") || !has(header::SEC_WEBSOCKET_VERSION, "13") {
        return Err(not_websocket());
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .ok_or_else(not_websocket)
}

/// RFC 6455's accept value: base64(SHA-1(key + the protocol's GUID)).
fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Browsers send the page's origin; other clients send none. A page may connect when it was
/// served by this server (its origin names the Host it asked) or is listed in `allowed`.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let Ok(origin) = origin.to_str() else { return false };
    if allowed.iter().any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin)) {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// Who is at the other end of one connection, as far as the upgrade request tells.
struct Client {
    connection_id: u64,
    peer: IpAddr,
    /// Entered with the owner token.
    owner: bool,
}

async fn run(mut socket: WebSocket, config: WebSocketConfig, refusal: Refusal, state: AppState, room: RoomId, client: Client) {
    let Client { connection_id, peer, owner } = client;
    let _open = state.track_connection();
    let stopping = stopping(state.inner.shutdown.clone());
    tokio::pin!(stopping);
    info!("connected");

    let hello = match tokio::time::timeout(HELLO_TIMEOUT, handshake(&mut socket)).await {
        Ok(Ok(hello)) => hello,
        Ok(Err(HandshakeRefusal { code, reason })) => {
            warn!(reason, "handshake refused");
            close(&mut socket, code, reason).await;
            return;
        }
        Err(_) => {
            close(&mut socket, close_code::PROTOCOL_MISMATCH, "no hello within 10 s").await;
            return;
        }
    };
    let user = hello.user.clone().unwrap_or_else(|| format!("connection-{connection_id}"));
    let name = hello.name.clone().unwrap_or_else(|| "Someone".to_owned());
    let colour = hello.colour.clone().unwrap_or_else(|| colour_for(&user));
    let events = state.inner.events.clone();
    let joined = {
        let (room, resume, user, name, colour) = (room.clone(), hello.resume.clone(), user.clone(), name.clone(), colour.clone());
        tokio::task::spawn_blocking(move || {
            events.join(
                &room,
                JoinRequest { resume: resume.as_ref(), connection: connection_id, user: &user, name: &name, colour: &colour },
            )
        })
        .await
    };
    let joined = match joined {
        Ok(Ok(joined)) => joined,
        Ok(Err(crate::event_log::EventLogError::NoSuchRoom(_))) => {
            close(&mut socket, close_code::ROOM_NOT_FOUND, "this room does not exist").await;
            return;
        }
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
    let Joined { head, backlog, presence, mut queue, membership } = joined;
    let uploader = match hello.key.clone().or_else(fresh_secret) {
        Some(secret) => Uploader { name: name.clone(), id: Some(uploader_id(&room, &secret)) },
        None => Uploader::anonymous(&name),
    };
    // Names this member on its HTTP uploads until the connection ends.
    let upload_key = state.inner.upload_keys.register(&room, uploader.clone());
    let room_name = {
        let (storage, id) = (state.inner.events.storage().clone(), room.clone());
        tokio::task::spawn_blocking(move || storage.room(id.as_str())).await.ok().and_then(Result::ok).flatten().map(|row| row.name)
    };
    let welcome = ServerMessage::Welcome {
        version: PROTOCOL_VERSION,
        room: room.clone(),
        connection_id,
        server_version: env!("CARGO_PKG_VERSION").to_owned(),
        head,
        upload_key: upload_key.as_ref().map(|key| key.key().to_owned()),
        room_name,
        uploader: uploader.id.clone(),
        owner,
    };
    if send(&mut socket, &welcome.to_json()).await.is_err() {
        return;
    }
    let mut first = match backlog {
        Backlog::UpToDate => Vec::new(),
        Backlog::Events(frames) => frames,
        Backlog::Snapshot { frame, .. } => vec![frame],
    };
    first.push(presence);
    let latest = state.inner.latest_status.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(status) = latest {
        first.push(ServerMessage::SystemStatus { status }.to_json().into());
    }
    for frame in first {
        if send(&mut socket, &frame).await.is_err() {
            return;
        }
    }
    let session = Session { state: state.clone(), room: room.clone(), uploader, owner, peer, membership };

    let heartbeat = state.inner.heartbeat;
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            frame = socket.next() => {
                let frame = match frame {
                    Some(Ok(frame)) => frame,
                    Some(Err(err)) => {
                        if let Some(reason) = refusal.reason() {
                            warn!(%reason, "frame refused before reading it");
                            socket.get_mut().close_refused(close_code::MESSAGE_TOO_BIG, &reason, Duration::from_secs(2)).await;
                        } else {
                            debug!(%err, "connection failed");
                        }
                        break;
                    }
                    None => break,
                };
                last_heard = Instant::now();
                let reply = match frame {
                    Message::Text(text) if text.len() > MAX_MESSAGE_BYTES => {
                        let reply = session.answer(text).await;
                        // The library keeps its read buffer at the size of the largest frame
                        // for the connection's life: a member who sent one 40 MB upload would
                        // hold 40 MB while idle. The frame guard stops reading exactly at the
                        // frame's end, so nothing is lost by starting a fresh one.
                        socket = match renew(socket, config).await {
                            Some(fresh) => fresh,
                            None => break,
                        };
                        reply
                    }
                    Message::Text(text) => session.answer(text).await,
                    Message::Binary(_) => Some(error(ErrorCode::UnexpectedBinary,
                        "binary frames are not part of the protocol; upload photos over HTTP")),
                    Message::Close(_) => break,
                    // The library answers pings itself; a pong only proves the peer is alive.
                    // Both still count against the message rate.
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => session.rate_limited(),
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
                        match session.membership.end_reason() {
                            EndReason::TooSlow => {
                                warn!("client too slow, disconnecting");
                                close(&mut socket, close_code::TOO_SLOW, "too slow to keep up; resume from your last seq").await;
                            }
                            EndReason::RoomClosed => {
                                close(&mut socket, close_code::ROOM_NOT_FOUND, "the room was closed").await;
                            }
                            EndReason::Open => {}
                        }
                        break;
                    }
                }
            }
            _ = ticker.tick() => {
                if last_heard.elapsed() > heartbeat * MISSED_HEARTBEATS {
                    info!("peer silent, dropping the connection");
                    break;
                }
                let ping = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Ping(Default::default())));
                if !matches!(ping.await, Ok(Ok(()))) {
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

/// The same connection under a fresh WebSocket state, with small buffers again.
async fn renew(mut socket: WebSocket, config: WebSocketConfig) -> Option<WebSocket> {
    // Anything the library still has to write goes out first.
    tokio::time::timeout(SEND_TIMEOUT, socket.flush()).await.ok()?.ok()?;
    Some(WebSocketStream::from_raw_socket(socket.into_inner(), Role::Server, Some(config)).await)
}

/// Resolves once the server starts shutting down (or its shutdown sender is gone).
async fn stopping(mut shutdown: tokio::sync::watch::Receiver<bool>) {
    // Map the guard away immediately: it is not `Send` and must not live across an await.
    let _ = shutdown.wait_for(|stopping| *stopping).await.map(|_| ());
}

struct HandshakeRefusal {
    code: u16,
    reason: &'static str,
}

/// What the client said in its `hello`.
struct Hello {
    name: Option<String>,
    resume: Option<StreamPosition>,
    user: Option<String>,
    colour: Option<String>,
    key: Option<String>,
}

/// Waits for the first text frame, which must be a `hello` in a version we speak.
async fn handshake(socket: &mut WebSocket) -> Result<Hello, HandshakeRefusal> {
    let mismatch = |reason| HandshakeRefusal { code: close_code::PROTOCOL_MISMATCH, reason };
    loop {
        let frame = match socket.next().await {
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
            Ok(ClientMessage::Hello { version, name, resume, user, colour, key }) if version == PROTOCOL_VERSION => Ok(Hello {
                name: name.map(|n| text::clean(&n, MAX_NAME_CHARS)).filter(|n| !n.is_empty()),
                resume,
                user: user.filter(|u| valid_user(u)),
                colour: colour.filter(|c| valid_colour(c)),
                key: key.filter(|k| k.len() >= 8 && valid_user(k)),
            }),
            Ok(ClientMessage::Hello { .. }) => Err(mismatch("unsupported protocol version")),
            Ok(_) | Err(_) => Err(mismatch("the first message must be hello")),
        };
    }
}

/// A joined connection: what its messages act on.
struct Session {
    state: AppState,
    room: RoomId,
    /// Names this member's notes, commands and photos.
    uploader: Uploader,
    owner: bool,
    peer: IpAddr,
    membership: Membership,
}

impl Session {
    /// The reply to one text frame after the handshake, if it needs one.
    /// An error when this address sends messages faster than its rate allows. Checked before a
    /// message is parsed, so a flood costs no parsing.
    fn rate_limited(&self) -> Option<ServerMessage> {
        let wait = self.state.inner.message_rate.check(self.peer).err()?;
        Some(error(ErrorCode::RateLimited, &format!("too many messages; wait {} ms", wait.as_millis().max(1))))
    }

    /// The reply to one text frame after the handshake, if it needs one.
    /// Takes the frame so that a large `upload_image` is dropped as soon as it is parsed: the
    /// frame, its parsed text and the decoded photo never all live at once.
    async fn answer(&self, text: Utf8Bytes) -> Option<ServerMessage> {
        if let Some(limited) = self.rate_limited() {
            return Some(limited);
        }
        let message = match serde_json::from_str::<ClientMessage>(text.as_str()) {
            Ok(message) => message,
            Err(_) if text.len() > MAX_MESSAGE_BYTES => {
                return Some(error(ErrorCode::TooLarge, &format!("messages are limited to {MAX_MESSAGE_BYTES} bytes")));
            }
            Err(err) => {
                debug!(%err, "bad message");
                return Some(error(ErrorCode::BadMessage, &format!("not a valid message: {err}")));
            }
        };
        if text.len() > MAX_MESSAGE_BYTES && !matches!(message, ClientMessage::UploadImage { .. }) {
            return Some(error(ErrorCode::TooLarge, &format!("messages are limited to {MAX_MESSAGE_BYTES} bytes")));
        }
        drop(text);
        match message {
            ClientMessage::Ping { nonce } => Some(ServerMessage::Pong { nonce }),
            ClientMessage::Hello { .. } => Some(error(ErrorCode::OutOfOrder, "hello was already received on this connection")),
            ClientMessage::Note { text } => {
                let text = text.trim();
                if text.is_empty() || text.chars().count() > MAX_NOTE_CHARS {
                    return Some(error(ErrorCode::BadMessage, &format!("a note has 1 to {MAX_NOTE_CHARS} characters")));
                }
                let event = RoomEvent::Note { by: self.uploader.name.clone(), text: text::clean(text, MAX_NOTE_CHARS) };
                let events = self.state.inner.events.clone();
                let room = self.room.clone();
                // The event reaches this client through its own queue, like everyone else's copy.
                match tokio::task::spawn_blocking(move || events.append(&room, event)).await {
                    Ok(Ok(_)) => None,
                    _ => Some(error(ErrorCode::Unavailable, "the note was not saved; try again")),
                }
            }
            ClientMessage::CancelPhoto { photo } => self.command(photo, Command::Cancel).await,
            ClientMessage::RetryPhoto { photo } => self.command(photo, Command::Retry).await,
            ClientMessage::RemovePhoto { photo } => self.command(photo, Command::Remove).await,
            ClientMessage::UpdateSetting { setting, base_revision } => {
                if let Err(message) = setting.validate() {
                    return Some(error(ErrorCode::InvalidSetting, &message));
                }
                let events = self.state.inner.events.clone();
                let (room, by) = (self.room.clone(), self.uploader.name.clone());
                let applied = tokio::task::spawn_blocking(move || crate::settings::update(&events, &room, setting, base_revision, &by)).await;
                match applied {
                    Ok(Ok(None)) => None,
                    Ok(Ok(Some(conflict))) => Some(conflict),
                    _ => Some(error(ErrorCode::Unavailable, "the setting was not saved; try again")),
                }
            }
            ClientMessage::Uploading { files } => {
                self.membership.set_uploading(files.min(10_000));
                None
            }
            ClientMessage::UploadImage { name, data, photo } => Some(self.upload_image(name, data, photo).await),
        }
    }

    async fn command(&self, photo: String, command: Command) -> Option<ServerMessage> {
        let pipeline = self.state.inner.pipeline.clone();
        let events = self.state.inner.events.clone();
        let (room, by) = (self.room.clone(), self.uploader.name.clone());
        let (uploader, owner) = (self.uploader.id.clone(), self.owner);
        let done = tokio::task::spawn_blocking(move || {
            // Retrying harms nobody; taking a photo away is for whoever brought it, or the owner.
            if matches!(command, Command::Cancel | Command::Remove) {
                let (_, state) = events.status(&room)?;
                let summary = state.photo(&photo).ok_or_else(|| CommandError::NotFound(photo.clone()))?;
                if !may_take_away(summary, uploader.as_deref(), owner) {
                    return Err(CommandError::Forbidden(
                        "only the member who uploaded this photo, or the room's owner, can cancel or remove it".into(),
                    ));
                }
            }
            match command {
                Command::Cancel => pipeline.cancel(&room, &photo, &by),
                Command::Retry => pipeline.retry(&room, &photo, &by),
                Command::Remove => pipeline.remove(&room, &photo, &by),
            }
        })
        .await;
        match done {
            Ok(Ok(())) => None,
            Ok(Err(err @ CommandError::NotFound(_))) => Some(error(ErrorCode::NotFound, &err.to_string())),
            Ok(Err(err @ CommandError::Forbidden(_))) => Some(error(ErrorCode::Forbidden, &err.to_string())),
            Ok(Err(err @ CommandError::InvalidState(_))) => Some(error(ErrorCode::InvalidState, &err.to_string())),
            Ok(Err(err)) => {
                error!(%err, "photo command failed");
                Some(error(ErrorCode::Unavailable, "that could not be done right now; try again"))
            }
            Err(_) => Some(error(ErrorCode::Unavailable, "that could not be done right now; try again")),
        }
    }

    async fn upload_image(&self, name: String, data: String, photo: Option<String>) -> ServerMessage {
        if let Err(wait) = self.state.inner.upload_rate.check(self.peer) {
            return error(ErrorCode::RateLimited, &format!("too many uploads; wait {} ms", wait.as_millis().max(1)));
        }
        let engine = base64::engine::general_purpose::STANDARD;
        let bytes = match engine.decode(data.trim()) {
            Ok(bytes) => bytes,
            Err(err) => return error(ErrorCode::UploadRejected, &format!("data is not valid base64: {err}")),
        };
        drop(data);
        if bytes.len() > self.state.inner.max_upload_bytes {
            let limit = self.state.inner.max_upload_bytes;
            return error(ErrorCode::UploadRejected, &UploadError::TooLarge { limit }.to_string());
        }
        let name = Some(text::clean(&name, 200)).filter(|n| !n.is_empty());
        match ingest_bytes(&self.state, &self.room, photo, name, self.uploader.clone(), bytes).await {
            Ok(uploaded) => ServerMessage::Uploaded { photo: uploaded.photo, duplicate: uploaded.duplicate },
            Err(UploadError::PhotoLimit(max)) => {
                error(ErrorCode::LimitReached, &format!("the room already has its maximum of {max} photos"))
            }
            Err(err) => error(ErrorCode::UploadRejected, &err.to_string()),
        }
    }
}

#[derive(Clone, Copy)]
enum Command {
    Cancel,
    Retry,
    Remove,
}

fn valid_user(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= MAX_USER_CHARS
        && user.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn valid_colour(colour: &str) -> bool {
    colour.len() == 7 && colour.starts_with('#') && colour[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// A stable colour for someone who did not choose one.
fn colour_for(user: &str) -> String {
    const PALETTE: [&str; 8] = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#008080", "#9a6324", "#800000"];
    let index = user.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(usize::from(b)));
    PALETTE[index % PALETTE.len()].to_owned()
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
    let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
    // The peer may already be gone; nothing useful to do about it.
    let _ = socket.send(Message::Close(Some(frame))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_fields_are_checked() {
        assert!(valid_user("u-1_A"));
        assert!(!valid_user("a b") && !valid_user("") && !valid_user(&"a".repeat(65)));
        assert!(valid_colour("#a0B1c2"));
        assert!(!valid_colour("red") && !valid_colour("#12345g"));
        assert!(valid_colour(&colour_for("anyone")));
    }
}
