//! Vestige's server: one binary that renders the pages, serves the WASM client and static files,
//! and hosts the rooms' WebSocket sessions.
//!
//! It is not the reconstruction engine (that is the `recon` crate, called from here) and holds no
//! UI code (that is `app`, rendered here through leptos_axum).
// Leptos views are nested types; the room page is deeper than the default limit allows.
#![recursion_limit = "256"]

pub mod config;
pub mod event_log;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod pipeline;
pub mod presence;
pub mod room;
pub mod session;
pub mod settings;
pub mod shards;
pub mod state;
pub mod storage;
pub mod system;
pub mod upload;

use app::{App, shell};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use config::Config;
use leptos::prelude::LeptosOptions;
use leptos_axum::{LeptosRoutes, generate_route_list};
use state::AppState;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
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

pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let leptos = state.leptos.clone();
    Router::new()
        .route("/health", get(health::health))
        .route("/metrics", get(metrics::metrics))
        .route("/ws/rooms/{room}", get(session::upgrade))
        .route("/api/rooms", post(room::create).get(room::list))
        .route("/api/rooms/{room}", get(room::status).delete(room::delete))
        .route(
            "/api/rooms/{room}/photos/{photo}",
            put(upload::put_photo).layer(DefaultBodyLimit::max(state.inner.max_upload_bytes)),
        )
        // Quantised coordinates of neighbouring points share their high bytes: gzip takes the
        // wire cost below the 9 bytes a point of the raw format.
        .route(
            "/api/rooms/{room}/shards/{hash}",
            get(shards::get_shard).layer(tower_http::compression::CompressionLayer::new().gzip(true)),
        )
        .route("/api/rooms/{room}/model.ply", get(shards::model_ply))
        .route("/api/rooms/{room}/cameras.json", get(shards::cameras_json))
        .leptos_routes(&state, routes, move || shell(leptos.clone()))
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// A bound, not yet running server. Binding first lets callers (tests, the CLI) learn the real
/// port when they asked for port 0.
pub struct Bound {
    listener: TcpListener,
    state: AppState,
    stop: watch::Sender<bool>,
    archive_after: std::time::Duration,
}

impl Bound {
    pub async fn bind(config: &Config) -> Result<Self, ServerError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| ServerError::DataDir { path: config.data_dir.clone(), source })?;
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|source| ServerError::Bind { addr: config.bind, source })?;
        let addr = listener.local_addr().map_err(ServerError::Serve)?;
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
        let state = AppState::new(leptos_options(config, addr), config, events, pipeline, stopping);
        let archive_after = Config::seconds(config.archive_after_days * 86_400.0, 30.0 * 86_400.0);
        Ok(Self { listener, state, stop, archive_after })
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
        let Self { listener, state, stop, archive_after } = self;
        let background = system::spawn_background(state.clone(), archive_after);
        let pipeline = state.inner.pipeline.clone();
        let storage = state.inner.events.storage().clone();
        let app = router(state);
        let served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("shutting down: closing sessions");
                let _ = stop.send(true);
            })
            .await
            .map_err(ServerError::Serve);
        background.abort();
        let _ = tokio::task::spawn_blocking(move || {
            pipeline.shutdown();
            if let Err(err) = storage.sync() {
                tracing::error!(%err, "could not flush the database at shutdown");
            }
        })
        .await;
        served
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
