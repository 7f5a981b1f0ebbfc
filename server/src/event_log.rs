//! Each room's ordered, durable event stream and its fan-out to connected clients.
//!
//! The model is Centrifugo's: a stream has an epoch and a strictly increasing `seq`; every event
//! is written to storage before anyone sees it; a client that comes back with its last
//! (epoch, seq) gets exactly the events after it, or a snapshot marked `reset` when they are
//! gone. Each client has a bounded queue. A client whose queue is full is cut off (close code
//! 4008) and recovers by resuming: a slow reader never slows the room.
//!
//! Ordering rests on one rule: appending an event and registering a subscriber both happen under
//! the room stream's lock. A joining client therefore sees everything up to the head it was given
//! through its backlog, and everything after it through its queue, with no gap and no overlap.

use crate::storage::{NewPhoto, Storage, StorageError};
use app::protocol::{RoomEvent, RoomId, RoomSnapshot, ServerMessage, StreamPosition};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;

/// Events kept in memory per room for fast replay; older ones are read back from storage.
const RECENT_EVENTS: usize = 1024;
/// A snapshot of the room state is saved every this many events, so a restart folds at most
/// this many events instead of the whole history.
const SNAPSHOT_EVERY: u64 = 256;
/// Default bound on a client's queue of undelivered messages.
pub const DEFAULT_CLIENT_QUEUE: usize = 512;

/// A serialised server message, shared by every recipient: an event is encoded once, not once
/// per client.
pub type Frame = Arc<str>;

#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("stored event {seq} of room {room} is unreadable: {source}")]
    Corrupt { room: String, seq: u64, source: serde_json::Error },
}

pub struct EventLog {
    storage: Arc<Storage>,
    streams: Mutex<HashMap<RoomId, Arc<Mutex<Stream>>>>,
    client_queue: usize,
    next_subscriber: AtomicU64,
    events_appended: AtomicU64,
    clients_cut_off: AtomicU64,
}

struct Stream {
    room: RoomId,
    epoch: String,
    head: u64,
    state: RoomSnapshot,
    /// (seq, frame) of the newest events, oldest first.
    recent: VecDeque<(u64, Frame)>,
    subscribers: Vec<Subscriber>,
}

struct Subscriber {
    id: u64,
    queue: mpsc::Sender<Frame>,
    lagged: Arc<AtomicBool>,
}

/// What a client needs to start following a room.
pub struct Joined {
    pub head: StreamPosition,
    /// Sent before anything from `queue`.
    pub backlog: Backlog,
    pub queue: mpsc::Receiver<Frame>,
    pub membership: Membership,
}

pub enum Backlog {
    /// The client's copy is current.
    UpToDate,
    /// Exactly the events the client missed, in order.
    Events(Vec<Frame>),
    /// The room state at the head; `reset` when a resume was asked for but is impossible.
    Snapshot { reset: bool, frame: Frame },
}

/// Removes the subscriber when dropped, and tells whether it was cut off for being too slow.
pub struct Membership {
    stream: Arc<Mutex<Stream>>,
    id: u64,
    lagged: Arc<AtomicBool>,
}

