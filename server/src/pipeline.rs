//! The live reconstruction: each room's photos go through `recon` in upload order, on worker
//! threads off the async runtime, and every step becomes an event or a progress message.
//!
//! Scheduling: a fixed pool of workers (default: the number of cores) takes rooms from a ready
//! queue, processes one photo, and puts the room back at the end if it has more. So a room is
//! never processed by two workers at once (its photos stay in order), no room starves another,
//! and the machine never runs more reconstructions than it has workers.
//!
//! Durability: after each photo the room's reconstruction is saved (`recon.bin`) together with
//! an *outbox*, the events that announce the photo's outcome, before those events are
//! appended. A crash between the two is repaired at start: outbox events the log does not have
//! yet are appended then. Photos the log still shows as queued or processing are queued again.
//!
//! It is not the reconstruction itself (that is `recon`) nor the event log (`event_log`).

use crate::event_log::{Decision, EventLog, EventLogError};
use crate::shards::ShardStore;
use crate::durable::write_durably;
use crate::layout::{photo_path, thumbnail_path};
use app::protocol::{
    CameraView, KnownIntrinsics, Manifest, PhotoState, RoomEvent, RoomId, RoomSettings, RoomSnapshot,
    ServerMessage,
};
use recon::{CancelToken, Model, PhotoStatus, ReconError, Reconstruction, Stage};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tracing::{error, info, info_span, warn};

/// Progress messages per photo are spaced at least this far apart (stage changes always go).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);
const RECON_FILE: &str = "recon.bin";
const RECON_MAGIC: &[u8; 4] = b"VRS1";

/// Why a member's command on a photo was refused.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("this room has no photo {0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Log(#[from] EventLogError),
    #[error("the reconstruction could not be saved: {0}")]
    Save(String),
}

/// The pipeline's load, for `/metrics` and the periodic system status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    pub queued: usize,
    pub active: usize,
    pub workers: usize,
}

#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

struct Inner {
    events: Arc<EventLog>,
    shards: ShardStore,
    data_dir: PathBuf,
    workers: usize,
    rooms: Mutex<HashMap<RoomId, Arc<RoomWork>>>,
    ready: Mutex<VecDeque<RoomId>>,
    wake: Condvar,
    active: AtomicUsize,
    stopping: AtomicBool,
    stage_times: Mutex<StageTimes>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

#[derive(Default)]
struct RoomWork {
    queue: Mutex<Queue>,
    /// Loaded on first use; `None` until then.
    recon: Mutex<Option<Reconstruction>>,
    /// The model after the latest photo, for downloads without waiting for a running photo.
    model: Mutex<Option<Arc<Model>>>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<String>,
    /// In the ready queue or being worked on.
    scheduled: bool,
    running: Option<Running>,
}

struct Running {
    photo: String,
    cancel: CancelToken,
    cancelled_by: Option<String>,
}

/// Exponential moving averages of stage durations, which the ETA is made of.
struct StageTimes(HashMap<Stage, f64>);

impl Default for StageTimes {
    fn default() -> Self {
        // Priors measured on this project's benchmark machine (dev profile, 1600 px photos),
        // replaced by real measurements after the first photos.
        Self(HashMap::from([
            (Stage::Decode, 0.15),
            (Stage::Features, 0.8),
            (Stage::Matching, 0.6),
            (Stage::Registration, 0.1),
            (Stage::Triangulation, 0.1),
            (Stage::LocalAdjustment, 0.3),
            (Stage::Refinement, 1.0),
        ]))
    }
}

impl StageTimes {
    fn record(&mut self, stage: Stage, seconds: f64) {
        let average = self.0.entry(stage).or_insert(seconds);
        *average = 0.7 * *average + 0.3 * seconds;
    }

