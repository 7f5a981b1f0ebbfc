//! What the room page knows about its room, folded from the server's messages, and the toasts
//! those messages raise.
//!
//! `RoomModel` is plain data with a pure `apply`, so it is tested natively; `RoomStore` wraps it
//! in a signal for the components and owns the outgoing queue (messages made while offline are
//! kept and sent after the next `welcome`). It is not the connection loop (`connection`) nor
//! the viewer's scene (`viewer`).

use crate::protocol::{
    ClientMessage, Member, PhotoState, PhotoSummary, RoomEvent, RoomSnapshot, ServerMessage, SettingValue,
    StreamPosition, SystemStatus,
};
use leptos::prelude::*;
use std::collections::{BTreeMap, VecDeque};

/// Where a photo is in its processing, from the latest `progress` message.
#[derive(Clone, Debug, PartialEq)]
pub struct PhotoProgress {
    pub stage: String,
    pub fraction: f32,
    pub eta_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToastKind {
    Success,
    Error,
    Warning,
    Info,
}

/// What a toast's button does.
#[derive(Clone, Debug, PartialEq)]
pub enum ToastAction {
    RetryPhoto(String),
    /// Show the model (the viewer fits it).
    View,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Toast {
    pub id: u64,
    pub kind: ToastKind,
    pub text: String,
    pub action: Option<(String, ToastAction)>,
    /// The photo it is about: it goes when the photo's state moves on, so a toast never
    /// contradicts the card (a "could not be placed" after the photo joined, a Retry that can
    /// only fail).
    pub photo: Option<String>,
    /// How many photos a grouped "joined the model" toast stands for.
    pub joined: u32,
}

/// A conflict on a shared setting waiting for its author's decision.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingConflict {
    pub yours: SettingValue,
    pub theirs: SettingValue,
    pub theirs_by: Option<String>,
    pub revision: u64,
}

/// The room as this page knows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoomModel {
    pub room: RoomSnapshot,
    pub position: Option<StreamPosition>,
    pub members: Vec<Member>,
    /// Members in the room; more than `members` in a big room.
    pub members_total: u32,
    pub progress: BTreeMap<String, PhotoProgress>,
    pub system: Option<SystemStatus>,
    pub conflicts: Vec<PendingConflict>,
    pub toasts: Vec<Toast>,
    next_toast: u64,
    /// The photo whose points arrived last, for the viewer's highlight.
    pub latest_photo: Option<String>,
    /// This connection's key for naming us on HTTP uploads (from `welcome`).
    pub upload_key: Option<String>,
    /// The room's display name (from `welcome`).
    pub room_name: Option<String>,
    /// Our uploader id (from `welcome`): photos with it are ours to cancel or remove.
    pub uploader: Option<String>,
    /// We entered with the owner token.
    pub owner: bool,
}

/// Toasts shown at once; older ones make room.
pub const MAX_TOASTS: usize = 5;

impl RoomModel {
    pub fn toast(&mut self, kind: ToastKind, text: impl Into<String>, action: Option<(String, ToastAction)>) {
        self.push_toast(Toast { id: 0, kind, text: text.into(), action, photo: None, joined: 0 });
    }

    fn push_toast(&mut self, toast: Toast) {
        self.next_toast += 1;
        self.toasts.push(Toast { id: self.next_toast, ..toast });
        if self.toasts.len() > MAX_TOASTS {
            let excess = self.toasts.len() - MAX_TOASTS;
            self.toasts.drain(..excess);
        }
    }

    pub fn dismiss(&mut self, id: u64) {
        self.toasts.retain(|t| t.id != id);
    }

    fn photo_toast(&mut self, photo: &str, kind: ToastKind, text: String, action: Option<(String, ToastAction)>) {
        self.push_toast(Toast { id: 0, kind, text, action, photo: Some(photo.to_owned()), joined: 0 });
    }

    /// One toast for a run of photos joining: the newest "joined" toast absorbs the next one.
    fn joined_toast(&mut self, photo: &str) {
        let name = self.photo_name(photo);
        let before = match self.toasts.last() {
            Some(last) if last.joined > 0 => self.toasts.pop().map_or(0, |t| t.joined),
            _ => 0,
        };
        let text = if before == 0 { format!("{name} joined the model") } else { format!("{} photos joined the model, the last {name}", before + 1) };
        self.push_toast(Toast {
            id: 0,
            kind: ToastKind::Success,
            text,
            action: Some(("View".into(), ToastAction::View)),
            photo: None,
            joined: before + 1,
        });
    }

