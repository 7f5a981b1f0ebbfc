//! `GET /metrics` in the Prometheus text exposition format (version 0.0.4).

use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::fmt::Write;
use std::sync::atomic::Ordering;

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let shared = &state.inner;
    let events = &shared.events;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    metric("vestige_uptime_seconds", "gauge", "Seconds since the server started.", shared.started.elapsed().as_secs_f64());
    metric("vestige_open_connections", "gauge", "Open WebSocket connections.", shared.open_connections.load(Ordering::Relaxed) as f64);
    metric("vestige_tcp_connections", "gauge", "Open TCP connections (pages, API calls and WebSockets).", shared.connections.open() as f64);
    metric("vestige_tcp_connections_max", "gauge", "Most TCP connections allowed at once.", shared.connections.max_total() as f64);
    metric("vestige_connections_refused_total", "counter", "Connections refused by the global or per-address cap.", shared.connections.refused() as f64);
    metric("vestige_ws_upload_memory_free_bytes", "gauge", "Memory left for large WebSocket frames.", (shared.ws_budget.available_kib() * 1024) as f64);
    metric("vestige_rooms_loaded", "gauge", "Rooms whose stream is loaded in memory.", events.rooms_loaded() as f64);
    metric("vestige_events_total", "counter", "Room events appended since start.", events.events_appended() as f64);
    metric("vestige_clients_cut_off_total", "counter", "Clients disconnected for falling behind (close code 4008).", events.clients_cut_off() as f64);
    metric("vestige_uploads_accepted_total", "counter", "Photos stored (201) since start.", shared.uploads_accepted.load(Ordering::Relaxed) as f64);
    metric("vestige_upload_bytes_total", "counter", "Bytes of photos stored since start.", shared.upload_bytes.load(Ordering::Relaxed) as f64);
    metric("vestige_uploads_rejected_total", "counter", "Uploads refused with an error since start.", shared.uploads_rejected.load(Ordering::Relaxed) as f64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out)
}
