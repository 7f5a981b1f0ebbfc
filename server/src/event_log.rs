//! Each room's ordered, durable event stream and its fan-out to connected clients.
//!
//! The model is Centrifugo's: a stream has an epoch and a strictly increasing `seq`; every event
//! is written to storage before anyone sees it (durability levels: [`crate::storage`]); a client that comes back with its last
//! (epoch, seq) gets exactly the events after it, or a snapshot marked `reset` when they are
//! gone. Each client has a bounded queue. A client whose queue is full is cut off (close code
//! 4008) and recovers by resuming: a slow reader never slows the room.
//!
//! Ordering rests on one rule: appending an event and registering a subscriber both happen under
//! the room stream's lock. A joining client therefore sees everything up to the head it was given
//! through its backlog, and everything after it through its queue, with no gap and no overlap.

use crate::presence::Presence;
use crate::storage::{Durability, NewPhoto, NewRoom, Storage, StorageError, new_epoch, now_unix};
use app::protocol::{RoomEvent, RoomId, RoomSnapshot, ServerMessage, StreamPosition};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;

/// Events kept in memory per room for fast replay; older ones are read back from storage.
const RECENT_EVENTS: usize = 1024;
/// A snapshot of the room state is saved every this many events, so a restart folds at most
/// this many events instead of the whole history.
const SNAPSHOT_EVERY: u64 = 256;
/// Default bound on a client's queue of undelivered messages.
pub const DEFAULT_CLIENT_QUEUE: usize = 512;
/// How long someone whose last tab closed still shows as present.
pub const DEFAULT_PRESENCE_GRACE: Duration = Duration::from_secs(5);

/// A serialised server message, shared by every recipient: an event is encoded once, not once
/// per client.
pub type Frame = Arc<str>;

#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("stored event {seq} of room {room} is unreadable: {source}")]
    Corrupt { room: String, seq: u64, source: serde_json::Error },
    #[error("room {0} does not exist")]
    NoSuchRoom(RoomId),
}

pub struct EventLog {
    storage: Arc<Storage>,
    streams: Mutex<HashMap<RoomId, Arc<Mutex<Stream>>>>,
    client_queue: usize,
    presence_grace: Duration,
    next_subscriber: AtomicU64,
    events_appended: AtomicU64,
    clients_cut_off: Arc<AtomicU64>,
}

struct Stream {
    room: RoomId,
    epoch: String,
    head: u64,
    state: RoomSnapshot,
    /// (seq, frame) of the newest events, oldest first.
    recent: VecDeque<(u64, Frame)>,
    subscribers: Vec<Subscriber>,
    presence: Presence,
    clients_cut_off: Arc<AtomicU64>,
}

struct Subscriber {
    id: u64,
    queue: mpsc::Sender<Frame>,
    ended: Arc<AtomicU8>,
}

/// Why the server stopped feeding a subscriber; the session turns it into a close code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// Still fed (or the client went away by itself).
    Open = 0,
    /// Its queue was full: it fell behind.
    TooSlow = 1,
    /// The room was deleted or archived.
    RoomClosed = 2,
}

