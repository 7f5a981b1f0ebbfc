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

/// The defaults, with the per-address rates of room creation and refused lookups lifted.
pub fn test_config(data: &Path) -> Config {
    let mut config = Config::for_data_dir(data.to_owned());
    config.rooms_per_hour = 1e7;
    config.lookups_per_second = 1e6;
    config
}

/// The real `vestige` binary on a free port, with its log collected; killed when dropped.
pub struct Spawned {
    pub child: std::process::Child,
    pub addr: String,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Spawned {
    /// Starts the binary on `data` with `args`, `env`, and, when given, this (soft, hard)
    /// open-file limit.
    pub fn start(data: &Path, args: &[&str], env: &[(&str, &str)], open_files: Option<(u64, u64)>) -> Self {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let mut command = Command::new(env!("CARGO_BIN_EXE_vestige"));
        command
            .args(["--bind", "127.0.0.1:0", "--rooms-per-hour", "100000", "--data-dir"])
            .arg(data)
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some((soft, hard)) = open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: only setrlimit runs between fork and exec; it allocates nothing.
            unsafe {
                command.pre_exec(move || {
                    let rl = libc::rlimit { rlim_cur: soft as libc::rlim_t, rlim_max: hard as libc::rlim_t };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command.spawn().expect("spawn vestige");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let errors = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                errors.lock().expect("log").push(line);
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines.next().expect("server printed its address").expect("line");
            log.lock().expect("log").push(line.clone());
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split_whitespace().next().expect("addr").to_owned();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        let collected = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                collected.lock().expect("log").push(line);
            }
        });
        Self { child, addr, log }
    }

    /// A field of /proc/<pid>/status in KiB (`VmHWM` is the peak resident memory).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
            .expect("field")
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log.lock().expect("log").iter().any(|l| l.contains(needle))
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
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

    /// Defaults, on a data directory the caller keeps (to restart on it). Tests create rooms
    /// and try wrong tokens from one address far faster than people do, so those two rates
    /// are lifted; the tests of the limits set their own.
    pub async fn start_in(data: &Path) -> Self {
        Self::start_with(test_config(data)).await
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
        key: Some(format!("key-of-{}", name.chars().filter(char::is_ascii_alphanumeric).collect::<String>())),
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