    /// Whether this page may cancel or remove the photo: it uploaded it, or owns the room. The
    /// server checks the same; this only spares people buttons that would be refused.
    pub fn may_take_away(&self, photo: &PhotoSummary) -> bool {
        self.owner || (self.uploader.is_some() && photo.uploader == self.uploader)
    }

    /// The model has not started: no photo has a pose yet, so a pending photo is simply
    /// waiting for a partner, which is normal and not a failure.
    pub fn waiting_for_start(&self) -> bool {
        self.room.cameras.is_empty()
    }

    fn photo_name(&self, id: &str) -> String {
        self.room.photo(id).map(|p| p.name.clone()).unwrap_or_else(|| id.chars().take(8).collect())
    }

    /// Folds one server message in. Returns `false` when the stream has a gap (an event that is
    /// not the next one): the connection must resume to fill it.
    pub fn apply(&mut self, message: ServerMessage) -> bool {
        match message {
            ServerMessage::Snapshot { position, room, reset } => {
                self.room = room;
                self.position = Some(position);
                self.progress.retain(|id, _| self.room.photo(id).is_some_and(|p| p.status.awaits_processing()));
                if reset {
                    self.toast(ToastKind::Info, "The room was reloaded from the server.", None);
                }
            }
            ServerMessage::Event { epoch, seq, event } => {
                match &self.position {
                    Some(p) if p.epoch == epoch && p.seq + 1 == seq => {}
                    Some(p) if p.epoch == epoch && seq <= p.seq => return true, // already have it
                    _ => return false,
                }
                self.position = Some(StreamPosition { epoch, seq });
                self.room.apply(seq, &event);
                self.after_event(&event);
            }
            ServerMessage::Progress { photo, stage, fraction, eta_ms } => {
                self.progress.insert(photo, PhotoProgress { stage, fraction, eta_ms });
            }
            ServerMessage::Presence { members, total } => {
                self.members = members;
                self.members_total = total;
            }
            ServerMessage::PresenceDiff { joined, left, changed, total } => {
                self.members_total = total;
                self.members.retain(|m| !left.contains(&m.user));
                for member in joined.into_iter().chain(changed) {
                    match self.members.iter_mut().find(|m| m.user == member.user) {
                        Some(slot) => *slot = member,
                        None => self.members.push(member),
                    }
                }
            }
            ServerMessage::SystemStatus { status } => self.system = Some(status),
            ServerMessage::SettingConflict { yours, theirs, theirs_by, revision } => {
                self.conflicts.retain(|c| c.yours.field() != yours.field());
                self.conflicts.push(PendingConflict { yours, theirs, theirs_by, revision });
            }
            ServerMessage::Error { message, .. } => self.toast(ToastKind::Error, message, None),
            ServerMessage::Welcome { upload_key, room_name, uploader, owner, .. } => {
                self.upload_key = upload_key;
                self.room_name = room_name;
                self.uploader = uploader;
                self.owner = owner;
            }
            ServerMessage::Pong { .. } | ServerMessage::Uploaded { .. } => {}
        }
        true
    }

    fn after_event(&mut self, event: &RoomEvent) {
        if let Some(photo) = event_photo(event) {
            // Whatever was said about this photo is superseded by what just happened to it.
            self.toasts.retain(|t| t.photo.as_deref() != Some(photo));
        }
        match event {
            RoomEvent::PhotoRegistered { photo, shard, .. } => {
                self.progress.remove(photo);
                if shard.is_some() {
                    self.latest_photo = Some(photo.clone());
                }
                self.joined_toast(photo);
            }
            RoomEvent::PhotoPending { photo, reason } => {
                self.progress.remove(photo);
                let name = self.photo_name(photo);
                if self.waiting_for_start() {
                    let text = format!("{name} is waiting for a second photo of the same place to start the model");
                    self.photo_toast(photo, ToastKind::Info, text, None);
                } else {
                    self.photo_toast(
                        photo,
                        ToastKind::Warning,
                        format!("{name} could not be placed yet: {reason}"),
                        Some(("Retry".into(), ToastAction::RetryPhoto(photo.clone()))),
                    );
                }
            }
            RoomEvent::PhotoFailed { photo, reason, retryable } => {
                self.progress.remove(photo);
                let name = self.photo_name(photo);
                let action = retryable.then(|| ("Retry".into(), ToastAction::RetryPhoto(photo.clone())));
                self.photo_toast(photo, ToastKind::Error, format!("{name} failed: {reason}"), action);
            }
            RoomEvent::PhotoCancelled { photo, .. } | RoomEvent::PhotoRemoved { photo, .. } => {
                self.progress.remove(photo);
            }
            RoomEvent::RefinementInterrupted { .. } => {
                self.toast(ToastKind::Info, "A server restart interrupted the refinement; it runs again with its photo.", None);
            }
            RoomEvent::RefinementDone { manifest, .. } => {
                self.toast(ToastKind::Info, format!("Model refined: {} points", manifest.points()), None);
            }
            RoomEvent::SettingChanged { setting, by, .. } => {
                self.conflicts.retain(|c| c.yours.field() != setting.field());
                self.toast(ToastKind::Info, format!("{by} changed {}", setting.field().replace('_', " ")), None);
            }
            _ => {}
        }
    }

