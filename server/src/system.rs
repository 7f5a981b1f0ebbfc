//! The server's own vital signs (CPU, memory, pipeline load), broadcast to rooms as
//! `system_status`, and the background chores that run on a timer.

use crate::archive::{archive_idle, expire_unused};
use crate::state::AppState;
use app::protocol::{ServerMessage, SystemStatus};
use std::time::{Duration, Instant};

const STATUS_EVERY: Duration = Duration::from_secs(5);
/// How often presence changes are sent: fast enough to feel live, slow enough to coalesce a
/// burst of joins into one frame.
const PRESENCE_EVERY: Duration = Duration::from_millis(250);
/// Room events are on the disk at most this long after everyone saw them (see
/// `crate::storage`): the window a power cut can take.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Makes glibc give large buffers back to the system when they are freed. By default it raises
/// its mmap threshold to the size of the last large buffer freed (up to 32 MiB), after which
/// photo-sized buffers come from per-thread heaps that keep them: one 30 MB upload handled on
/// each of a few threads left hundreds of MB resident. A fixed threshold keeps every buffer
/// over 8 MiB (larger than the reconstruction's working images at 1600 px) mapped on its own
/// and unmapped when freed.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before heavy allocation.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 << 20);
    }
}

/// Resident memory of this process in bytes (Linux; 0 elsewhere).
pub fn resident_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .unwrap_or(0);
    pages * 4096
}

/// CPU seconds this process has used (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the parenthesised command name, which may itself contain spaces.
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Measures CPU use between calls.
pub struct CpuMeter {
    last: (Instant, f64),
}

impl Default for CpuMeter {
    fn default() -> Self {
        Self { last: (Instant::now(), cpu_seconds()) }
    }
}

impl CpuMeter {
    /// Percent of one core used since the previous call.
    pub fn sample(&mut self) -> f32 {
        let now = (Instant::now(), cpu_seconds());
        let wall = now.0.duration_since(self.last.0).as_secs_f64();
        let used = now.1 - self.last.1;
        self.last = now;
        if wall <= 0.0 { 0.0 } else { (100.0 * used / wall) as f32 }
    }
}

pub fn status(state: &AppState, cpu: &mut CpuMeter) -> SystemStatus {
    let load = state.inner.pipeline.load();
    SystemStatus {
        queued: load.queued as u32,
        active_jobs: load.active as u32,
        workers: load.workers as u32,
        cpu_percent: cpu.sample(),
        memory_bytes: resident_bytes(),
    }
}

/// When rooms nobody uses leave memory or go away.
#[derive(Clone, Copy, Debug)]
pub struct Chores {
    pub archive_after: Duration,
    pub unused_after: Duration,
}

/// Status broadcasts, flushes, archiving and expiry, until the returned task is aborted.
pub fn spawn_background(state: AppState, chores: Chores) -> tokio::task::JoinHandle<()> {
    let Chores { archive_after, unused_after } = chores;
    tokio::spawn(async move {
        let mut cpu = CpuMeter::default();
        let mut ticker = tokio::time::interval(STATUS_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Archiving checks often enough to honour short test settings, at most once a minute.
        let archive_every =
            (archive_after.min(unused_after) / 4).clamp(Duration::from_millis(200), Duration::from_secs(60));
        let mut last_archive = Instant::now();
        let mut presence = tokio::time::interval(PRESENCE_EVERY);
        presence.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sync = tokio::time::interval(SYNC_EVERY);
        sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = sync.tick() => {
                    let storage = state.inner.events.storage().clone();
                    if let Ok(Err(err)) = tokio::task::spawn_blocking(move || storage.sync()).await {
                        tracing::error!(%err, "room events could not be flushed to disk; retrying in 1 s");
                    }
                    continue;
                }
                _ = presence.tick() => {
                    let events = state.inner.events.clone();
                    let _ = tokio::task::spawn_blocking(move || events.flush_presence()).await;
                    continue;
                }
            }
            let status = status(&state, &mut cpu);
            *state.inner.latest_status.lock().unwrap_or_else(|p| p.into_inner()) = Some(status.clone());
            state.inner.events.broadcast_all(&ServerMessage::SystemStatus { status });
            let storage = state.inner.events.storage().clone();
            if let Ok(Err(err)) = tokio::task::spawn_blocking(move || storage.checkpoint()).await {
                tracing::warn!(%err, "WAL checkpoint failed; it is retried in 5 s");
            }
            if last_archive.elapsed() >= archive_every {
                last_archive = Instant::now();
                let state = state.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    expire_unused(&state, unused_after);
                    archive_idle(&state, archive_after);
                })
                .await;
            }
        }
    })
}
