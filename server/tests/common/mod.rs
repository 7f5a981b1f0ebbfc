//! Helpers shared by the integration tests.
#![allow(dead_code)]

use app::protocol::{ClientMessage, PROTOCOL_VERSION, ServerMessage, StreamPosition};
use server::config::Config;
use server::room::CreatedRoom;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::oneshot;

/// The shared photo sets, or `None` (after saying so) when they are not next to the project.
pub fn datasets() -> Option<PathBuf> {
    let dir = std::env::var_os("VESTIGE_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIP: no datasets at {} (set VESTIGE_DATASETS)", dir.display());
        None
    }
}

/// A set's photos in name order.
pub fn photos(datasets: &Path, set: &str) -> Vec<PathBuf> {
    let dir = datasets.join(set).join("images");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("images folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    paths
}

/// The photo id a client computes: SHA-256 as lowercase hex.
pub fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The server running in this process on a real socket on 127.0.0.1.
pub struct TestServer {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
    _data: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Defaults, with a data directory that lives as long as the server.
    pub async fn start() -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let mut server = Self::start_in(data.path()).await;
        server._data = Some(data);
        server
    }

    /// Defaults, on a data directory the caller keeps (to restart on it).
    pub async fn start_in(data: &Path) -> Self {
        Self::start_with(Config::for_data_dir(data.to_owned())).await
    }

    pub async fn start_with(config: Config) -> Self {
        let data_dir = config.data_dir.clone();
        let bound = server::Bound::bind(&config).await.expect("bind");
        let addr = bound.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(async move {
            bound.serve(async { let _ = stopped.await; }).await.expect("serve");
        });
        Self { addr, data_dir, stop: Some(stop), done, _data: None }
    }

    /// Asks for a graceful stop without waiting for it.
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits (at most 10 s) until the server has stopped cleanly.
    pub async fn stopped(&mut self) {
        tokio::time::timeout(Duration::from_secs(10), &mut self.done).await.expect("stops").expect("clean");
    }

    /// Graceful stop; waits until the server released everything.
    pub async fn stop(mut self) {
        self.signal_stop();
        self.stopped().await;
    }
}

/// A `hello` as a browser sends it.
pub fn hello_as(name: &str, resume: Option<StreamPosition>) -> ClientMessage {
    ClientMessage::Hello {
        version: PROTOCOL_VERSION,
        name: Some(name.to_owned()),
        resume,
        user: Some(format!("user-{}", name.to_lowercase())),
        colour: Some("#336699".into()),
    }
}

/// Transient messages (presence, progress, load) that tests about the stream step over.
pub fn is_transient(message: &ServerMessage) -> bool {
    matches!(
        message,
        ServerMessage::Presence { .. }
            | ServerMessage::PresenceDiff { .. }
            | ServerMessage::Progress { .. }
            | ServerMessage::SystemStatus { .. }
    )
}

impl TestServer {
    /// The join token of the private room `room`, creating it (through `POST /api/rooms`) the
    /// first time. Tokens are kept in the data directory so a restarted server's tests find them.
    pub async fn token(&self, room: &str) -> String {
        let path = self.data_dir.join("test-tokens.json");
        let mut tokens: HashMap<String, String> =
            std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        if let Some(token) = tokens.get(room) {
            return token.clone();
        }
        let created = create_room(&self.addr.to_string(), room).await;
        assert_eq!(created.id.as_str(), room, "a fresh server gives the room its name");
        tokens.insert(room.to_owned(), created.join_token.clone());
        std::fs::write(&path, serde_json::to_vec(&tokens).expect("json")).expect("save tokens");
        created.join_token
    }

    /// The WebSocket URL of `room` with its token.
    pub async fn ws_url(&self, room: &str) -> String {
        format!("ws://{}/ws/rooms/{room}?token={}", self.addr, self.token(room).await)
    }

    /// An HTTP URL under the room (`rest` starts with `/`), with its token.
    pub async fn room_url(&self, room: &str, rest: &str) -> String {
        format!("http://{}/api/rooms/{room}{rest}?token={}", self.addr, self.token(room).await)
    }
}

/// `POST /api/rooms` on a server at `addr`.
pub async fn create_room(addr: &str, name: &str) -> CreatedRoom {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/api/rooms"))
        .json(&serde_json::json!({ "name": name }))
        .send()
        .await
        .expect("create room");
    assert_eq!(response.status(), 201);
    response.json().await.expect("created room")
}

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A member's WebSocket, speaking the protocol like the browser does.
pub struct Member {
    pub socket: Socket,
}

impl Member {
    /// Connects to `url` and says hello as `name`.
    pub async fn join(url: &str, name: &str) -> Self {
        use futures_util::SinkExt;
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("connect");
        let hello = tokio_tungstenite::tungstenite::Message::text(hello_as(name, None).to_json());
        socket.send(hello).await.expect("hello");
        Self { socket }
    }

    pub async fn send(&mut self, message: &ClientMessage) {
        use futures_util::SinkExt;
        self.socket.send(tokio_tungstenite::tungstenite::Message::text(message.to_json())).await.expect("send");
    }

    /// The next message of any kind, waiting at most `within`.
    pub async fn next_within(&mut self, within: Duration) -> Option<ServerMessage> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            let frame = tokio::time::timeout(within, self.socket.next()).await.ok()??;
            match frame {
                Ok(Message::Text(text)) => return Some(serde_json::from_str(&text).expect("valid server JSON")),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// The next message of any kind (10 s at most).
    pub async fn next(&mut self) -> ServerMessage {
        self.next_within(Duration::from_secs(10)).await.expect("a message within 10 s")
    }

    /// Reads until `done` says so (60 s at most); returns everything read, in order.
    pub async fn read_until(&mut self, mut done: impl FnMut(&ServerMessage) -> bool) -> Vec<ServerMessage> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let message = self.next_within(left).await.unwrap_or_else(|| panic!("stream ended or timed out after {got:?}"));
            let stop = done(&message);
            got.push(message);
            if stop {
                return got;
            }
        }
    }
}