    /// Seconds left when `stage` is `fraction` done; refinement is counted only while it runs.
    fn remaining(&self, stage: Stage, fraction: f32) -> f64 {
        let of = |s: Stage| self.0.get(&s).copied().unwrap_or(0.0);
        let current = of(stage) * (1.0 - f64::from(fraction.clamp(0.0, 1.0)));
        let later: f64 = Stage::ALL
            .iter()
            .filter(|s| **s > stage && **s != Stage::Refinement)
            .map(|s| of(*s))
            .sum();
        current + if stage == Stage::Refinement { 0.0 } else { later }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every holder leaves the data consistent between statements; a panic elsewhere must not
    // stop the pipeline.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Pipeline {
    /// Starts `workers` worker threads.
    pub fn start(events: Arc<EventLog>, data_dir: &Path, workers: usize) -> Self {
        let inner = Arc::new(Inner {
            events,
            shards: ShardStore::new(data_dir),
            data_dir: data_dir.to_owned(),
            workers: workers.max(1),
            rooms: Mutex::new(HashMap::new()),
            ready: Mutex::new(VecDeque::new()),
            wake: Condvar::new(),
            active: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            stage_times: Mutex::new(StageTimes::default()),
            threads: Mutex::new(Vec::new()),
        });
        let threads = (0..inner.workers)
            .filter_map(|i| {
                let inner = inner.clone();
                std::thread::Builder::new()
                    .name(format!("recon-{i}"))
                    .spawn(move || inner.work())
                    .map_err(|err| error!(%err, "cannot start a reconstruction worker"))
                    .ok()
            })
            .collect();
        *lock(&inner.threads) = threads;
        Self { inner }
    }

    pub fn shards(&self) -> &ShardStore {
        &self.inner.shards
    }

    pub fn load(&self) -> Load {
        let queued = lock(&self.inner.rooms).values().map(|w| lock(&w.queue).waiting.len()).sum();
        Load { queued, active: self.inner.active.load(Ordering::Relaxed), workers: self.inner.workers }
    }

    /// Queues a photo the log shows as queued.
    pub fn enqueue(&self, room: &RoomId, photo: &str) {
        self.inner.enqueue(room, photo);
    }

    /// After a start: repairs what a crash interrupted and queues every photo that still
    /// awaits processing, in upload order.
    pub fn recover(&self) -> Result<usize, EventLogError> {
        let mut queued = 0;
        for raw in self.inner.events.storage().rooms_with_photos()? {
            let Ok(room) = RoomId::parse(&raw) else { continue };
            let work = self.inner.room(&room);
            let outbox = {
                let mut recon = lock(&work.recon);
                match self.inner.ensure_loaded(&room, &mut recon) {
                    Ok(outbox) => outbox,
                    Err(err) => {
                        error!(room = %room, %err, "cannot load the room's reconstruction");
                        Vec::new()
                    }
                }
            };
            if !outbox.is_empty() {
                self.inner.publish_outcome(&room, outbox)?;
            }
            // A refinement the stream announced but never closed died with the last process:
            // say so, so that no client waits for its end. Its photo is queued again below,
            // and the refinement runs again with it.
            self.inner
                .events
                .transact(&room, |state| match state.refining {
                    Some(photos) => Decision::append(vec![RoomEvent::RefinementInterrupted { photos }], ()).synced(),
                    None => Decision::nothing(()),
                })
                .map(|_| ())?;
            let (_, state) = self.inner.events.status(&room)?;
            for photo in state.photos.iter().filter(|p| p.status.awaits_processing()) {
                self.inner.enqueue(&room, &photo.id);
                queued += 1;
            }
        }
        Ok(queued)
    }

    /// Stops a queued or running photo; it stays in the room as cancelled.
    pub fn cancel(&self, room: &RoomId, photo: &str, by: &str) -> Result<(), CommandError> {
        let work = self.inner.room(room);
        let (_, outcome) = self.inner.events.transact(room, |state| {
            let Some(summary) = state.photo(photo) else {
                return Decision::nothing(Err(CommandError::NotFound(photo.to_owned())));
            };
            if !summary.status.awaits_processing() {
                return Decision::nothing(Err(CommandError::InvalidState(format!(
                    "only queued or processing photos can be cancelled; this one is {}",
                    state_name(summary.status)
                ))));
            }
            let mut queue = lock(&work.queue);
            if let Some(running) = queue.running.as_mut().filter(|r| r.photo == photo) {
                // The worker announces the cancellation when it stops, so the model and the
                // stream never disagree about whether the photo made it in.
                running.cancelled_by = Some(by.to_owned());
                running.cancel.cancel();
                return Decision::nothing(Ok(()));
            }
            queue.waiting.retain(|p| p != photo);
            Decision::append(vec![RoomEvent::PhotoCancelled { photo: photo.to_owned(), by: by.to_owned() }], Ok(()))
        })?;
        outcome
    }

    /// Queues a failed, cancelled or pending photo again.
    pub fn retry(&self, room: &RoomId, photo: &str, by: &str) -> Result<(), CommandError> {
        let status = self.status_of(room, photo)?;
        match status {
            PhotoState::Failed | PhotoState::Cancelled => {}
            // A pending photo is still inside the reconstruction: take it out so that it is
            // matched afresh against everything that arrived since.
            PhotoState::Pending => self.inner.forget_pending(room, photo)?,
            other => {
                return Err(CommandError::InvalidState(format!(
                    "only failed, cancelled or unregistered photos can be retried; this one is {}",
                    state_name(other)
                )));
            }
        }
        let (_, outcome) = self.inner.events.transact(room, |state| match state.photo(photo).map(|p| p.status) {
            Some(s) if s == status => {
                Decision::append(vec![RoomEvent::PhotoRetried { photo: photo.to_owned(), by: by.to_owned() }], Ok(()))
            }
            _ => Decision::nothing(Err(CommandError::InvalidState("the photo changed meanwhile; try again".into()))),
        })?;
        outcome?;
        self.inner.enqueue(room, photo);
        Ok(())
    }

    /// Takes a photo that is not part of the model out of the room, with its file.
    pub fn remove(&self, room: &RoomId, photo: &str, by: &str) -> Result<(), CommandError> {
        let status = self.status_of(room, photo)?;
        match status {
            PhotoState::Failed | PhotoState::Cancelled | PhotoState::Queued => {}
            PhotoState::Pending => self.inner.forget_pending(room, photo)?,
            PhotoState::Registered | PhotoState::Processing => {
                return Err(CommandError::InvalidState(format!(
                    "a {} photo is part of the model and cannot be removed",
                    state_name(status)
                )));
            }
        }
        let work = self.inner.room(room);
        let (_, outcome) = self.inner.events.transact(room, |state| match state.photo(photo).map(|p| p.status) {
            Some(s) if s == status => {
                lock(&work.queue).waiting.retain(|p| p != photo);
                // Synced: the photo's file is deleted next, and must not outlive a lost removal.
                Decision {
                    forget_photo: Some(photo.to_owned()),
                    ..Decision::append(vec![RoomEvent::PhotoRemoved { photo: photo.to_owned(), by: by.to_owned() }], Ok(()))
                }
                .synced()
            }
            _ => Decision::nothing(Err(CommandError::InvalidState("the photo changed meanwhile; try again".into()))),
        })?;
        outcome?;
        let path = photo_path(&self.inner.data_dir, room, photo);
        if let Err(err) = std::fs::remove_file(&path) {
            warn!(%err, path = %path.display(), "could not delete a removed photo's file");
        }
        // Made only when a card asked for it, so usually there is none to delete.
        let _ = std::fs::remove_file(thumbnail_path(&self.inner.data_dir, room, photo));
        Ok(())
    }

    fn status_of(&self, room: &RoomId, photo: &str) -> Result<PhotoState, CommandError> {
        let (_, state) = self.inner.events.status(room)?;
        state.photo(photo).map(|p| p.status).ok_or_else(|| CommandError::NotFound(photo.to_owned()))
    }

    /// The room's current model (cameras and full-precision points).
    pub fn model(&self, room: &RoomId) -> Result<Arc<Model>, CommandError> {
        let work = self.inner.room(room);
        if let Some(model) = lock(&work.model).clone() {
            return Ok(model);
        }
        let mut recon = lock(&work.recon);
        let outbox = self.inner.ensure_loaded(room, &mut recon).map_err(|e| CommandError::Save(e.to_string()))?;
        drop(recon);
        if !outbox.is_empty() {
            self.inner.publish_outcome(room, outbox)?;
        }
        Ok(lock(&work.model).clone().unwrap_or_default())
    }

    /// Forgets a room's in-memory work (after deletion or archiving). Its queue is dropped;
    /// archived rooms requeue from the log when they are opened again.
    pub fn forget(&self, room: &RoomId) {
        if let Some(work) = lock(&self.inner.rooms).remove(room) {
            let mut queue = lock(&work.queue);
            queue.waiting.clear();
            if let Some(running) = &queue.running {
                running.cancel.cancel();
            }
        }
    }

    /// Stops taking work, interrupts running photos without recording them as cancelled (they
    /// are processed again after the restart), and waits for the workers.
    pub fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::Release);
        for work in lock(&self.inner.rooms).values() {
            if let Some(running) = &lock(&work.queue).running {
                running.cancel.cancel();
            }
        }
        self.inner.wake.notify_all();
        let threads = std::mem::take(&mut *lock(&self.inner.threads));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

fn state_name(state: PhotoState) -> &'static str {
    match state {
        PhotoState::Queued => "queued",
        PhotoState::Processing => "processing",
        PhotoState::Registered => "registered",
        PhotoState::Pending => "waiting for more photos",
        PhotoState::Failed => "failed",
        PhotoState::Cancelled => "cancelled",
    }
}

impl Inner {
    fn room(&self, room: &RoomId) -> Arc<RoomWork> {
        lock(&self.rooms).entry(room.clone()).or_default().clone()
    }

