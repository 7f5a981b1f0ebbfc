//! Command-line flags and environment variables. Every flag has a `VESTIGE_*` twin so the same
//! binary is configured by hand, by scripts and by a service manager alike.

use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Clone, Debug, Parser)]
#[command(name = "vestige", version, about = "Vestige: photograph a heritage site together and watch its 3D model grow.")]
pub struct Config {
    /// Address to listen on. Use 127.0.0.1:0 to pick a free port (it is logged).
    #[arg(long, env = "VESTIGE_BIND", default_value = "127.0.0.1:3000")]
    pub bind: SocketAddr,

    /// Directory for rooms, photos and models. Created if missing.
    #[arg(long, env = "VESTIGE_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Directory holding the built site (the WASM, JS and CSS under `pkg/`, plus public assets),
    /// as produced by `cargo leptos build`.
    #[arg(long, env = "VESTIGE_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,

    /// Largest photo accepted, in bytes.
    #[arg(long, env = "VESTIGE_MAX_UPLOAD_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_upload_bytes: usize,

    /// Photos reconstructed at the same time, over all rooms (default: the number of cores).
    #[arg(long, env = "VESTIGE_WORKERS")]
    pub workers: Option<usize>,

    /// Most rooms this server holds.
    #[arg(long, env = "VESTIGE_MAX_ROOMS", default_value_t = 1000)]
    pub max_rooms: u64,

    /// Most photos in one room.
    #[arg(long, env = "VESTIGE_MAX_PHOTOS_PER_ROOM", default_value_t = 1000)]
    pub max_photos_per_room: u64,

    /// Most simultaneous connections to one room.
    #[arg(long, env = "VESTIGE_MAX_CLIENTS_PER_ROOM", default_value_t = 5000)]
    pub max_clients_per_room: usize,

    /// Uploads per second allowed from one address (burst: 10 times as many).
    #[arg(long, env = "VESTIGE_UPLOADS_PER_SECOND", default_value_t = 5.0)]
    pub uploads_per_second: f64,

    /// WebSocket messages per second allowed from one address (burst: 10 times as many).
    #[arg(long, env = "VESTIGE_MESSAGES_PER_SECOND", default_value_t = 50.0)]
    pub messages_per_second: f64,

    /// Seconds between server pings; a connection silent for three intervals is dropped.
    #[arg(long, env = "VESTIGE_HEARTBEAT_SECONDS", default_value_t = 15.0)]
    pub heartbeat_seconds: f64,

    /// Seconds someone stays in presence after their last tab closed.
    #[arg(long, env = "VESTIGE_PRESENCE_GRACE_SECONDS", default_value_t = 5.0)]
    pub presence_grace_seconds: f64,

    /// Days without activity or members after which a room is archived (kept, unloaded).
    #[arg(long, env = "VESTIGE_ARCHIVE_AFTER_DAYS", default_value_t = 30.0)]
    pub archive_after_days: f64,

    /// Rooms one address may create per hour (burst: a tenth of that, at least 3).
    #[arg(long, env = "VESTIGE_ROOMS_PER_HOUR", default_value_t = 30.0)]
    pub rooms_per_hour: f64,

    /// Refused room lookups (no such room, wrong token) allowed per second from one address,
    /// with a burst of 30; past that the address gets 429 on room routes for a while.
    #[arg(long, env = "VESTIGE_LOOKUPS_PER_SECOND", default_value_t = 1.0)]
    pub lookups_per_second: f64,

    /// Hours after which a room that never received a photo, note or setting is deleted and its
    /// name becomes free.
    #[arg(long, env = "VESTIGE_UNUSED_ROOM_HOURS", default_value_t = 24.0)]
    pub unused_room_hours: f64,

    /// Most open TCP connections (pages, API calls and WebSockets together). Also held below the
    /// process's open-file limit, less descriptors kept for the database and photo files.
    #[arg(long, env = "VESTIGE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Most open TCP connections from one address.
    #[arg(long, env = "VESTIGE_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 256)]
    pub max_connections_per_address: usize,

    /// Seconds a client has to send a request's headers, from its first byte or from the end of
    /// its previous request.
    #[arg(long, env = "VESTIGE_HEADER_TIMEOUT_SECONDS", default_value_t = 10.0)]
    pub header_timeout_seconds: f64,

    /// Seconds a client has to send a whole request body (a photo upload included).
    #[arg(long, env = "VESTIGE_BODY_TIMEOUT_SECONDS", default_value_t = 300.0)]
    pub body_timeout_seconds: f64,

    /// Seconds a connection may pass with no byte in either direction before it is closed.
    #[arg(long, env = "VESTIGE_IDLE_TIMEOUT_SECONDS", default_value_t = 60.0)]
    pub idle_timeout_seconds: f64,

    /// Uploaded photos checked (decoded) at the same time; others wait their turn
    /// (default: the number of cores).
    #[arg(long, env = "VESTIGE_IMAGE_CHECKS")]
    pub image_checks: Option<usize>,

    /// MiB of WebSocket `upload_image` frames held in memory at once over all connections; a
    /// frame waits (its sender is not read) until it fits.
    #[arg(long, env = "VESTIGE_WS_UPLOAD_MEMORY_MIB", default_value_t = 128)]
    pub ws_upload_memory_mib: usize,

    /// Web page origins (scheme://host[:port]) allowed to open room WebSockets besides the
    /// server's own; repeat the flag or separate with commas.
    #[arg(long, env = "VESTIGE_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Log line format.
    #[arg(long, env = "VESTIGE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// Defaults for tests and embedding: a free port, the given data directory.
    pub fn for_data_dir(data_dir: PathBuf) -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir,
            site_root: PathBuf::from("target/site"),
            max_upload_bytes: 32 * 1024 * 1024,
            workers: None,
            max_rooms: 1000,
            max_photos_per_room: 1000,
            max_clients_per_room: 5000,
            uploads_per_second: 5.0,
            messages_per_second: 50.0,
            heartbeat_seconds: 15.0,
            presence_grace_seconds: 5.0,
            archive_after_days: 30.0,
            rooms_per_hour: 30.0,
            lookups_per_second: 1.0,
            unused_room_hours: 24.0,
            max_connections: 10_000,
            max_connections_per_address: 256,
            header_timeout_seconds: 10.0,
            body_timeout_seconds: 300.0,
            idle_timeout_seconds: 60.0,
            image_checks: None,
            ws_upload_memory_mib: 128,
            allowed_origins: Vec::new(),
            log_format: LogFormat::Text,
        }
    }
}

impl Config {
    pub fn workers(&self) -> usize {
        self.workers.filter(|n| *n > 0).unwrap_or_else(cores)
    }

    pub fn image_checks(&self) -> usize {
        self.image_checks.filter(|n| *n > 0).unwrap_or_else(cores)
    }

    /// A duration from a seconds flag, refusing nonsense (negative, NaN) by using `default`.
    pub fn seconds(value: f64, default: f64) -> std::time::Duration {
        let value = if value.is_finite() && value >= 0.0 { value } else { default };
        std::time::Duration::from_secs_f64(value.min(1e9))
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
