//! The room's status line and downloads: photos registered of total, points, the last
//! refinement, the queue, and the server's load.

use crate::protocol::RoomId;
use crate::room_state::RoomStore;
use leptos::prelude::*;

/// Bytes as a short human figure.
pub fn megabytes(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

/// "processing 1 photo (of 2 at once), 3 waiting · CPU 95 % · 300 MB".
pub fn server_load(active: u32, workers: u32, queued: u32, cpu: f32, memory: u64) -> String {
    let work = match (active, queued) {
        (0, 0) => "idle".to_owned(),
        (a, 0) => format!("processing {a} photo{} (of {workers} at once)", if a == 1 { "" } else { "s" }),
        (a, q) => format!("processing {a} (of {workers} at once), {q} waiting"),
    };
    format!("{work} · CPU {cpu:.0} % · {}", megabytes(memory))
}

#[component]
pub fn RoomStatus(store: RoomStore) -> impl IntoView {
    let counts = Memo::new(move |_| store.model.with(|m| m.room.counts()));
    // The model's own count (what model.ply holds), not the shards' sum, which still counts
    // points later photos showed to be outliers.
    let points = Memo::new(move |_| store.model.with(|m| m.room.model_points.unwrap_or_else(|| m.room.manifest.points())));
    let refining = Memo::new(move |_| store.model.with(|m| m.room.refining));
    let refinement = Memo::new(move |_| store.model.with(|m| m.room.last_refinement.clone()));
    let system = Memo::new(move |_| store.model.with(|m| m.system.clone()));
    view! {
        <dl class="status" aria-label="Room status">
            <div><dt>"Photos"</dt><dd data-testid="photos-registered">{move || counts.with(|c| format!("{} / {}", c.registered, c.total))}</dd></div>
            <div><dt>"Points"</dt><dd data-testid="points">{move || points.get().to_string()}</dd></div>
            <div><dt>"Queue"</dt><dd data-testid="queue">{move || counts.with(|c| (c.queued + c.processing).to_string())}</dd></div>
            <div><dt>"Refinement"</dt><dd data-testid="refinement">{move || match (refining.get(), refinement.get()) {
                (Some(photos), _) => format!("refining {photos} photos…"),
                (None, Some(r)) => format!("last: {} photos, {:.1} s", r.photos, r.seconds),
                (None, None) => "not yet".to_owned(),
            }}</dd></div>
            <div><dt>"Server"</dt><dd data-testid="server-load">{move || match system.get() {
                Some(s) => server_load(s.active_jobs, s.workers, s.queued, s.cpu_percent, s.memory_bytes),
                None => "checking…".to_owned(),
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_load_line_says_what_is_happening() {
        assert_eq!(super::server_load(0, 2, 0, 1.0, 80_000_000), "idle · CPU 1 % · 80 MB");
        assert_eq!(super::server_load(1, 2, 0, 95.0, 300_000_000), "processing 1 photo (of 2 at once) · CPU 95 % · 300 MB");
        assert_eq!(super::server_load(2, 2, 3, 190.0, 1_000_000), "processing 2 (of 2 at once), 3 waiting · CPU 190 % · 1 MB");
    }
}