impl Membership {
    pub fn was_too_slow(&self) -> bool {
        self.lagged.load(Ordering::Acquire)
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        lock(&self.stream).subscribers.retain(|s| s.id != self.id);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Stream state is only mutated after the durable write succeeded, so it is consistent even
    // if a holder panicked.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn event_frame(epoch: &str, seq: u64, event: &RoomEvent) -> Frame {
    ServerMessage::Event { epoch: epoch.to_owned(), seq, event: event.clone() }.to_json().into()
}

fn new_epoch() -> String {
    // Unique enough to tell two histories of the same room name apart; not a secret.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}", nanos & 0xffff_ffff_ffff)
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

impl EventLog {
    pub fn new(storage: Arc<Storage>) -> Self {
        Self::with_client_queue(storage, DEFAULT_CLIENT_QUEUE)
    }

    pub fn with_client_queue(storage: Arc<Storage>, client_queue: usize) -> Self {
        Self {
            storage,
            streams: Mutex::new(HashMap::new()),
            client_queue: client_queue.max(1),
            next_subscriber: AtomicU64::new(1),
            events_appended: AtomicU64::new(0),
            clients_cut_off: AtomicU64::new(0),
        }
    }

    pub fn events_appended(&self) -> u64 {
        self.events_appended.load(Ordering::Relaxed)
    }

    pub fn clients_cut_off(&self) -> u64 {
        self.clients_cut_off.load(Ordering::Relaxed)
    }

    pub fn rooms_loaded(&self) -> usize {
        lock(&self.streams).len()
    }

    /// The room's stream, loaded from storage on first use.
    fn stream(&self, room: &RoomId) -> Result<Arc<Mutex<Stream>>, EventLogError> {
        let mut streams = lock(&self.streams);
        if let Some(stream) = streams.get(room) {
            return Ok(stream.clone());
        }
        let stored = self.storage.open_stream(room.as_str(), &new_epoch(), now_unix())?;
        let (mut state, folded_up_to) = match stored.snapshot {
            Some((seq, body)) => match serde_json::from_str::<RoomSnapshot>(&body) {
                Ok(state) => (state, seq),
                // An unreadable snapshot is only a cache: rebuild from the events.
                Err(_) => (RoomSnapshot::default(), 0),
            },
            None => (RoomSnapshot::default(), 0),
        };
        let mut recent = VecDeque::new();
        for (seq, body) in self.storage.events_between(room.as_str(), folded_up_to, stored.head)? {
            let message: ServerMessage = serde_json::from_str(&body)
                .map_err(|source| EventLogError::Corrupt { room: room.to_string(), seq, source })?;
            if let ServerMessage::Event { event, .. } = &message {
                state.apply(event);
            }
            recent.push_back((seq, Frame::from(body)));
            if recent.len() > RECENT_EVENTS {
                recent.pop_front();
            }
        }
        let stream = Arc::new(Mutex::new(Stream {
            room: room.clone(),
            epoch: stored.epoch,
            head: stored.head,
            state,
            recent,
            subscribers: Vec::new(),
        }));
        streams.insert(room.clone(), stream.clone());
        Ok(stream)
    }

    /// Durably appends `event` and delivers it to every subscriber. Returns its position.
    pub fn append(&self, room: &RoomId, event: RoomEvent) -> Result<StreamPosition, EventLogError> {
        let stream = self.stream(room)?;
        let mut stream = lock(&stream);
        let seq = stream.head + 1;
        let frame = event_frame(&stream.epoch, seq, &event);
        // Written before it is applied or sent: nobody sees an event that a crash could lose.
        self.storage.append_event(room.as_str(), seq, &frame)?;
        Ok(self.publish(&mut stream, seq, frame, &event))
    }

    /// Records a newly uploaded photo and announces it, atomically; `None` if the room already
    /// had it (an upload retried by the client), in which case nothing is written or sent.
    pub fn append_photo(&self, room: &RoomId, photo: &NewPhoto<'_>) -> Result<Option<(u32, StreamPosition)>, EventLogError> {
        let stream = self.stream(room)?;
        let mut stream = lock(&stream);
        let seq = stream.head + 1;
        let epoch = stream.epoch.clone();
        let event_for = |position| RoomEvent::PhotoQueued {
            photo: photo.id.to_owned(),
            name: photo.name.to_owned(),
            by: photo.by.to_owned(),
            bytes: photo.bytes,
            position,
        };
        let stored = self.storage.insert_photo(
            room.as_str(),
            photo,
            seq,
            |position| event_frame(&epoch, seq, &event_for(position)).to_string(),
            now_unix(),
        )?;
        let Some((position, body)) = stored else { return Ok(None) };
        let at = self.publish(&mut stream, seq, Frame::from(body), &event_for(position));
        Ok(Some((position, at)))
    }

    /// Applies an event that is already durable and hands it to every subscriber.
    fn publish(&self, stream: &mut Stream, seq: u64, frame: Frame, event: &RoomEvent) -> StreamPosition {
        let room = stream.room.clone();
        self.events_appended.fetch_add(1, Ordering::Relaxed);
        stream.head = seq;
        stream.state.apply(event);
        stream.recent.push_back((seq, frame.clone()));
        if stream.recent.len() > RECENT_EVENTS {
            stream.recent.pop_front();
        }
        if seq.is_multiple_of(SNAPSHOT_EVERY)
            && let Ok(body) = serde_json::to_string(&stream.state)
        {
            // A failed snapshot only costs a longer fold at the next start.
            if let Err(err) = self.storage.save_snapshot(room.as_str(), seq, &body) {
                tracing::warn!(room = %room, %err, "could not save a snapshot");
            }
        }
        stream.subscribers.retain(|subscriber| match subscriber.queue.try_send(frame.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                subscriber.lagged.store(true, Ordering::Release);
                self.clients_cut_off.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        StreamPosition { epoch: stream.epoch.clone(), seq }
    }

    /// Subscribes a client, resuming from `resume` when possible.
    pub fn join(&self, room: &RoomId, resume: Option<&StreamPosition>) -> Result<Joined, EventLogError> {
        let stream_arc = self.stream(room)?;
        let mut stream = lock(&stream_arc);
        let head = StreamPosition { epoch: stream.epoch.clone(), seq: stream.head };
        let backlog = match resume {
            Some(from) if from.epoch == stream.epoch && from.seq == stream.head => Backlog::UpToDate,
            Some(from) if from.epoch == stream.epoch && from.seq < stream.head => {
                match self.missed(&stream, from.seq)? {
                    Some(events) => Backlog::Events(events),
                    None => snapshot(&stream, true),
                }
            }
            Some(_) => snapshot(&stream, true),
            None => snapshot(&stream, false),
        };
        let (tx, rx) = mpsc::channel(self.client_queue);
        let id = self.next_subscriber.fetch_add(1, Ordering::Relaxed);
        let lagged = Arc::new(AtomicBool::new(false));
        stream.subscribers.push(Subscriber { id, queue: tx, lagged: lagged.clone() });
        drop(stream);
        Ok(Joined { head, backlog, queue: rx, membership: Membership { stream: stream_arc, id, lagged } })
    }

    /// Events after `after` up to the head, from memory or storage; `None` if any are gone.
    fn missed(&self, stream: &Stream, after: u64) -> Result<Option<Vec<Frame>>, EventLogError> {
        let wanted = (stream.head - after) as usize;
        if let Some((oldest, _)) = stream.recent.front()
            && *oldest <= after + 1
        {
            let skip = (after + 1 - oldest) as usize;
            return Ok(Some(stream.recent.iter().skip(skip).map(|(_, f)| f.clone()).collect()));
        }
        let stored = self.storage.events_between(stream.room.as_str(), after, stream.head)?;
        if stored.len() != wanted {
            return Ok(None);
        }
        Ok(Some(stored.into_iter().map(|(_, body)| Frame::from(body)).collect()))
    }

    /// The head and state of a room, for status pages.
    pub fn status(&self, room: &RoomId) -> Result<(StreamPosition, RoomSnapshot), EventLogError> {
        let stream = self.stream(room)?;
        let stream = lock(&stream);
        Ok((StreamPosition { epoch: stream.epoch.clone(), seq: stream.head }, stream.state.clone()))
    }
}

fn snapshot(stream: &Stream, reset: bool) -> Backlog {
    let message = ServerMessage::Snapshot {
        position: StreamPosition { epoch: stream.epoch.clone(), seq: stream.head },
        reset,
        room: stream.state.clone(),
    };
    Backlog::Snapshot { reset, frame: message.to_json().into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> RoomId {
        RoomId::parse("auditorio").expect("valid")
    }

    fn note(i: u64) -> RoomEvent {
        RoomEvent::Note { by: "test".into(), text: format!("note {i}") }
    }

    fn seq_of(frame: &Frame) -> u64 {
        match serde_json::from_str::<ServerMessage>(frame) {
            Ok(ServerMessage::Event { seq, .. }) => seq,
            other => panic!("not an event: {other:?}"),
        }
    }

    fn log(dir: &std::path::Path, queue: usize) -> EventLog {
        EventLog::with_client_queue(Arc::new(Storage::open(dir).expect("storage")), queue)
    }

    #[test]
    fn live_events_arrive_in_order_with_consecutive_seqs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = log(dir.path(), 64);
        let mut joined = log.join(&room(), None).expect("join");
        assert!(matches!(joined.backlog, Backlog::Snapshot { reset: false, .. }));
        for i in 1..=10 {
            assert_eq!(log.append(&room(), note(i)).expect("append").seq, i);
        }
        let got: Vec<u64> = (0..10).map(|_| seq_of(&joined.queue.try_recv().expect("event"))).collect();
        assert_eq!(got, (1..=10).collect::<Vec<_>>());
    }

    #[test]
    fn resuming_gives_exactly_the_missed_events_from_memory_and_from_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = log(dir.path(), 64);
        for i in 1..=(RECENT_EVENTS as u64 + 40) {
            log.append(&room(), note(i)).expect("append");
        }
        let (head, _) = log.status(&room()).expect("status");
        // From memory: the last 5.
        let from = StreamPosition { epoch: head.epoch.clone(), seq: head.seq - 5 };
        let Backlog::Events(events) = log.join(&room(), Some(&from)).expect("join").backlog else {
            panic!("expected events")
        };
        assert_eq!(events.iter().map(seq_of).collect::<Vec<_>>(), (head.seq - 4..=head.seq).collect::<Vec<_>>());
        // From disk: older than the in-memory window.
        let from = StreamPosition { epoch: head.epoch.clone(), seq: 3 };
        let Backlog::Events(events) = log.join(&room(), Some(&from)).expect("join").backlog else {
            panic!("expected events")
        };
        assert_eq!(events.iter().map(seq_of).collect::<Vec<_>>(), (4..=head.seq).collect::<Vec<_>>());
        // Up to date.
        assert!(matches!(log.join(&room(), Some(&head)).expect("join").backlog, Backlog::UpToDate));
    }

    #[test]
    fn an_unknown_epoch_or_a_future_seq_gets_a_reset_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = log(dir.path(), 64);
        let head = log.append(&room(), note(1)).expect("append");
        for bad in [
            StreamPosition { epoch: "other".into(), seq: 1 },
            StreamPosition { epoch: head.epoch.clone(), seq: 99 },
        ] {
            assert!(matches!(log.join(&room(), Some(&bad)).expect("join").backlog, Backlog::Snapshot { reset: true, .. }));
        }
    }

    #[test]
    fn a_client_that_does_not_read_is_cut_off_and_the_room_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = log(dir.path(), 4);
        let slow = log.join(&room(), None).expect("slow");
        let mut fast = log.join(&room(), None).expect("fast");
        for i in 1..=10 {
            log.append(&room(), note(i)).expect("append never blocks");
            assert_eq!(seq_of(&fast.queue.try_recv().expect("fast keeps up")), i);
        }
        assert!(slow.membership.was_too_slow());
        assert!(!fast.membership.was_too_slow());
        // The slow client keeps what was queued before the cut, then sees its queue closed.
        let mut slow_queue = slow.queue;
        let mut delivered = Vec::new();
        while let Ok(frame) = slow_queue.try_recv() {
            delivered.push(seq_of(&frame));
        }
        assert_eq!(delivered, vec![1, 2, 3, 4]);
        assert!(matches!(slow_queue.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)));
    }

    #[test]
    fn a_restart_keeps_the_epoch_the_head_and_the_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (head, state) = {
            let log = log(dir.path(), 64);
            for i in 1..=(SNAPSHOT_EVERY + 7) {
                log.append(&room(), note(i)).expect("append");
            }
            log.status(&room()).expect("status")
        };
        let log = log(dir.path(), 64);
        let (head_again, state_again) = log.status(&room()).expect("status");
        assert_eq!(head_again, head);
        assert_eq!(state_again, state);
        assert_eq!(log.append(&room(), note(0)).expect("append").seq, head.seq + 1);
    }

    #[test]
    fn dropping_a_membership_unsubscribes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = log(dir.path(), 4);
        let joined = log.join(&room(), None).expect("join");
        drop(joined);
        // With nobody subscribed, a tiny queue can never be "too slow".
        for i in 1..=20 {
            log.append(&room(), note(i)).expect("append");
        }
        let stream = log.stream(&room()).expect("stream");
        assert!(lock(&stream).subscribers.is_empty());
    }
}