    fn enqueue(&self, room: &RoomId, photo: &str) {
        let work = self.room(room);
        let mut queue = lock(&work.queue);
        if queue.waiting.iter().any(|p| p == photo) || queue.running.as_ref().is_some_and(|r| r.photo == photo) {
            return;
        }
        queue.waiting.push_back(photo.to_owned());
        if !queue.scheduled {
            queue.scheduled = true;
            lock(&self.ready).push_back(room.clone());
            self.wake.notify_one();
        }
    }

    /// A worker thread: takes a room, processes its next photo, repeats until shutdown.
    fn work(self: Arc<Self>) {
        loop {
            let room = {
                let mut ready = lock(&self.ready);
                loop {
                    if self.stopping.load(Ordering::Acquire) {
                        return;
                    }
                    if let Some(room) = ready.pop_front() {
                        break room;
                    }
                    ready = self.wake.wait(ready).unwrap_or_else(|poisoned| poisoned.into_inner());
                }
            };
            let work = self.room(&room);
            let next = {
                let mut queue = lock(&work.queue);
                let next = queue.waiting.pop_front();
                if let Some(photo) = &next {
                    queue.running = Some(Running { photo: photo.clone(), cancel: CancelToken::new(), cancelled_by: None });
                }
                next
            };
            if let Some(photo) = next {
                self.active.fetch_add(1, Ordering::Relaxed);
                let span = info_span!("photo", room = %room, photo = %&photo[..photo.len().min(12)]);
                span.in_scope(|| {
                    if let Err(err) = self.process(&room, &work, &photo) {
                        error!(%err, "could not record a photo's outcome");
                    }
                });
                self.active.fetch_sub(1, Ordering::Relaxed);
            }
            let mut queue = lock(&work.queue);
            queue.running = None;
            if queue.waiting.is_empty() || self.stopping.load(Ordering::Acquire) {
                queue.scheduled = false;
            } else {
                // To the back of the line: other rooms get a turn between this room's photos.
                lock(&self.ready).push_back(room);
                self.wake.notify_one();
            }
        }
    }