impl Stream {
    /// Hands a frame to every subscriber without waiting; a full queue cuts that client off.
    fn deliver(&mut self, frame: &Frame) {
        let cut_off = &self.clients_cut_off;
        self.subscribers.retain(|subscriber| match subscriber.queue.try_send(frame.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                subscriber.ended.store(EndReason::TooSlow as u8, Ordering::Release);
                cut_off.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    fn position(&self) -> StreamPosition {
        StreamPosition { epoch: self.epoch.clone(), seq: self.head }
    }
}

/// Who is joining, for presence.
pub struct JoinRequest<'a> {
    pub resume: Option<&'a StreamPosition>,
    pub connection: u64,
    pub user: &'a str,
    pub name: &'a str,
    pub colour: &'a str,
}

/// What a client needs to start following a room.
pub struct Joined {
    pub head: StreamPosition,
    /// Sent before anything from `queue`.
    pub backlog: Backlog,
    /// Everyone present, the joiner included; sent after the backlog.
    pub presence: Frame,
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

/// What a [`EventLog::transact`] decision appends, and what it answers.
pub struct Decision<T> {
    pub events: Vec<RoomEvent>,
    /// A photo whose record goes in the same transaction (a removal).
    pub forget_photo: Option<String>,
    /// `Written` unless the caller drops something once these events are stored (see
    /// [`crate::storage`]).
    pub durability: Durability,
    pub reply: T,
}

impl<T> Decision<T> {
    pub fn nothing(reply: T) -> Self {
        Self::append(Vec::new(), reply)
    }

    pub fn append(events: Vec<RoomEvent>, reply: T) -> Self {
        Self { events, forget_photo: None, durability: Durability::Written, reply }
    }

    /// On the disk before anyone sees them, not only in the operating system's hands.
    pub fn synced(self) -> Self {
        Self { durability: Durability::Synced, ..self }
    }
}

/// Removes the subscriber (and its presence) when dropped, and tells why the server stopped
/// feeding it.
pub struct Membership {
    stream: Arc<Mutex<Stream>>,
    id: u64,
    connection: u64,
    ended: Arc<AtomicU8>,
    grace: Duration,
}

impl Membership {
    pub fn end_reason(&self) -> EndReason {
        match self.ended.load(Ordering::Acquire) {
            1 => EndReason::TooSlow,
            2 => EndReason::RoomClosed,
            _ => EndReason::Open,
        }
    }

    pub fn was_too_slow(&self) -> bool {
        self.end_reason() == EndReason::TooSlow
    }

    /// This connection is uploading `files` files (0 when done).
    pub fn set_uploading(&self, files: u32) {
        lock(&self.stream).presence.set_uploading(self.connection, files);
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut stream = lock(&self.stream);
        stream.subscribers.retain(|s| s.id != self.id);
        let Some((user, ticket)) = stream.presence.disconnect(self.connection) else { return };
        drop(stream);
        let expire = {
            let stream = self.stream.clone();
            move || lock(&stream).presence.expire(&user, ticket)
        };
        // Outside a runtime (unit tests, shutdown) there is nobody to wait for: leave now.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if !self.grace.is_zero() => {
                let grace = self.grace;
                runtime.spawn(async move {
                    tokio::time::sleep(grace).await;
                    expire();
                });
            }
            _ => expire(),
        }
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

/// A stored event, parsed.
fn parse_stored(room: &RoomId, seq: u64, body: &str) -> Result<ServerMessage, EventLogError> {
    serde_json::from_str(body).map_err(|source| EventLogError::Corrupt { room: room.to_string(), seq, source })
}

/// A stored event (`message` parsed from `body`) as sent now: as stored, unless a reboot has
/// since given the room a new epoch.
fn current_frame(epoch: &str, seq: u64, message: &ServerMessage, body: String) -> Frame {
    match message {
        ServerMessage::Event { epoch: stored, event, .. } if stored != epoch => event_frame(epoch, seq, event),
        _ => Frame::from(body),
    }
}

impl EventLog {
    pub fn new(storage: Arc<Storage>) -> Self {
        Self::with_options(storage, DEFAULT_CLIENT_QUEUE, DEFAULT_PRESENCE_GRACE)
    }

    pub fn with_options(storage: Arc<Storage>, client_queue: usize, presence_grace: Duration) -> Self {
        Self {
            storage,
            streams: Mutex::new(HashMap::new()),
            client_queue: client_queue.max(1),
            presence_grace,
            next_subscriber: AtomicU64::new(1),
            events_appended: AtomicU64::new(0),
            clients_cut_off: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
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

    /// Creates a room with a fresh epoch; `false` when the id is taken.
    pub fn create_room(&self, room: &NewRoom<'_>) -> Result<bool, EventLogError> {
        self.create_room_within(room, u64::MAX)
    }

    /// Creates a room unless `max_live` rooms that are not archived exist already.
    pub fn create_room_within(&self, room: &NewRoom<'_>, max_live: u64) -> Result<bool, EventLogError> {
        Ok(self.storage.create_room(room, &new_epoch(), now_unix(), max_live)?)
    }

    /// The room's stream, loaded from storage on first use.
    fn stream(&self, room: &RoomId) -> Result<Arc<Mutex<Stream>>, EventLogError> {
        let mut streams = lock(&self.streams);
        if let Some(stream) = streams.get(room) {
            return Ok(stream.clone());
        }
        let stored = match self.storage.open_stream(room.as_str()) {
            Ok(stored) => stored,
            Err(StorageError::NoSuchRoom(_)) => return Err(EventLogError::NoSuchRoom(room.clone())),
            Err(err) => return Err(err.into()),
        };
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
            let message = parse_stored(room, seq, &body)?;
            if let ServerMessage::Event { event, .. } = &message {
                state.apply(seq, event);
            }
            recent.push_back((seq, current_frame(&stored.epoch, seq, &message, body)));
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
            presence: Presence::default(),
            clients_cut_off: self.clients_cut_off.clone(),
        }));
        streams.insert(room.clone(), stream.clone());
        Ok(stream)
    }

    /// Durably appends `event` and delivers it to every subscriber. Returns its position.
    pub fn append(&self, room: &RoomId, event: RoomEvent) -> Result<StreamPosition, EventLogError> {
        self.transact(room, |_| Decision::append(vec![event], ())).map(|(at, ())| at)
    }

    /// Looks at the room state and appends what `decide` returns, all under the stream's lock:
    /// nothing can change the state between the check and the append (a cancel cannot race a
    /// retry, a setting update cannot race another). The events go in one transaction.
    pub fn transact<T>(
        &self,
        room: &RoomId,
        decide: impl FnOnce(&RoomSnapshot) -> Decision<T>,
    ) -> Result<(StreamPosition, T), EventLogError> {
        let stream = self.stream(room)?;
        let mut stream = lock(&stream);
        let Decision { events, forget_photo, durability, reply } = decide(&stream.state);
        if events.is_empty() {
            return Ok((stream.position(), reply));
        }
        let framed: Vec<(u64, Frame)> = events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                let seq = stream.head + 1 + i as u64;
                (seq, event_frame(&stream.epoch, seq, event))
            })
            .collect();
        let rows: Vec<(u64, String)> = framed.iter().map(|(seq, frame)| (*seq, frame.to_string())).collect();
        // Written before it is applied or sent: nobody sees an event that a killed process could
        // lose (and after a power cut, the new epoch tells clients; see `crate::storage`).
        self.storage.append_events(room.as_str(), &rows, forget_photo.as_deref(), durability)?;
        for ((seq, frame), event) in framed.into_iter().zip(&events) {
            self.publish(&mut stream, seq, frame, event);
        }
        Ok((stream.position(), reply))
    }

