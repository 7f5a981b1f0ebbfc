//! The room page's WebSocket connection: state shown to the user, and (in the browser) the loop
//! that connects, says `hello`, and reconnects with full-jitter exponential backoff.
//!
//! The state only becomes `Connected` on the server's `welcome`, not on the socket's `open`
//! event: an open socket to a server that then refuses us is not a connection the user can use.

use std::time::Duration;

/// What the connection indicator shows.
#[derive(Clone, Debug, PartialEq)]
pub enum ConnectionState {
    Connecting,
    Connected { connection_id: u64, server_version: String },
    /// Waiting before the next attempt; `retry_in` is rounded up to whole seconds for display.
    Reconnecting { attempt: u32, retry_in: Duration },
    /// Reconnecting cannot help (unsupported version, unauthorized, no such room).
    Offline { reason: String },
}

impl ConnectionState {
    /// A stable token for tests and CSS (`data-state`).
    pub fn key(&self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Connected { .. } => "connected",
            Self::Reconnecting { .. } => "reconnecting",
            Self::Offline { .. } => "offline",
        }
    }

    pub fn label(&self) -> String {
        match self {
            Self::Connecting => "Connecting…".to_owned(),
            Self::Connected { .. } => "Connected".to_owned(),
            Self::Reconnecting { retry_in, .. } => {
                format!("Reconnecting in {} s", retry_in.as_secs_f64().ceil() as u64)
            }
            Self::Offline { reason } => format!("Offline: {reason}"),
        }
    }
}

/// Delay before reconnect attempt `attempt` (0-based), given a uniform sample in `[0, 1)`.
///
/// Full jitter (sleep = random(0, min(cap, base·2^attempt))) spreads a whole room's reconnects
/// after a server restart instead of having every tab knock at the same instant. The small floor
/// keeps a tab that keeps drawing zeros from spinning.
pub fn backoff_delay(attempt: u32, unit_sample: f64) -> Duration {
    const BASE: f64 = 1.0;
    const CAP: f64 = 30.0;
    const FLOOR: f64 = 0.1;
    let ceiling = (BASE * 2f64.powi(attempt.min(16) as i32)).min(CAP);
    let sample = if unit_sample.is_finite() { unit_sample.clamp(0.0, 1.0) } else { 0.5 };
    Duration::from_secs_f64((ceiling * sample).max(FLOOR))
}

#[cfg(feature = "hydrate")]
pub use browser::connect;

#[cfg(feature = "hydrate")]
mod browser {
    use super::{backoff_delay, ConnectionState};
    use crate::protocol::{
        close_code, ClientMessage, RoomId, ServerMessage, StreamPosition, PROTOCOL_VERSION,
    };
    use futures::{SinkExt, StreamExt};
    use gloo_net::websocket::{futures::WebSocket, Message, WebSocketError};
    use leptos::prelude::*;

    /// The ws:// or wss:// URL of a room on the server that served this page.
    fn room_url(room: &RoomId, token: Option<&str>) -> Option<String> {
        let location = web_sys::window()?.location();
        let scheme = if location.protocol().ok()? == "https:" { "wss" } else { "ws" };
        let query = token.map(|t| format!("?token={t}")).unwrap_or_default();
        Some(format!("{scheme}://{}/ws/rooms/{room}{query}", location.host().ok()?))
    }

    /// How one connection ended, which decides whether to try again.
    enum Ended {
        Retry,
        GiveUp(String),
    }

    /// Runs for the life of the page: connect, serve, back off, repeat.
    pub fn connect(room: RoomId, token: Option<String>, state: RwSignal<ConnectionState>) {
        leptos::task::spawn_local(async move {
            let Some(url) = room_url(&room, token.as_deref()) else {
                state.set(ConnectionState::Offline { reason: "no browser location".into() });
                return;
            };
            let mut attempt: u32 = 0;
            // Survives reconnects: the server resumes the stream right after it.
            let mut position: Option<StreamPosition> = None;
            loop {
                match run_once(&url, state, &mut position).await {
                    Ended::GiveUp(reason) => {
                        state.set(ConnectionState::Offline { reason });
                        return;
                    }
                    Ended::Retry => {}
                }
                // A browser hides why a WebSocket upgrade was refused; the HTTP API tells.
                if !state.with_untracked(|s| matches!(s, ConnectionState::Connected { .. }))
                    && let Some(reason) = crate::api::refusal(&room, token.as_deref()).await
                {
                    state.set(ConnectionState::Offline { reason });
                    return;
                }
                // A connection that reached `welcome` resets the schedule: the next drop is a
                // fresh incident, not the continuation of an outage.
                if state.with_untracked(|s| matches!(s, ConnectionState::Connected { .. })) {
                    attempt = 0;
                }
                let delay = backoff_delay(attempt, js_sys::Math::random());
                attempt = attempt.saturating_add(1);
                state.set(ConnectionState::Reconnecting { attempt, retry_in: delay });
                gloo_timers::future::sleep(delay).await;
                state.set(ConnectionState::Connecting);
            }
        });
    }