    fn process(&self, room: &RoomId, work: &RoomWork, photo: &str) -> Result<(), EventLogError> {
        let (_, state) = self.events.status(room)?;
        if !state.photo(photo).is_some_and(|p| p.status.awaits_processing()) {
            // Cancelled or removed while it waited.
            return Ok(());
        }
        let cancel = match &lock(&work.queue).running {
            Some(running) => running.cancel.clone(),
            None => return Ok(()),
        };
        self.events.append(room, RoomEvent::PhotoStarted { photo: photo.to_owned() })?;
        let started = Instant::now();
        let fail = |reason: String, retryable: bool| {
            warn!(reason, "photo failed");
            self.events
                .append(room, RoomEvent::PhotoFailed { photo: photo.to_owned(), reason, retryable })
                .map(|_| ())
        };
        let bytes = match std::fs::read(photo_path(&self.data_dir, room, photo)) {
            Ok(bytes) => bytes,
            Err(err) => return fail(format!("the stored photo cannot be read ({err})"), true),
        };
        let mut recon = lock(&work.recon);
        let outbox = match self.ensure_loaded(room, &mut recon) {
            Ok(outbox) => outbox,
            Err(err) => return fail(format!("the room's model could not be loaded: {err}"), true),
        };
        if !outbox.is_empty() {
            self.publish_outcome(room, outbox)?;
        }
        let Some(recon) = recon.as_mut() else { return fail("the room's model could not be loaded".into(), true) };
        if let Err(err) = recon.set_settings(recon_settings(&state.settings)) {
            warn!(%err, "room settings refused by the reconstruction; keeping the previous ones");
        }
        let registered_before = state.counts().registered;
        let mut reporter = ProgressReporter::new(self, room, photo, registered_before);
        let result = recon.add_photo(photo, &bytes, &mut |stage, fraction| reporter.report(stage, fraction), &cancel);
        match result {
            Ok(outcome) => {
                {
                    let mut times = lock(&self.stage_times);
                    for (stage, seconds) in &outcome.timings.0 {
                        times.record(*stage, *seconds);
                    }
                }
                let model = Arc::new(recon.model());
                let events = match self.outcome_events(room, &state, photo, &outcome, model.points.len() as u64) {
                    Ok(events) => events,
                    Err(err) => return fail(format!("the model could not be saved: {err}"), true),
                };
                if let Err(err) = save(&self.room_dir(room), recon, &events) {
                    // The reconstruction in memory has the photo but the disk does not: drop
                    // the in-memory copy so the next photo reloads the saved one.
                    drop(std::mem::take(&mut *lock(&work.model)));
                    return fail(format!("the model could not be saved: {err}"), true);
                }
                *lock(&work.model) = Some(model);
                info!(seconds = started.elapsed().as_secs_f64(), "photo processed");
                self.publish_outcome(room, events)
            }
            Err(ReconError::Cancelled) if self.stopping.load(Ordering::Acquire) => Ok(()),
            Err(ReconError::Cancelled) => {
                let by = lock(&work.queue).running.as_ref().and_then(|r| r.cancelled_by.clone());
                self.events
                    .append(room, RoomEvent::PhotoCancelled { photo: photo.to_owned(), by: by.unwrap_or_default() })
                    .map(|_| ())
            }
            Err(err) => {
                let retryable = matches!(err, ReconError::Io { .. });
                fail(err.to_string(), retryable)
            }
        }
    }