    /// Records a newly uploaded photo and announces it, atomically; `None` if the room already
    /// had it (an upload retried by the client), in which case nothing is written or sent.
    pub fn append_photo(
        &self,
        room: &RoomId,
        photo: &NewPhoto<'_>,
        max_photos: u64,
    ) -> Result<Option<(u32, StreamPosition)>, EventLogError> {
        let stream = self.stream(room)?;
        let mut stream = lock(&stream);
        let seq = stream.head + 1;
        let epoch = stream.epoch.clone();
        let event_for = |position| RoomEvent::PhotoQueued {
            photo: photo.id.to_owned(),
            name: photo.name.to_owned(),
            by: photo.by.to_owned(),
            uploader: photo.uploader.map(str::to_owned),
            bytes: photo.bytes,
            position,
        };
        let stored = self.storage.insert_photo(
            room.as_str(),
            photo,
            max_photos,
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
        self.events_appended.fetch_add(1, Ordering::Relaxed);
        stream.head = seq;
        stream.state.apply(seq, event);
        stream.recent.push_back((seq, frame.clone()));
        if stream.recent.len() > RECENT_EVENTS {
            stream.recent.pop_front();
        }
        if seq.is_multiple_of(SNAPSHOT_EVERY)
            && let Ok(body) = serde_json::to_string(&stream.state)
        {
            // A failed snapshot only costs a longer fold at the next start.
            if let Err(err) = self.storage.save_snapshot(stream.room.as_str(), seq, &body) {
                tracing::warn!(room = %stream.room, %err, "could not save a snapshot");
            }
        }
        stream.deliver(&frame);
        stream.position()
    }

    /// Sends a transient message (progress, status) to the room's current members. Rooms not
    /// loaded have no members, so nothing is loaded for it.
    pub fn broadcast(&self, room: &RoomId, message: &ServerMessage) {
        let stream = lock(&self.streams).get(room).cloned();
        if let Some(stream) = stream {
            let mut stream = lock(&stream);
            if !stream.subscribers.is_empty() {
                stream.deliver(&Frame::from(message.to_json()));
            }
        }
    }

    /// Sends each room's accumulated presence changes as one diff (called a few times a second).
    pub fn flush_presence(&self) {
        let streams: Vec<_> = lock(&self.streams).values().cloned().collect();
        for stream in streams {
            let mut stream = lock(&stream);
            if let Some(diff) = stream.presence.take_diff() {
                stream.deliver(&Frame::from(diff.to_json()));
            }
        }
    }

    /// Sends a transient message to every member of every room.
    pub fn broadcast_all(&self, message: &ServerMessage) {
        let frame = Frame::from(message.to_json());
        let streams: Vec<_> = lock(&self.streams).values().cloned().collect();
        for stream in streams {
            let mut stream = lock(&stream);
            if !stream.subscribers.is_empty() {
                stream.deliver(&frame);
            }
        }
    }

    /// Subscribes a client, resuming from `request.resume` when possible, and enters it into
    /// the room's presence.
    pub fn join(&self, room: &RoomId, request: JoinRequest<'_>) -> Result<Joined, EventLogError> {
        let stream_arc = self.stream(room)?;
        let mut stream = lock(&stream_arc);
        let head = stream.position();
        let backlog = match request.resume {
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
        stream.presence.connect(request.connection, request.user, request.name, request.colour);
        let presence = Frame::from(stream.presence.listing().to_json());
        let (tx, rx) = mpsc::channel(self.client_queue);
        let id = self.next_subscriber.fetch_add(1, Ordering::Relaxed);
        let ended = Arc::new(AtomicU8::new(EndReason::Open as u8));
        stream.subscribers.push(Subscriber { id, queue: tx, ended: ended.clone() });
        drop(stream);
        Ok(Joined {
            head,
            backlog,
            presence,
            queue: rx,
            membership: Membership {
                stream: stream_arc,
                id,
                connection: request.connection,
                ended,
                grace: self.presence_grace,
            },
        })
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
        let mut frames = Vec::with_capacity(stored.len());
        for (seq, body) in stored {
            let message = parse_stored(&stream.room, seq, &body)?;
            frames.push(current_frame(&stream.epoch, seq, &message, body));
        }
        Ok(Some(frames))
    }

    /// The head and state of a room, for status pages.
    pub fn status(&self, room: &RoomId) -> Result<(StreamPosition, RoomSnapshot), EventLogError> {
        let stream = self.stream(room)?;
        let stream = lock(&stream);
        Ok((stream.position(), stream.state.clone()))
    }

    /// Open connections to a room (0 when it is not loaded).
    pub fn connections(&self, room: &RoomId) -> usize {
        let stream = lock(&self.streams).get(room).cloned();
        stream.map(|s| lock(&s).subscribers.len()).unwrap_or(0)
    }

    /// Rooms loaded in memory with nobody connected.
    pub fn unwatched_rooms(&self) -> Vec<RoomId> {
        let streams: Vec<_> = lock(&self.streams).iter().map(|(id, s)| (id.clone(), s.clone())).collect();
        streams.into_iter().filter(|(_, s)| lock(s).subscribers.is_empty()).map(|(id, _)| id).collect()
    }

    /// Drops the room from memory and disconnects its members (after a deletion or archiving).
    pub fn unload(&self, room: &RoomId) {
        let stream = lock(&self.streams).remove(room);
        if let Some(stream) = stream {
            let mut stream = lock(&stream);
            for subscriber in stream.subscribers.drain(..) {
                subscriber.ended.store(EndReason::RoomClosed as u8, Ordering::Release);
            }
        }
    }
}

fn snapshot(stream: &Stream, reset: bool) -> Backlog {
    let message = ServerMessage::Snapshot { position: stream.position(), reset, room: stream.state.clone() };
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
        let log = EventLog::with_options(Arc::new(Storage::open(dir).expect("storage")), queue, Duration::ZERO);
        let new = NewRoom { id: "auditorio", name: "Auditorio", public: true, owner_hash: "o", join_hash: "j" };
        log.create_room(&new).expect("create");
        log
    }

    fn request(resume: Option<&StreamPosition>) -> JoinRequest<'_> {
        JoinRequest { resume, connection: 1, user: "u", name: "Ana", colour: "#123456" }
    }

