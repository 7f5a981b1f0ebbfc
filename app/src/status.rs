//! The room's status line and downloads: photos registered of total, points, the last
//! refinement, the queue, and the server's load.

use crate::protocol::RoomId;
use crate::room_state::RoomStore;
use leptos::prelude::*;

/// Bytes as a short human figure.
pub fn megabytes(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

#[component]
pub fn RoomStatus(store: RoomStore) -> impl IntoView {
    let counts = Memo::new(move |_| store.model.with(|m| m.room.counts()));
    let points = Memo::new(move |_| store.model.with(|m| m.room.manifest.points()));
    let refinement = Memo::new(move |_| store.model.with(|m| m.room.last_refinement.clone()));
    let system = Memo::new(move |_| store.model.with(|m| m.system.clone()));
    view! {
        <dl class="status" aria-label="Room status">
            <div><dt>"Photos"</dt><dd data-testid="photos-registered">{move || counts.with(|c| format!("{} / {}", c.registered, c.total))}</dd></div>
            <div><dt>"Points"</dt><dd data-testid="points">{move || points.get().to_string()}</dd></div>
            <div><dt>"Queue"</dt><dd data-testid="queue">{move || counts.with(|c| (c.queued + c.processing).to_string())}</dd></div>
            <div><dt>"Last refinement"</dt><dd>{move || match refinement.get() {
                Some(r) => format!("{} photos, {:.1} s", r.photos, r.seconds),
                None => "not yet".to_owned(),
            }}</dd></div>
            <div><dt>"Server"</dt><dd data-testid="server-load">{move || match system.get() {
                Some(s) => format!("{}/{} busy, {} waiting, CPU {:.0} %, {}", s.active_jobs, s.workers, s.queued, s.cpu_percent, megabytes(s.memory_bytes)),
                None => "…".to_owned(),
            }}</dd></div>
        </dl>
    }
}

#[component]
pub fn Downloads(room: RoomId, token: Option<String>) -> impl IntoView {
    let query = token.map(|t| format!("?token={t}")).unwrap_or_default();
    view! {
        <nav class="downloads" aria-label="Downloads">
            <a href=format!("/api/rooms/{room}/model.ply{query}") download=format!("{room}.ply")>"Download model.ply"</a>
            <a href=format!("/api/rooms/{room}/cameras.json{query}") download=format!("{room}-cameras.json")>"Download cameras.json"</a>
        </nav>
    }
}