    async fn run_once(
        url: &str,
        state: RwSignal<ConnectionState>,
        position: &mut Option<StreamPosition>,
    ) -> Ended {
        let Ok(socket) = WebSocket::open(url) else {
            return Ended::Retry;
        };
        let (mut sink, mut stream) = socket.split();
        let hello = ClientMessage::Hello { version: PROTOCOL_VERSION, name: None, resume: position.clone(), user: None, colour: None };
        if sink.send(Message::Text(hello.to_json())).await.is_err() {
            return Ended::Retry;
        }
        while let Some(frame) = stream.next().await {
            let text = match frame {
                Ok(Message::Text(text)) => text,
                Ok(Message::Bytes(_)) => continue,
                Err(WebSocketError::ConnectionClose(close)) => return classify_close(close.code, &close.reason),
                Err(_) => return Ended::Retry,
            };
            match serde_json::from_str::<ServerMessage>(&text) {
                Ok(ServerMessage::Welcome { connection_id, server_version, .. }) => {
                    state.set(ConnectionState::Connected { connection_id, server_version });
                }
                Ok(ServerMessage::Snapshot { position: at, .. }) => *position = Some(at),
                Ok(ServerMessage::Event { epoch, seq, .. }) => {
                    let expected = position.as_ref().filter(|p| p.epoch == epoch).map(|p| p.seq + 1);
                    if expected.is_some_and(|e| e != seq) {
                        // A gap means our copy is wrong; reconnecting resumes from what we have.
                        leptos::logging::warn!("stream gap: expected {expected:?}, got {seq}");
                        return Ended::Retry;
                    }
                    *position = Some(StreamPosition { epoch, seq });
                }
                Ok(ServerMessage::Pong { .. }) => {}
                Ok(ServerMessage::Error { message, .. }) => {
                    leptos::logging::warn!("server refused a message: {message}");
                }
                // Presence, progress and load are shown by the room page (not yet wired).
                Ok(_) => {}
                Err(err) => leptos::logging::warn!("unreadable server message: {err}"),
            }
        }
        Ended::Retry
    }

    fn classify_close(code: u16, reason: &str) -> Ended {
        match code {
            close_code::PROTOCOL_MISMATCH => {
                Ended::GiveUp(format!("this page is out of date, reload it ({reason})"))
            }
            close_code::UNAUTHORIZED => Ended::GiveUp(format!("not allowed in this room ({reason})")),
            close_code::ROOM_NOT_FOUND => Ended::GiveUp(format!("no such room ({reason})")),
            _ => Ended::Retry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap() {
        let top = |attempt| backoff_delay(attempt, 0.999_999).as_secs_f64();
        assert!((top(0) - 1.0).abs() < 1e-3);
        assert!((top(1) - 2.0).abs() < 1e-3);
        assert!((top(4) - 16.0).abs() < 1e-3);
        assert!((top(5) - 30.0).abs() < 1e-3);
        assert!((top(1000) - 30.0).abs() < 1e-3);
    }

    #[test]
    fn backoff_is_fully_jittered_with_a_floor() {
        assert_eq!(backoff_delay(3, 0.5), Duration::from_secs(4));
        assert_eq!(backoff_delay(3, 0.0), Duration::from_millis(100));
        assert_eq!(backoff_delay(3, f64::NAN), Duration::from_secs(4));
        assert_eq!(backoff_delay(3, 7.0), Duration::from_secs(8));
    }

    #[test]
    fn labels_round_the_wait_up() {
        let s = ConnectionState::Reconnecting { attempt: 2, retry_in: Duration::from_millis(1200) };
        assert_eq!(s.label(), "Reconnecting in 2 s");
        assert_eq!(s.key(), "reconnecting");
    }
}