    #[test]
    fn live_events_arrive_in_order_with_consecutive_seqs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = log(dir.path(), 64);
        let mut joined = log.join(&room(), request(None)).expect("join");
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
        let Backlog::Events(events) = log.join(&room(), request(Some(&from))).expect("join").backlog else {
            panic!("expected events")
        };
        assert_eq!(events.iter().map(seq_of).collect::<Vec<_>>(), (head.seq - 4..=head.seq).collect::<Vec<_>>());
        // From disk: older than the in-memory window.
        let from = StreamPosition { epoch: head.epoch.clone(), seq: 3 };
        let Backlog::Events(events) = log.join(&room(), request(Some(&from))).expect("join").backlog else {
            panic!("expected events")
        };
        assert_eq!(events.iter().map(seq_of).collect::<Vec<_>>(), (4..=head.seq).collect::<Vec<_>>());
        // Up to date.
        assert!(matches!(log.join(&room(), request(Some(&head))).expect("join").backlog, Backlog::UpToDate));
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
            assert!(matches!(log.join(&room(), request(Some(&bad))).expect("join").backlog, Backlog::Snapshot { reset: true, .. }));
        }
    }

    #[test]
    fn a_client_that_does_not_read_is_cut_off_and_the_room_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = log(dir.path(), 4);
        let slow = log.join(&room(), request(None)).expect("slow");
        let mut fast = log.join(&room(), request(None)).expect("fast");
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
    fn after_a_reboot_resumers_get_a_reset_and_replays_carry_the_new_epoch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = |boot: &str, epoch: &str| {
            let storage = Storage::open_at_boot(dir.path(), boot, epoch).expect("storage");
            EventLog::with_options(Arc::new(storage), 64, Duration::ZERO)
        };
        let before = {
            let log = open("boot-1", "unused");
            let new = NewRoom { id: "auditorio", name: "Auditorio", public: true, owner_hash: "o", join_hash: "j" };
            log.create_room(&new).expect("create");
            for i in 1..=(RECENT_EVENTS as u64 + 5) {
                log.append(&room(), note(i)).expect("append");
            }
            log.status(&room()).expect("status").0
        };
        // Same boot (a killed process): the history goes on under the same epoch.
        let same = open("boot-1", "unused").status(&room()).expect("status").0;
        assert_eq!(same, before);
        let log = open("boot-2", "rebooted");
        let (after, _) = log.status(&room()).expect("status");
        assert_eq!(after, StreamPosition { epoch: "rebooted".into(), seq: before.seq });
        // A client from before the reboot may have seen events that were lost: it starts over.
        let joined = log.join(&room(), request(Some(&before))).expect("join");
        assert!(matches!(joined.backlog, Backlog::Snapshot { reset: true, .. }));
        // One that resumed under the new epoch gets old events re-stamped with it, from memory
        // and from disk alike.
        for from in [after.seq - 3, 2] {
            let resume = StreamPosition { epoch: "rebooted".into(), seq: from };
            let Backlog::Events(frames) = log.join(&room(), request(Some(&resume))).expect("join").backlog else {
                panic!("expected a replay from {from}")
            };
            assert_eq!(frames.len() as u64, after.seq - from);
            for frame in frames {
                let Ok(ServerMessage::Event { epoch, .. }) = serde_json::from_str::<ServerMessage>(&frame) else { panic!("not an event") };
                assert_eq!(epoch, "rebooted");
            }
        }
    }

    #[test]
    fn dropping_a_membership_unsubscribes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = log(dir.path(), 4);
        let joined = log.join(&room(), request(None)).expect("join");
        drop(joined);
        // With nobody subscribed, a tiny queue can never be "too slow".
        for i in 1..=20 {
            log.append(&room(), note(i)).expect("append");
        }
        let stream = log.stream(&room()).expect("stream");
        assert!(lock(&stream).subscribers.is_empty());
    }
}