    /// Photos in upload order with their state, for the cards.
    pub fn photo_state(&self, id: &str) -> Option<PhotoState> {
        self.room.photo(id).map(|p| p.status)
    }
}

/// The photo an event is about, if any.
fn event_photo(event: &RoomEvent) -> Option<&str> {
    match event {
        RoomEvent::PhotoQueued { photo, .. }
        | RoomEvent::PhotoStarted { photo }
        | RoomEvent::PhotoRegistered { photo, .. }
        | RoomEvent::PhotoPending { photo, .. }
        | RoomEvent::PhotoFailed { photo, .. }
        | RoomEvent::PhotoCancelled { photo, .. }
        | RoomEvent::PhotoRetried { photo, .. }
        | RoomEvent::PhotoRemoved { photo, .. } => Some(photo),
        RoomEvent::Note { .. }
        | RoomEvent::RefinementStarted { .. }
        | RoomEvent::RefinementInterrupted { .. }
        | RoomEvent::RefinementDone { .. }
        | RoomEvent::SettingChanged { .. } => None,
    }
}

/// The page's handle on the room: the model in a signal and the outgoing queue.
#[derive(Clone, Copy)]
pub struct RoomStore {
    pub model: RwSignal<RoomModel>,
    /// Messages waiting for a connection, oldest first.
    pub outbox: RwSignal<VecDeque<ClientMessage>>,
    /// Bumped when something is put in the outbox, so the connection loop wakes.
    pub outbox_changed: RwSignal<u64>,
}

impl Default for RoomStore {
    fn default() -> Self {
        Self::new()
    }
}

impl RoomStore {
    pub fn new() -> Self {
        Self { model: RwSignal::new(RoomModel::default()), outbox: RwSignal::new(VecDeque::new()), outbox_changed: RwSignal::new(0) }
    }

    /// Queues a message; it goes out now if connected, or after the next `welcome`.
    pub fn send(&self, message: ClientMessage) {
        self.outbox.update(|q| q.push_back(message));
        self.outbox_changed.update(|n| *n += 1);
    }

