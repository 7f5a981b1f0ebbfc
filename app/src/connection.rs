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
    /// Reconnecting cannot help (unsupported version, invalid room name).
    Offline { reason: String },
    /// The room does not let us in: no such room, or a private room without a valid token
    /// (which the server cannot tell apart, on purpose). Only an invitation helps.
    Refused { reason: String },
}

impl ConnectionState {
    /// A stable token for tests and CSS (`data-state`).
    pub fn key(&self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Connected { .. } => "connected",
            Self::Reconnecting { .. } => "reconnecting",
            Self::Offline { .. } => "offline",
            Self::Refused { .. } => "refused",
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
            Self::Refused { .. } => "Not invited".to_owned(),
        }
    }
}

/// Delay before reconnect attempt `attempt` (0-based), given a uniform sample in `[0, 1)`.
///
/// Full jitter (sleep = random(0, min(cap, base·2^attempt))) spreads a whole room's reconnects
/// after a server restart instead of having every tab knock at the same instant. The small floor
/// keeps a tab that keeps drawing zeros from spinning.
pub fn backoff_delay(attempt: u32, unit_sample: f64) -> Duration {
    full_jitter(1.0, 30.0, 0.1, attempt, unit_sample)
}

/// Seconds: a uniform draw in `[0, min(cap, base·2^attempt)]`, at least `floor`. A sample that
/// is not a number counts as 0.5.
pub fn full_jitter(base: f64, cap: f64, floor: f64, attempt: u32, unit_sample: f64) -> Duration {
    let ceiling = (base * 2f64.powi(attempt.min(16) as i32)).min(cap);
    let sample = if unit_sample.is_finite() { unit_sample.clamp(0.0, 1.0) } else { 0.5 };
    Duration::from_secs_f64((ceiling * sample).max(floor))
}

#[cfg(feature = "hydrate")]
pub use browser::connect;

#[cfg(feature = "hydrate")]
mod browser {
    use super::{backoff_delay, ConnectionState};
    use crate::api::Identity;
    use crate::protocol::{close_code, ClientMessage, RoomId, ServerMessage, PROTOCOL_VERSION};
    use crate::room_state::RoomStore;
    use futures::{FutureExt, SinkExt, StreamExt};
    use gloo_net::websocket::{futures::WebSocket, Message, WebSocketError};
    use leptos::prelude::*;
    use std::time::Duration;

    /// How often the loop looks at the outgoing queue while connected.
    const OUTBOX_POLL: Duration = Duration::from_millis(100);

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
        Refused(String),
    }

    /// Runs for the life of the page: connect, serve, back off, repeat. Everything received is
    /// folded into `store`; everything `store.send` queues goes out once connected.
    pub fn connect(
        room: RoomId,
        token: Option<String>,
        identity: Identity,
        state: RwSignal<ConnectionState>,
        store: RoomStore,
    ) {
        leptos::task::spawn_local(async move {
            let Some(url) = room_url(&room, token.as_deref()) else {
                state.set(ConnectionState::Offline { reason: "no browser location".into() });
                return;
            };
            let mut attempt: u32 = 0;
            loop {
                match run_once(&url, &identity, state, store).await {
                    Ended::GiveUp(reason) => {
                        state.set(ConnectionState::Offline { reason });
                        return;
                    }
                    Ended::Refused(reason) => {
                        state.set(ConnectionState::Refused { reason });
                        return;
                    }
                    Ended::Retry => {}
                }
                // A browser hides why a WebSocket upgrade was refused; the HTTP API tells.
                if !state.with_untracked(|s| matches!(s, ConnectionState::Connected { .. }))
                    && let Some(reason) = crate::api::refusal(&room, token.as_deref()).await
                {
                    state.set(ConnectionState::Refused { reason });
                    return;
                }
                // A connection that reached `welcome` resets the schedule: the next drop is a
                // fresh incident, not the continuation of an outage.
                if state.with_untracked(|s| matches!(s, ConnectionState::Connected { .. })) {
                    attempt = 0;
                }
                let delay = backoff_delay(attempt, js_sys::Math::random());
                attempt = attempt.saturating_add(1);
                // Count down visibly, a second at a time.
                let mut left = delay;
                while !left.is_zero() {
                    state.set(ConnectionState::Reconnecting { attempt, retry_in: left });
                    let step = left.min(Duration::from_secs(1));
                    gloo_timers::future::sleep(step).await;
                    left = left.saturating_sub(step);
                }
                state.set(ConnectionState::Connecting);
            }
        });
    }

    async fn run_once(url: &str, identity: &Identity, state: RwSignal<ConnectionState>, store: RoomStore) -> Ended {
        let Ok(socket) = WebSocket::open(url) else {
            return Ended::Retry;
        };
        let (mut sink, stream) = socket.split();
        let mut stream = stream.fuse();
        let hello = ClientMessage::Hello {
            version: PROTOCOL_VERSION,
            name: Some(identity.name.clone()),
            resume: store.model.with_untracked(|m| m.position.clone()),
            user: Some(identity.user.clone()),
            colour: Some(identity.colour.clone()),
            key: Some(identity.key.clone()),
        };
        if sink.send(Message::Text(hello.to_json())).await.is_err() {
            return Ended::Retry;
        }
        let mut welcomed = false;
        loop {
            let mut tick = gloo_timers::future::sleep(OUTBOX_POLL).fuse();
            let frame = futures::select! {
                frame = stream.next() => frame,
                () = tick => {
                    // Messages made while offline wait for the welcome, then go in order.
                    if welcomed {
                        while let Some(message) = store.outbox.with_untracked(|q| q.front().cloned()) {
                            if sink.send(Message::Text(message.to_json())).await.is_err() {
                                return Ended::Retry;
                            }
                            store.outbox.update(|q| {
                                q.pop_front();
                            });
                        }
                    }
                    continue;
                }
            };
            let Some(frame) = frame else { return Ended::Retry };
            let text = match frame {
                Ok(Message::Text(text)) => text,
                Ok(Message::Bytes(_)) => continue,
                Err(WebSocketError::ConnectionClose(close)) => return classify_close(close.code, &close.reason),
                Err(_) => return Ended::Retry,
            };
            let message = match serde_json::from_str::<ServerMessage>(&text) {
                Ok(message) => message,
                Err(err) => {
                    leptos::logging::warn!("unreadable server message: {err}");
                    continue;
                }
            };
            if let ServerMessage::Welcome { connection_id, server_version, .. } = &message {
                welcomed = true;
                state.set(ConnectionState::Connected { connection_id: *connection_id, server_version: server_version.clone() });
            }
            let in_order = store.model.try_update(|m| m.apply(message)).unwrap_or(true);
            if !in_order {
                // A gap means our copy is wrong; reconnecting resumes from what we have.
                leptos::logging::warn!("stream gap; resuming");
                return Ended::Retry;
            }
        }
    }

    fn classify_close(code: u16, reason: &str) -> Ended {
        match code {
            close_code::PROTOCOL_MISMATCH => {
                Ended::GiveUp(format!("this page is out of date, reload it ({reason})"))
            }
            close_code::UNAUTHORIZED => Ended::Refused(format!("not allowed in this room ({reason})")),
            close_code::ROOM_NOT_FOUND => Ended::Refused(format!("no such room ({reason})")),
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
