//! Vestige's server: one binary that renders the pages, serves the WASM client and static files,
//! and hosts the rooms' WebSocket sessions.
//!
//! It is not the reconstruction engine (that is the `recon` crate, called from here) and holds no
//! UI code (that is `app`, rendered here through leptos_axum).

pub mod config;
pub mod event_log;
pub mod health;
pub mod metrics;
pub mod session;
pub mod state;
pub mod storage;
pub mod upload;

use app::{App, shell};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, put};
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
        .route(
            "/api/rooms/{room}/photos/{photo}",
            put(upload::put_photo).layer(DefaultBodyLimit::max(state.inner.max_upload_bytes)),
        )
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
        let events = Arc::new(event_log::EventLog::new(storage));
        let (stop, stopping) = watch::channel(false);
        let state = AppState::new(leptos_options(config, addr), config, events, stopping);
        Ok(Self { listener, state, stop })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        self.listener.local_addr().map_err(ServerError::Serve)
    }

    /// Serves until `shutdown` resolves, then tells every session to close and waits for them.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
        let Self { listener, state, stop } = self;
        let app = router(state);
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("shutting down: closing sessions");
                let _ = stop.send(true);
            })
            .await
            .map_err(ServerError::Serve)
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
