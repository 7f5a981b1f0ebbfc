//! `GET /health`: whether the server is up, for load balancers, scripts and the e2e tests.

use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;

#[derive(Debug, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub uptime_seconds: f64,
    pub open_connections: usize,
}

pub async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_seconds: state.inner.started.elapsed().as_secs_f64(),
        open_connections: state.inner.open_connections.load(Ordering::Relaxed),
    })
}
