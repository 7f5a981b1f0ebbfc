//! Vestige's server: one binary that renders the pages, serves the WASM client and static files,
//! and hosts the rooms' WebSocket sessions.
//!
//! It is not the reconstruction engine (that is the `recon` crate, called from here) and holds no
//! UI code (that is `app`, rendered here through leptos_axum).
// Leptos views are nested types; the room page is deeper than the default limit allows.
#![recursion_limit = "256"]

pub mod access;
pub mod archive;
pub mod config;
pub mod connections;
pub mod content_addressed;
pub mod digest;
pub mod durable;
pub mod event_log;
pub mod health;
pub mod layout;
pub mod limits;
pub mod metrics;
pub mod pipeline;
pub mod presence;
pub mod room;
pub mod security;
pub mod session;
pub mod settings;
pub mod shards;
pub mod state;
pub mod storage;
pub mod system;
pub mod text;
pub mod thumbnails;
pub mod upload;
pub mod uploaders;
pub mod ws_frames;

use app::{App, shell};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use config::Config;
use leptos::prelude::LeptosOptions;
use leptos_axum::{LeptosRoutes, generate_route_list};
use state::AppState;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::trace::TraceLayer;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    #[error(transparent)]
    Rooms(#[from] event_log::EventLogError),
}

/// The options leptos_axum needs, taken from our own flags rather than from the LEPTOS_* env
/// variables, so the binary runs the same with or without cargo-leptos around it.
fn leptos_options(config: &Config, addr: SocketAddr) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name("vestige")
        .site_root(config.site_root.to_string_lossy().as_ref())
        .site_pkg_dir("pkg")
        .site_addr(addr)
        .build()
}

/// Largest JSON body of the API (room creation).
const MAX_JSON_BODY: usize = 64 * 1024;
/// How long any request but an upload or a WebSocket may take to arrive and be answered, at
/// most (`--body-timeout-seconds` when shorter).
const QUICK_DEADLINE: Duration = Duration::from_secs(30);

pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let leptos = state.leptos.clone();
    let quick_deadline = state.inner.body_timeout.min(QUICK_DEADLINE);
    // Uploads have their own body deadline; WebSockets live long.
    let long = Router::new()
        .route("/ws/rooms/{room}", get(session::upgrade))
        .route("/api/rooms/{room}/photos/{photo}", put(upload::put_photo));
    let quick = Router::new()
        .route("/health", get(health::health))
        .route("/metrics", get(metrics::metrics))
        .route("/api/rooms", post(room::create).get(room::list).layer(DefaultBodyLimit::max(MAX_JSON_BODY)))
        .route("/api/rooms/{room}", get(room::status).delete(room::delete))
        // Quantised coordinates of neighbouring points share their high bytes: gzip takes the
        // wire cost below the 9 bytes a point of the raw format.
        .route(
            "/api/rooms/{room}/shards/{hash}",
            get(shards::get_shard).layer(tower_http::compression::CompressionLayer::new().gzip(true)),
        )
        .route("/api/rooms/{room}/photos/{photo}/thumbnail", get(thumbnails::get_thumbnail))
        .route("/api/rooms/{room}/model.ply", get(shards::model_ply))
        .route("/api/rooms/{room}/cameras.json", get(shards::cameras_json))
        .leptos_routes(&state, routes, move || shell(leptos.clone()))
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(middleware::from_fn_with_state(quick_deadline, deadline));
    long.merge(quick)
        .layer(middleware::from_fn(security::headers))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            tracing::debug_span!("request", method = %request.method(), uri = %security::redacted(request.uri()))
        }))
        .with_state(state)
}

/// Answers 408 when a request is not read and answered within `limit`: a client trickling its
/// body cannot hold a connection and a task for longer.
async fn deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => access::ApiError::Timeout(format!(
            "the request was not complete within {} s; send it again",
            limit.as_secs()
        ))
        .into_response(),
    }
}

/// A bound, not yet running server. Binding first lets callers (tests, the CLI) learn the real
/// port when they asked for port 0.
pub struct Bound {
    listener: TcpListener,
    state: AppState,
    stop: watch::Sender<bool>,
    chores: system::Chores,
    timeouts: connections::Timeouts,
}

impl Bound {
    pub async fn bind(config: &Config) -> Result<Self, ServerError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| ServerError::DataDir { path: config.data_dir.clone(), source })?;
        system::tune_allocator();
        let open_files = connections::raise_open_file_limit();
        let cap = connections::connection_cap(config.max_connections, open_files);
        tracing::info!(open_files, max_connections = cap, per_address = config.max_connections_per_address, "connection limits");
        let gate = connections::Gate::new(cap, config.max_connections_per_address);
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|source| ServerError::Bind { addr: config.bind, source })?;
        let addr = listener.local_addr().map_err(ServerError::Serve)?;
        let swept = durable::sweep_partials(&config.data_dir.join("rooms"));
        if swept > 0 {
            tracing::info!(swept, "temporary files of interrupted writes removed");
        }
        let storage = Arc::new(storage::Storage::open(&config.data_dir)?);
        if storage.restart() == storage::Restart::AfterReboot {
            tracing::warn!("first start since the machine rebooted: every room has a new epoch, clients get fresh snapshots");
        }
        let grace = Config::seconds(config.presence_grace_seconds, 5.0);
        let events = Arc::new(event_log::EventLog::with_options(storage, event_log::DEFAULT_CLIENT_QUEUE, grace));
        let pipeline = pipeline::Pipeline::start(events.clone(), &config.data_dir, config.workers());
        let recovering = pipeline.clone();
        let queued = tokio::task::spawn_blocking(move || recovering.recover())
            .await
            .map_err(|err| ServerError::Serve(std::io::Error::other(err)))??;
        if queued > 0 {
            tracing::info!(queued, "photos acknowledged before the restart are queued again");
        }
        let (stop, stopping) = watch::channel(false);
        let state = AppState::new(leptos_options(config, addr), config, events, pipeline, gate, stopping);
        let chores = system::Chores {
            archive_after: Config::seconds(config.archive_after_days * 86_400.0, 30.0 * 86_400.0),
            unused_after: Config::seconds(config.unused_room_hours * 3600.0, 24.0 * 3600.0),
        };
        // A WebSocket is pinged every heartbeat: never call it idle before two have passed.
        let idle = Config::seconds(config.idle_timeout_seconds, 60.0).max(state.inner.heartbeat * 2);
        let timeouts = connections::Timeouts { header: Config::seconds(config.header_timeout_seconds, 10.0), idle };
        Ok(Self { listener, state, stop, chores, timeouts })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        self.listener.local_addr().map_err(ServerError::Serve)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then tells every session to close, stops the
    /// reconstruction workers and waits for both.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
        let Self { listener, state, stop, chores, timeouts } = self;
        let background = system::spawn_background(state.clone(), chores);
        let pipeline = state.inner.pipeline.clone();
        let storage = state.inner.events.storage().clone();
        let gate = state.inner.connections.clone();
        let app = router(state);
        let stopping = async move {
            shutdown.await;
            tracing::info!("shutting down: closing sessions");
            let _ = stop.send(true);
        };
        connections::serve(listener, app, gate, timeouts, stopping, Duration::from_secs(10)).await;
        background.abort();
        let _ = tokio::task::spawn_blocking(move || {
            pipeline.shutdown();
            if let Err(err) = storage.sync() {
                tracing::error!(%err, "could not flush the database at shutdown");
            }
        })
        .await;
        Ok(())
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