    /// The events announcing one photo's outcome, with their shards already on disk.
    fn outcome_events(
        &self,
        room: &RoomId,
        state: &RoomSnapshot,
        photo: &str,
        outcome: &recon::AddOutcome,
        model_points: u64,
    ) -> std::io::Result<Vec<RoomEvent>> {
        let registered = |r: &recon::RegisteredPhoto| -> std::io::Result<RoomEvent> {
            let shard = self.shards.put(room, &r.new_points)?;
            Ok(RoomEvent::PhotoRegistered {
                photo: r.camera.image.clone(),
                camera: camera_view(&r.camera),
                shard,
                model_points: Some(model_points),
            })
        };
        let mut events = vec![match &outcome.status {
            PhotoStatus::Registered(r) => registered(r)?,
            PhotoStatus::NotRegistered { reason } => RoomEvent::PhotoPending { photo: photo.to_owned(), reason: reason.clone() },
        }];
        for r in &outcome.also_registered {
            events.push(registered(r)?);
        }
        if let Some(model) = &outcome.model {
            let shards = self.shards.put_all(room, &model.points)?;
            events.push(RoomEvent::RefinementDone {
                manifest: Manifest { generation: state.manifest.generation + 1, shards },
                cameras: model.cameras.iter().map(camera_view).collect(),
                seconds: outcome.timings.get(Stage::Refinement),
            });
        }
        // Cameras the refinement found inconsistent left the model it just published: their
        // photos are pending again, and say why.
        for gone in &outcome.unregistered {
            events.push(RoomEvent::PhotoPending {
                photo: gone.id.clone(),
                reason: format!("taken out of the model by the refinement: {}", gone.reason),
            });
        }
        Ok(events)
    }

    /// Appends the outcome events the log does not have yet. Idempotent, so the outbox can be
    /// replayed after a crash.
    fn publish_outcome(&self, room: &RoomId, events: Vec<RoomEvent>) -> Result<(), EventLogError> {
        self.events
            .transact(room, |state| {
                let missing = events.into_iter().filter(|e| not_yet_applied(state, e)).collect();
                // Synced: the next save of `recon.bin` drops this outbox.
                Decision::append(missing, ()).synced()
            })
            .map(|_| ())
    }

