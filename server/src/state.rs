//! State shared by every request handler.

use crate::config::Config;
use crate::connections::Gate;
use crate::event_log::EventLog;
use crate::limits::{Limits, RateLimiter};
use crate::pipeline::Pipeline;
use crate::uploaders::UploadKeys;
use crate::ws_frames::Budget;
use std::path::PathBuf;
use axum::extract::FromRef;
use leptos::prelude::LeptosOptions;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;
use tokio::sync::watch;

#[derive(Clone)]
pub struct AppState {
    pub leptos: LeptosOptions,
    pub inner: Arc<Shared>,
}

pub struct Shared {
    pub started: Instant,
    pub events: Arc<EventLog>,
    pub pipeline: Pipeline,
    pub limits: Limits,
    pub upload_rate: RateLimiter,
    pub message_rate: RateLimiter,
    /// Refused room lookups per address (see `crate::access`).
    pub lookup_rate: RateLimiter,
    pub room_creation_rate: RateLimiter,
    /// Image checks running at once.
    pub image_checks: tokio::sync::Semaphore,
    pub upload_keys: Arc<UploadKeys>,
    /// Memory for large WebSocket frames, over all connections.
    pub ws_budget: Budget,
    pub allowed_origins: Vec<String>,
    pub body_timeout: std::time::Duration,
    pub connections: Arc<Gate>,
    pub heartbeat: std::time::Duration,
    pub data_dir: PathBuf,
    pub max_upload_bytes: usize,
    pub uploads_accepted: AtomicU64,
    pub upload_bytes: AtomicU64,
    pub uploads_rejected: AtomicU64,
    pub open_connections: AtomicUsize,
    /// The newest periodic `system_status`, sent to each member as it joins so that the load
    /// line is not empty until the next broadcast.
    pub latest_status: std::sync::Mutex<Option<app::protocol::SystemStatus>>,
    next_connection_id: AtomicU64,
    /// Flips to `true` once on SIGINT/SIGTERM; sessions watch it to close with "going away" so
    /// clients reconnect to the next server instead of seeing an abrupt drop.
    pub shutdown: watch::Receiver<bool>,
}

impl AppState {
    pub fn new(
        leptos: LeptosOptions,
        config: &Config,
        events: Arc<EventLog>,
        pipeline: Pipeline,
        connections: Arc<Gate>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let burst = |rate: f64| (rate * 10.0).clamp(1.0, 1e6) as u32;
        let rooms_per_second = config.rooms_per_hour.max(0.0) / 3600.0;
        Self {
            leptos,
            inner: Arc::new(Shared {
                started: Instant::now(),
                events,
                pipeline,
                limits: Limits {
                    max_rooms: config.max_rooms,
                    max_photos_per_room: config.max_photos_per_room,
                    max_clients_per_room: config.max_clients_per_room,
                },
                upload_rate: RateLimiter::new(config.uploads_per_second, burst(config.uploads_per_second)),
                message_rate: RateLimiter::new(config.messages_per_second, burst(config.messages_per_second)),
                lookup_rate: RateLimiter::new(config.lookups_per_second, 30),
                room_creation_rate: RateLimiter::new(
                    rooms_per_second,
                    (config.rooms_per_hour / 10.0).clamp(3.0, 1e6) as u32,
                ),
                image_checks: tokio::sync::Semaphore::new(config.image_checks()),
                upload_keys: Arc::new(UploadKeys::default()),
                ws_budget: Budget::new(config.ws_upload_memory_mib.saturating_mul(1 << 20)),
                allowed_origins: config.allowed_origins.clone(),
                body_timeout: Config::seconds(config.body_timeout_seconds, 300.0),
                connections,
                heartbeat: Config::seconds(config.heartbeat_seconds, 15.0).max(std::time::Duration::from_millis(100)),
                data_dir: config.data_dir.clone(),
                max_upload_bytes: config.max_upload_bytes,
                uploads_accepted: AtomicU64::new(0),
                upload_bytes: AtomicU64::new(0),
                uploads_rejected: AtomicU64::new(0),
                open_connections: AtomicUsize::new(0),
                latest_status: std::sync::Mutex::new(None),
                next_connection_id: AtomicU64::new(1),
                shutdown,
            }),
        }
    }

    pub fn next_connection_id(&self) -> u64 {
        self.inner.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts a WebSocket as open until the returned guard drops, however the session ends.
    pub fn track_connection(&self) -> ConnectionGuard {
        self.inner.open_connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self.inner.clone())
    }
}

pub struct ConnectionGuard(Arc<Shared>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}