    pub fn toast(&self, kind: ToastKind, text: impl Into<String>, action: Option<(String, ToastAction)>) {
        let text = text.into();
        self.model.update(|m| m.toast(kind, text, action));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{CameraView, ShardRef};

    fn at(seq: u64) -> StreamPosition {
        StreamPosition { epoch: "e".into(), seq }
    }

    fn event(seq: u64, event: RoomEvent) -> ServerMessage {
        ServerMessage::Event { epoch: "e".into(), seq, event }
    }

    fn camera(photo: &str) -> CameraView {
        CameraView::example(photo, crate::protocol::IDENTITY, [0.0; 3])
    }

    #[test]
    fn events_fold_in_order_and_a_gap_is_reported() {
        let mut model = RoomModel::default();
        assert!(model.apply(ServerMessage::Snapshot { position: at(0), reset: false, room: RoomSnapshot::default() }));
        let queued = RoomEvent::PhotoQueued { photo: "p".into(), name: "a.jpg".into(), by: "Ana".into(), uploader: None, bytes: 1, position: 1 };
        assert!(model.apply(event(1, queued.clone())));
        assert!(model.apply(event(1, queued)), "a repeat is ignored");
        assert_eq!(model.room.photos.len(), 1);
        model.apply(ServerMessage::Progress { photo: "p".into(), stage: "features".into(), fraction: 0.5, eta_ms: Some(900) });
        assert_eq!(model.progress["p"].eta_ms, Some(900));
        let registered = RoomEvent::PhotoRegistered { photo: "p".into(), camera: camera("p"), shard: Some(ShardRef { hash: "h".into(), points: 7 }), model_points: None };
        assert!(!model.apply(event(3, registered.clone())), "seq 2 is missing");
        assert!(model.apply(event(2, registered)));
        assert!(model.progress.is_empty());
        assert_eq!(model.latest_photo.as_deref(), Some("p"));
        assert_eq!(model.toasts.last().map(|t| (t.kind, t.text.as_str())), Some((ToastKind::Success, "a.jpg joined the model")));
    }

    #[test]
    fn at_most_five_toasts_and_presence_diffs_apply() {
        let mut model = RoomModel::default();
        for i in 0..8 {
            model.toast(ToastKind::Info, format!("t{i}"), None);
        }
        assert_eq!(model.toasts.iter().map(|t| t.text.as_str()).collect::<Vec<_>>(), vec!["t3", "t4", "t5", "t6", "t7"]);
        let ana = Member { user: "a".into(), name: "Ana".into(), colour: "#000000".into(), uploading: 0, tabs: 1 };
        model.apply(ServerMessage::Presence { members: vec![ana.clone()], total: 1 });
        let ben = Member { user: "b".into(), name: "Ben".into(), ..ana.clone() };
        model.apply(ServerMessage::PresenceDiff { joined: vec![ben], left: vec![], changed: vec![Member { uploading: 2, ..ana }], total: 2 });
        assert_eq!(model.members.iter().map(|m| (m.name.as_str(), m.uploading)).collect::<Vec<_>>(), vec![("Ana", 2), ("Ben", 0)]);
        model.apply(ServerMessage::PresenceDiff { joined: vec![], left: vec!["a".into()], changed: vec![], total: 1 });
        assert_eq!(model.members.len(), 1);
    }

    fn queued(photo: &str, seq: u64) -> ServerMessage {
        let name = format!("{photo}.jpg");
        event(seq, RoomEvent::PhotoQueued { photo: photo.into(), name, by: "Ana".into(), uploader: None, bytes: 1, position: seq as u32 })
    }

    #[test]
    fn toasts_follow_the_photo_and_the_first_wait_is_not_a_failure() {
        let mut model = RoomModel::default();
        model.apply(ServerMessage::Snapshot { position: at(0), reset: false, room: RoomSnapshot::default() });
        model.apply(queued("a", 1));
        model.apply(event(2, RoomEvent::PhotoPending { photo: "a".into(), reason: "waiting".into() }));
        let first = model.toasts.last().expect("a toast");
        assert_eq!(first.kind, ToastKind::Info, "the first photo waiting for a partner is normal");
        assert!(first.action.is_none(), "nothing to retry");
        assert!(first.text.contains("waiting for a second photo"));
        model.apply(queued("b", 3));
        model.apply(event(4, RoomEvent::PhotoRegistered { photo: "a".into(), camera: camera("a"), shard: None, model_points: None }));
        assert!(model.toasts.iter().all(|t| t.photo.as_deref() != Some("a")), "the wait toast went with the wait");
        model.apply(event(5, RoomEvent::PhotoRegistered { photo: "b".into(), camera: camera("b"), shard: None, model_points: None }));
        let joined: Vec<_> = model.toasts.iter().filter(|t| t.joined > 0).collect();
        assert_eq!(joined.len(), 1, "one grouped toast: {:?}", model.toasts);
        assert_eq!(joined[0].joined, 2);
        assert_eq!(joined[0].text, "2 photos joined the model, the last b.jpg");
        // Once the model exists, a photo that cannot be placed is worth a warning with Retry.
        model.apply(queued("c", 6));
        model.apply(event(7, RoomEvent::PhotoPending { photo: "c".into(), reason: "no overlap".into() }));
        assert_eq!(model.toasts.last().map(|t| t.kind), Some(ToastKind::Warning));
        model.apply(event(8, RoomEvent::PhotoRetried { photo: "c".into(), by: "Ana".into() }));
        assert!(model.toasts.iter().all(|t| t.photo.as_deref() != Some("c")), "retrying retires the warning");
    }

    #[test]
    fn only_the_uploader_or_the_owner_may_take_a_photo_away() {
        let mut model = RoomModel::default();
        let photo = |uploader: Option<&str>| PhotoSummary {
            id: "p".into(),
            name: "p.jpg".into(),
            by: "Ana".into(),
            uploader: uploader.map(str::to_owned),
            status: PhotoState::Queued,
            reason: None,
        };
        model.apply(ServerMessage::Welcome {
            version: crate::protocol::PROTOCOL_VERSION,
            room: crate::protocol::RoomId::parse("r").expect("id"),
            connection_id: 1,
            server_version: "0".into(),
            head: at(0),
            upload_key: None,
            room_name: Some("Room".into()),
            uploader: Some("me".into()),
            owner: false,
        });
        assert!(model.may_take_away(&photo(Some("me"))));
        assert!(!model.may_take_away(&photo(Some("someone"))));
        assert!(!model.may_take_away(&photo(None)));
        model.owner = true;
        assert!(model.may_take_away(&photo(Some("someone"))) && model.may_take_away(&photo(None)));
    }
}