    /// Loads the saved reconstruction, or starts one with the room's settings. Returns the
    /// outbox saved with it.
    fn ensure_loaded(&self, room: &RoomId, recon: &mut Option<Reconstruction>) -> Result<Vec<RoomEvent>, String> {
        if recon.is_some() {
            return Ok(Vec::new());
        }
        let path = self.room_dir(room).join(RECON_FILE);
        let (loaded, outbox) = match std::fs::read(&path) {
            Ok(bytes) => load(&bytes)?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let (_, state) = self.events.status(room).map_err(|e| e.to_string())?;
                (Reconstruction::new(recon_settings(&state.settings)).map_err(|e| e.to_string())?, Vec::new())
            }
            Err(err) => return Err(format!("cannot read {}: {err}", path.display())),
        };
        *lock(&self.room(room).model) = Some(Arc::new(loaded.model()));
        *recon = Some(loaded);
        Ok(outbox)
    }

    /// Takes a pending photo out of the reconstruction, durably.
    fn forget_pending(&self, room: &RoomId, photo: &str) -> Result<(), CommandError> {
        let work = self.room(room);
        let mut recon = lock(&work.recon);
        let outbox = self.ensure_loaded(room, &mut recon).map_err(CommandError::Save)?;
        if !outbox.is_empty() {
            self.publish_outcome(room, outbox)?;
        }
        let Some(recon) = recon.as_mut() else { return Err(CommandError::Save("not loaded".into())) };
        match recon.remove_photo(photo) {
            Ok(()) | Err(ReconError::UnknownId(_)) => {}
            Err(err) => return Err(CommandError::InvalidState(err.to_string())),
        }
        save(&self.room_dir(room), recon, &[]).map_err(|e| CommandError::Save(e.to_string()))?;
        *lock(&work.model) = Some(Arc::new(recon.model()));
        Ok(())
    }

    fn room_dir(&self, room: &RoomId) -> PathBuf {
        self.data_dir.join("rooms").join(room.as_str())
    }
}

/// Whether `event` (from an outbox) still has to be appended to a log in `state`.
fn not_yet_applied(state: &RoomSnapshot, event: &RoomEvent) -> bool {
    let status = |photo: &str| state.photo(photo).map(|p| p.status);
    match event {
        RoomEvent::PhotoRegistered { photo, .. } => {
            matches!(status(photo), Some(s) if s != PhotoState::Registered)
        }
        // A registered photo goes back to pending when a refinement takes its camera out.
        RoomEvent::PhotoPending { photo, .. } => {
            status(photo).is_some_and(|s| s.awaits_processing() || s == PhotoState::Registered)
        }
        RoomEvent::RefinementDone { manifest, .. } => manifest.generation > state.manifest.generation,
        _ => true,
    }
}

/// Sends throttled progress with an ETA, and announces a refinement when it starts.
struct ProgressReporter<'a> {
    inner: &'a Inner,
    room: &'a RoomId,
    photo: &'a str,
    registered: u32,
    stage: Option<Stage>,
    last_sent: Option<Instant>,
}

impl<'a> ProgressReporter<'a> {
    fn new(inner: &'a Inner, room: &'a RoomId, photo: &'a str, registered: u32) -> Self {
        Self { inner, room, photo, registered, stage: None, last_sent: None }
    }

    fn report(&mut self, stage: Stage, fraction: f32) {
        let changed = self.stage != Some(stage);
        if changed && stage == Stage::Refinement {
            let event = RoomEvent::RefinementStarted { photos: self.registered + 1 };
            if let Err(err) = self.inner.events.append(self.room, event) {
                warn!(%err, "could not announce the refinement");
            }
        }
        if !changed && self.last_sent.is_some_and(|t| t.elapsed() < PROGRESS_INTERVAL) {
            return;
        }
        self.stage = Some(stage);
        self.last_sent = Some(Instant::now());
        let eta = lock(&self.inner.stage_times).remaining(stage, fraction);
        self.inner.events.broadcast(
            self.room,
            &ServerMessage::Progress {
                photo: self.photo.to_owned(),
                stage: stage.name().to_owned(),
                fraction,
                eta_ms: Some((eta * 1000.0).round() as u64),
            },
        );
    }
}

fn recon_settings(settings: &RoomSettings) -> recon::Settings {
    recon::Settings {
        refine_every: settings.refine_every.value,
        max_image_side: settings.max_image_side.value,
        max_features: settings.max_features.value,
        intrinsics: settings.intrinsics.value.map(|k: KnownIntrinsics| recon::Intrinsics {
            fx: k.fx,
            fy: k.fy,
            cx: k.cx,
            cy: k.cy,
        }),
        ..recon::Settings::default()
    }
}

fn camera_view(camera: &recon::Camera) -> CameraView {
    CameraView {
        photo: camera.image.clone(),
        rotation: camera.rotation,
        center: camera.center,
        fx: camera.intrinsics.fx,
        fy: camera.intrinsics.fy,
        cx: camera.intrinsics.cx,
        cy: camera.intrinsics.cy,
        width: camera.width,
        height: camera.height,
    }
}

/// `recon.bin`: magic, outbox length (u32 LE), outbox JSON, then the reconstruction's bytes.
/// One file, written atomically, so the model and its announcement cannot disagree on disk.
fn save(dir: &Path, recon: &Reconstruction, outbox: &[RoomEvent]) -> std::io::Result<()> {
    let state = recon.to_bytes().map_err(std::io::Error::other)?;
    let outbox = serde_json::to_vec(outbox).map_err(std::io::Error::other)?;
    let mut bytes = Vec::with_capacity(8 + outbox.len() + state.len());
    bytes.extend_from_slice(RECON_MAGIC);
    bytes.extend_from_slice(&(outbox.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&outbox);
    bytes.extend_from_slice(&state);
    write_durably(&dir.join(RECON_FILE), &bytes)
}

fn load(bytes: &[u8]) -> Result<(Reconstruction, Vec<RoomEvent>), String> {
    let rest = bytes.strip_prefix(RECON_MAGIC).ok_or("recon.bin is not a saved room model")?;
    let (len, rest) = rest.split_first_chunk::<4>().ok_or("recon.bin is truncated")?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return Err("recon.bin is truncated".into());
    }
    let (outbox, state) = rest.split_at(len);
    let outbox: Vec<RoomEvent> = serde_json::from_slice(outbox).map_err(|e| format!("recon.bin outbox: {e}"))?;
    let recon = Reconstruction::from_bytes(state).map_err(|e| e.to_string())?;
    Ok((recon, outbox))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_counts_what_is_left_of_this_stage_and_the_later_ones() {
        let times = StageTimes::default();
        let all: f64 = Stage::ALL.iter().filter(|s| **s != Stage::Refinement).map(|s| times.0[s]).sum();
        assert!((times.remaining(Stage::Decode, 0.0) - all).abs() < 1e-9);
        let last = times.0[&Stage::LocalAdjustment];
        assert!((times.remaining(Stage::LocalAdjustment, 0.5) - last / 2.0).abs() < 1e-9);
        assert!((times.remaining(Stage::Refinement, 1.0)).abs() < 1e-9);
    }

    #[test]
    fn measured_times_replace_the_priors() {
        let mut times = StageTimes::default();
        for _ in 0..30 {
            times.record(Stage::Features, 3.0);
        }
        assert!((times.0[&Stage::Features] - 3.0).abs() < 0.01);
    }

    #[test]
    fn saved_models_round_trip_with_their_outbox() {
        let dir = tempfile::tempdir().expect("tempdir");
        let recon = Reconstruction::new(recon::Settings::default()).expect("recon");
        let outbox = vec![RoomEvent::PhotoPending { photo: "a".into(), reason: "r".into() }];
        save(dir.path(), &recon, &outbox).expect("save");
        let bytes = std::fs::read(dir.path().join(RECON_FILE)).expect("read");
        let (_, back) = load(&bytes).expect("load");
        assert_eq!(back, outbox);
        assert!(load(&bytes[..6]).is_err());
        assert!(load(b"nonsense").is_err());
    }

    #[test]
    fn outbox_replay_skips_what_the_log_already_has() {
        let mut state = RoomSnapshot::default();
        state.apply(1, &RoomEvent::PhotoQueued { photo: "a".into(), name: "a".into(), by: "b".into(), uploader: None, bytes: 1, position: 1 });
        let pending = RoomEvent::PhotoPending { photo: "a".into(), reason: "r".into() };
        assert!(not_yet_applied(&state, &pending));
        state.apply(2, &pending);
        assert!(!not_yet_applied(&state, &pending));
        let refined = RoomEvent::RefinementDone { manifest: Manifest { generation: 1, shards: vec![] }, cameras: vec![], seconds: 0.0 };
        assert!(not_yet_applied(&state, &refined));
        state.apply(3, &refined);
        assert!(!not_yet_applied(&state, &refined));
    }
}
