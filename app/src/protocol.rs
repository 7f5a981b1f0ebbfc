//! The typed messages that travel between the browser and the server.
//!
//! One definition serves both ends: the server serialises these with serde_json, the WASM client
//! deserialises the same types, so a field cannot drift between them. Control messages are JSON
//! text frames tagged by `type`; bulk data (photos, point shards) travels over HTTP, never here.
//! `docs/protocol.md` shows an example of every message.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Bumped whenever a message changes incompatibly. The client states it in `hello`; the server
/// refuses versions it does not speak, so an old tab gets a clear message instead of garbage.
pub const PROTOCOL_VERSION: u32 = 1;

/// Frames larger than this are refused by the server before parsing.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// WebSocket close codes Vestige uses besides the standard ones (RFC 6455 leaves 4000-4999 to
/// applications). Clients decide from the code whether reconnecting can help.
pub mod close_code {
    /// The server is shutting down or restarting; reconnect with backoff.
    pub const GOING_AWAY: u16 = 1001;
    /// The client did not say `hello` in time or spoke an unsupported version; do not retry
    /// without reloading.
    pub const PROTOCOL_MISMATCH: u16 = 4000;
    /// Missing or wrong room token; retrying will not help.
    pub const UNAUTHORIZED: u16 = 4001;
    /// The room does not exist (or was deleted).
    pub const ROOM_NOT_FOUND: u16 = 4004;
    /// The client fell too far behind; reconnect and resume from the last (epoch, seq).
    pub const TOO_SLOW: u16 = 4008;
    /// A frame over the size limit was refused from its header (RFC 6455's "message too big").
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The server could not serve the room right now (storage failure); retry with backoff.
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// A room's identifier as it appears in URLs and on disk.
///
/// Lowercase ASCII letters, digits and single inner hyphens, 1 to 64 characters: the same string
/// is a URL segment and a directory name, so anything that could mean a path (`..`, `/`, `\`,
/// NUL) or differ only by case is refused up front.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoomId(String);

/// Why a string is not a valid [`RoomId`]; the message tells the user what to type instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoomIdError {
    #[error("a room name cannot be empty")]
    Empty,
    #[error("a room name has at most {max} characters (got {got})", max = RoomId::MAX_LEN)]
    TooLong { got: usize },
    #[error(
        "a room name uses only lowercase letters, digits and hyphens (found {found:?} at position {at})"
    )]
    BadCharacter { found: char, at: usize },
    #[error("a room name cannot start or end with a hyphen, or contain two in a row")]
    BadHyphen,
}

impl RoomId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, RoomIdError> {
        if raw.is_empty() {
            return Err(RoomIdError::Empty);
        }
        let chars = raw.chars().count();
        if chars > Self::MAX_LEN {
            return Err(RoomIdError::TooLong { got: chars });
        }
        if let Some((at, found)) = raw
            .chars()
            .enumerate()
            .find(|(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(RoomIdError::BadCharacter { found, at });
        }
        if raw.starts_with('-') || raw.ends_with('-') || raw.contains("--") {
            return Err(RoomIdError::BadHyphen);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RoomId {
    type Error = RoomIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<RoomId> for String {
    fn from(value: RoomId) -> Self {
        value.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Messages a browser (or the CLI) sends to the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// First message on every connection.
    Hello {
        /// The client's [`PROTOCOL_VERSION`].
        version: u32,
        /// Display name chosen by the user; the server trims and bounds it.
        #[serde(default)]
        name: Option<String>,
        /// Where this client's copy of the room stream ends, when it had one. The server then
        /// sends exactly the events after it, or a fresh snapshot when it cannot.
        #[serde(default)]
        resume: Option<StreamPosition>,
        /// A stable id for the person (kept in the browser's local storage): several tabs of one
        /// user are one presence entry.
        #[serde(default)]
        user: Option<String>,
        /// The user's colour as `#rrggbb`.
        #[serde(default)]
        colour: Option<String>,
        /// A secret this browser keeps (8 to 64 letters, digits, `-` or `_`). Photos uploaded
        /// through this connection carry an id derived from it, and only a connection with the
        /// same secret, or the room's owner, may cancel or remove them. Without it the
        /// connection gets a fresh one: its photos are its own while it is open.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// Liveness probe; the server answers with the same nonce.
    Ping { nonce: u64 },
    /// A line of text for everyone in the room, appended to the room's stream.
    Note { text: String },
    /// Stop a queued or running photo. It stays in the room as cancelled and can be retried.
    CancelPhoto { photo: String },
    /// Put a failed, cancelled or unregistered photo back in the queue.
    RetryPhoto { photo: String },
    /// Take a photo that is not part of the model out of the room.
    RemovePhoto { photo: String },
    /// Change one shared setting. `base_revision` is the revision the author saw; if the field
    /// changed since, nothing is applied and the author gets a `setting_conflict`.
    UpdateSetting { setting: SettingValue, base_revision: u64 },
    /// How many files this user is uploading right now (0 when done), shown in presence.
    Uploading { files: u32 },
    /// A photo as base64, for clients that cannot make HTTP uploads. Takes the same path as
    /// `PUT /api/rooms/{id}/photos/{sha256}`; the answer is `uploaded` or `error`.
    UploadImage {
        name: String,
        /// Base64 (standard alphabet) of the file's bytes.
        data: String,
        /// SHA-256 of the bytes when the client computed it; checked when present.
        #[serde(default)]
        photo: Option<String>,
    },
}

/// Messages the server sends to a client.
///
/// Only `event` (and the `snapshot` it builds on) belongs to the durable, numbered room stream.
/// `progress`, `presence`, `presence_diff` and `system_status` are transient: they describe the
/// present, are never replayed, and the next one supersedes them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The answer to `hello`: the connection is established.
    Welcome {
        version: u32,
        room: RoomId,
        /// Unique for the server's lifetime; used in logs and presence.
        connection_id: u64,
        /// The server's crate version, shown in the page footer.
        server_version: String,
        /// The room stream's head when this connection joined it.
        head: StreamPosition,
        /// Proves that an HTTP photo upload comes from this member: sent back in the
        /// `x-vestige-session` header, it names the uploader with this connection's name. Valid
        /// while the connection is open.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        upload_key: Option<String>,
        /// The room's display name ("Auditorio de León" for `auditorio-de-le-n`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room_name: Option<String>,
        /// This connection's uploader id: photos whose `uploader` equals it are this member's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uploader: Option<String>,
        /// Whether this connection entered with the owner token: it may cancel and remove any
        /// photo.
        #[serde(default)]
        owner: bool,
    },
    /// The whole room state at `position`. `reset` is true when the client asked to resume but
    /// the events it missed are no longer available: it must replace, not merge, what it has.
    Snapshot { position: StreamPosition, reset: bool, room: RoomSnapshot },
    /// One event of the room stream. `seq` is exactly one more than the previous event's.
    Event { epoch: String, seq: u64, event: RoomEvent },
    Pong { nonce: u64 },
    /// Something the client sent was refused. The connection stays open unless a close frame
    /// follows, so one bad message never costs the user the session.
    Error { code: ErrorCode, message: String },
    /// Where a photo is in its processing (transient).
    Progress {
        photo: String,
        stage: String,
        /// Of the current stage, 0 to 1.
        fraction: f32,
        /// Estimated milliseconds until the photo is done, from measured stage times.
        eta_ms: Option<u64>,
    },
    /// Who is in the room (transient; sent after `welcome`): at most the first 24 members,
    /// and how many there are in all.
    Presence { members: Vec<Member>, total: u32 },
    /// Changes to presence since the last `presence` or `presence_diff` (transient).
    PresenceDiff {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        joined: Vec<Member>,
        /// User ids that left (after the grace period).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        left: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        changed: Vec<Member>,
        /// Members in the room after this change.
        total: u32,
    },
    /// The server's load, every few seconds while a room is open (transient).
    SystemStatus { status: SystemStatus },
    /// An `update_setting` lost a race: someone changed the field first. Nothing was applied.
    /// The author can resend `yours` (keep mine) or an average with `base_revision = revision`,
    /// or do nothing (use theirs).
    SettingConflict { yours: SettingValue, theirs: SettingValue, theirs_by: Option<String>, revision: u64 },
    /// The answer to `upload_image`.
    Uploaded { photo: String, duplicate: bool },
}

/// One person in a room, however many tabs they have open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub user: String,
    pub name: String,
    /// `#rrggbb`.
    pub colour: String,
    /// Files this user is uploading right now.
    pub uploading: u32,
    /// Open connections (tabs) of this user.
    pub tabs: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemStatus {
    /// Photos waiting in every room of this server.
    pub queued: u32,
    /// Photos being processed now.
    pub active_jobs: u32,
    /// The limit on concurrent processing.
    pub workers: u32,
    /// Process CPU use over the last interval, in percent of one core.
    pub cpu_percent: f32,
    /// Resident memory of the server process.
    pub memory_bytes: u64,
}

/// A position in a room's event stream: Centrifugo's (epoch, offset). `seq` counts events from 1
/// within an epoch; a new epoch means the history before it cannot be replayed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamPosition {
    pub epoch: String,
    pub seq: u64,
}

/// Something that happened in a room, in the order every member sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RoomEvent {
    /// A member sent a line of text to everyone (also how scripts and tests mark the stream).
    Note { by: String, text: String },
    /// A photo was stored durably and waits for reconstruction. `position` counts the room's
    /// photos from 1 in upload order.
    /// `uploader` is the id of the member who may cancel or remove it (besides the owner);
    /// absent for uploads that named no connection.
    PhotoQueued {
        photo: String,
        name: String,
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uploader: Option<String>,
        bytes: u64,
        position: u32,
    },
    /// A worker took the photo.
    PhotoStarted { photo: String },
    /// The photo has a pose; `shard` holds the points its registration added. A photo that
    /// was pending may register while another photo is processed (its pose needed that photo's
    /// points): its `photo_registered` then comes without a `photo_started` of its own.
    PhotoRegistered {
        photo: String,
        camera: CameraView,
        shard: Option<ShardRef>,
        /// Points in the whole model after this photo: what `model.ply` holds. It can be less
        /// than the shards' sum, since later photos may show earlier points to be outliers;
        /// the next refinement's manifest has exactly these.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model_points: Option<u64>,
    },
    /// The photo could not be registered yet (validation required). It is kept and retried as
    /// more photos arrive; a member may retry it now or remove it. It also follows a
    /// `refinement_done` for a registered photo whose camera that refinement found
    /// inconsistent and took out of the model: the photo is pending again, with the reason.
    PhotoPending { photo: String, reason: String },
    /// Processing failed. `retryable` tells whether `retry_photo` can help.
    PhotoFailed { photo: String, reason: String, retryable: bool },
    PhotoCancelled { photo: String, by: String },
    /// A member put the photo back in the queue.
    PhotoRetried { photo: String, by: String },
    PhotoRemoved { photo: String, by: String },
    /// A global refinement began; exactly one `refinement_done` or `refinement_interrupted`
    /// closes it.
    RefinementStarted { photos: u32 },
    /// The server stopped during the refinement that the last `refinement_started` announced
    /// (appended when it starts again, before anything else). The model stays as it was before
    /// that refinement; it runs again with the photo that triggered it.
    RefinementInterrupted { photos: u32 },
    /// Global refinement finished: `manifest` and `cameras` replace the old ones entirely (a
    /// full refetch for every client).
    RefinementDone { manifest: Manifest, cameras: Vec<CameraView>, seconds: f64 },
    /// A shared setting changed; `revision` is the field's new revision.
    SettingChanged { setting: SettingValue, revision: u64, by: String },
}

/// A registered camera, as the viewer draws it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CameraView {
    pub photo: String,
    /// World-to-camera rotation, row-major.
    pub rotation: [[f64; 3]; 3],
    /// Camera centre in world coordinates.
    pub center: [f64; 3],
    /// Focal length and principal point in pixels of `width` x `height`.
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
    pub width: u32,
    pub height: u32,
}

impl CameraView {
    /// A 100 x 80 pixel camera with a 100 px focal length and the given pose: a small, readable
    /// fixture for tests and examples.
    pub fn example(photo: &str, rotation: [[f64; 3]; 3], center: [f64; 3]) -> Self {
        Self { photo: photo.into(), rotation, center, fx: 100.0, fy: 100.0, cx: 50.0, cy: 40.0, width: 100, height: 80 }
    }
}

/// The identity rotation: a camera looking along +z.
pub const IDENTITY: [[f64; 3]; 3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

/// A content-addressed block of points: `GET /api/rooms/{id}/shards/{hash}`, in the format of
/// [`crate::shard`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRef {
    /// SHA-256 of the shard's bytes, lowercase hex.
    pub hash: String,
    pub points: u32,
}

/// Every shard of the model. `generation` increases with each refinement, which replaces the
/// whole list; between refinements registered photos append shards.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub generation: u64,
    pub shards: Vec<ShardRef>,
}

impl Manifest {
    pub fn points(&self) -> u64 {
        self.shards.iter().map(|s| u64::from(s.points)).sum()
    }
}

/// Known camera intrinsics at the photos' original resolution, shared by all photos.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct KnownIntrinsics {
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
}

/// One shared setting with its value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "field", content = "value", rename_all = "snake_case")]
pub enum SettingValue {
    /// Global refinement after every this many photos; 0 turns it off.
    RefineEvery(u32),
    /// Photos are downscaled to this longer side before processing.
    MaxImageSide(u32),
    /// Most keypoints kept per photo.
    MaxFeatures(u32),
    /// Known intrinsics, or `null` to estimate them.
    Intrinsics(Option<KnownIntrinsics>),
}

impl SettingValue {
    /// The field's name as it appears on the wire.
    pub fn field(&self) -> &'static str {
        match self {
            Self::RefineEvery(_) => "refine_every",
            Self::MaxImageSide(_) => "max_image_side",
            Self::MaxFeatures(_) => "max_features",
            Self::Intrinsics(_) => "intrinsics",
        }
    }

    /// Checks the value against the field's bounds; the message says what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Self::RefineEvery(n) if *n > 1000 => Err("refine every: 0 (never) to 1000 photos".into()),
            Self::MaxImageSide(n) if !(64..=8192).contains(n) => {
                Err("maximum image size: 64 to 8192 pixels".into())
            }
            Self::MaxFeatures(n) if !(100..=50_000).contains(n) => Err("features per photo: 100 to 50000".into()),
            Self::Intrinsics(Some(k))
                if ![k.fx, k.fy, k.cx, k.cy].iter().all(|v| v.is_finite()) || k.fx <= 0.0 || k.fy <= 0.0 =>
            {
                Err("intrinsics: finite numbers with positive focal lengths".into())
            }
            _ => Ok(()),
        }
    }

    /// The mean of two values of the same numeric field, for resolving a conflict; `None` for
    /// fields that are not a single number.
    pub fn average(&self, other: &Self) -> Option<Self> {
        let mean = |a: u32, b: u32| (u64::from(a) + u64::from(b)).div_ceil(2) as u32;
        match (self, other) {
            (Self::RefineEvery(a), Self::RefineEvery(b)) => Some(Self::RefineEvery(mean(*a, *b))),
            (Self::MaxImageSide(a), Self::MaxImageSide(b)) => Some(Self::MaxImageSide(mean(*a, *b))),
            (Self::MaxFeatures(a), Self::MaxFeatures(b)) => Some(Self::MaxFeatures(mean(*a, *b))),
            _ => None,
        }
    }
}

/// A setting's value with the revision that produced it and who made it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Revised<T> {
    pub value: T,
    /// 0 for the default; each accepted update adds one.
    pub revision: u64,
    #[serde(default)]
    pub by: Option<String>,
}

impl<T> Revised<T> {
    fn initial(value: T) -> Self {
        Self { value, revision: 0, by: None }
    }
}

/// The room's shared reconstruction settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoomSettings {
    pub refine_every: Revised<u32>,
    pub max_image_side: Revised<u32>,
    pub max_features: Revised<u32>,
    pub intrinsics: Revised<Option<KnownIntrinsics>>,
}

impl Default for RoomSettings {
    fn default() -> Self {
        Self {
            refine_every: Revised::initial(10),
            max_image_side: Revised::initial(1600),
            max_features: Revised::initial(8000),
            intrinsics: Revised::initial(None),
        }
    }
}

impl RoomSettings {
    /// The current value, revision and author of the field that `like` names (its value is
    /// ignored).
    pub fn current(&self, like: &SettingValue) -> (SettingValue, u64, Option<String>) {
        fn of<T: Clone>(r: &Revised<T>, wrap: fn(T) -> SettingValue) -> (SettingValue, u64, Option<String>) {
            (wrap(r.value.clone()), r.revision, r.by.clone())
        }
        match like {
            SettingValue::RefineEvery(_) => of(&self.refine_every, SettingValue::RefineEvery),
            SettingValue::MaxImageSide(_) => of(&self.max_image_side, SettingValue::MaxImageSide),
            SettingValue::MaxFeatures(_) => of(&self.max_features, SettingValue::MaxFeatures),
            SettingValue::Intrinsics(_) => of(&self.intrinsics, SettingValue::Intrinsics),
        }
    }

    /// Sets a field to `value` at `revision`.
    pub fn set(&mut self, value: &SettingValue, revision: u64, by: &str) {
        let by = Some(by.to_owned());
        match value {
            SettingValue::RefineEvery(v) => self.refine_every = Revised { value: *v, revision, by },
            SettingValue::MaxImageSide(v) => self.max_image_side = Revised { value: *v, revision, by },
            SettingValue::MaxFeatures(v) => self.max_features = Revised { value: *v, revision, by },
            SettingValue::Intrinsics(v) => self.intrinsics = Revised { value: *v, revision, by },
        }
    }
}

/// A photo as the room lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhotoSummary {
    /// SHA-256 of the bytes, lowercase hex.
    pub id: String,
    pub name: String,
    pub by: String,
    /// See [`RoomEvent::PhotoQueued`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploader: Option<String>,
    pub status: PhotoState,
    /// Why it is pending or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhotoState {
    Queued,
    Processing,
    Registered,
    /// Not registered yet: waiting for more photos, or for a member to retry or remove it.
    Pending,
    Failed,
    Cancelled,
}

impl PhotoState {
    /// Whether a worker still has to look at the photo.
    pub fn awaits_processing(self) -> bool {
        matches!(self, Self::Queued | Self::Processing)
    }
}

/// The latest global refinement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RefinementInfo {
    /// Registered photos when it ran.
    pub photos: u32,
    pub seconds: f64,
    /// The stream seq of its `refinement_done` event.
    pub seq: u64,
}

/// Everything a newcomer needs to draw the room as it is now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoomSnapshot {
    /// Notes in stream order, at most [`RoomSnapshot::MAX_NOTES`] of the latest.
    pub notes: Vec<String>,
    /// How many events the stream has carried in this epoch.
    pub events: u64,
    /// Every photo of the room, in upload order.
    pub photos: Vec<PhotoSummary>,
    /// Registered cameras, in registration order.
    pub cameras: Vec<CameraView>,
    /// The point shards that make up the model.
    pub manifest: Manifest,
    pub settings: RoomSettings,
    pub last_refinement: Option<RefinementInfo>,
    /// A refinement is running: the photo count of its `refinement_started`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refining: Option<u32>,
    /// Points in the model after the latest registration or refinement (see
    /// [`RoomEvent::PhotoRegistered`]); `None` before the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_points: Option<u64>,
}

/// Photo counts by state, for status displays.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhotoCounts {
    pub total: u32,
    pub queued: u32,
    pub processing: u32,
    pub registered: u32,
    pub pending: u32,
    pub failed: u32,
    pub cancelled: u32,
}

impl RoomSnapshot {
    pub const MAX_NOTES: usize = 50;

    pub fn photo(&self, id: &str) -> Option<&PhotoSummary> {
        self.photos.iter().find(|p| p.id == id)
    }

    pub fn counts(&self) -> PhotoCounts {
        let mut counts = PhotoCounts { total: self.photos.len() as u32, ..PhotoCounts::default() };
        for photo in &self.photos {
            *match photo.status {
                PhotoState::Queued => &mut counts.queued,
                PhotoState::Processing => &mut counts.processing,
                PhotoState::Registered => &mut counts.registered,
                PhotoState::Pending => &mut counts.pending,
                PhotoState::Failed => &mut counts.failed,
                PhotoState::Cancelled => &mut counts.cancelled,
            } += 1;
        }
        counts
    }

    fn set_status(&mut self, id: &str, status: PhotoState, reason: Option<String>) {
        if let Some(photo) = self.photos.iter_mut().find(|p| p.id == id) {
            photo.status = status;
            photo.reason = reason;
        }
    }

    /// Folds the event at `seq` into the state. The server and a resuming client both use
    /// this, so a snapshot plus the events after it always equals the state at the newest event.
    pub fn apply(&mut self, seq: u64, event: &RoomEvent) {
        self.events += 1;
        match event {
            RoomEvent::Note { by, text } => {
                self.notes.push(format!("{by}: {text}"));
                if self.notes.len() > Self::MAX_NOTES {
                    let excess = self.notes.len() - Self::MAX_NOTES;
                    self.notes.drain(..excess);
                }
            }
            RoomEvent::PhotoQueued { photo, name, by, uploader, .. } => self.photos.push(PhotoSummary {
                id: photo.clone(),
                name: name.clone(),
                by: by.clone(),
                uploader: uploader.clone(),
                status: PhotoState::Queued,
                reason: None,
            }),
            RoomEvent::PhotoStarted { photo } => self.set_status(photo, PhotoState::Processing, None),
            RoomEvent::PhotoRegistered { photo, camera, shard, model_points } => {
                self.set_status(photo, PhotoState::Registered, None);
                if model_points.is_some() {
                    self.model_points = *model_points;
                }
                self.cameras.retain(|c| c.photo != *photo);
                self.cameras.push(camera.clone());
                if let Some(shard) = shard {
                    self.manifest.shards.push(shard.clone());
                }
            }
            RoomEvent::PhotoPending { photo, reason } => {
                // Also a registered photo whose camera a refinement took out of the model.
                self.cameras.retain(|c| c.photo != *photo);
                self.set_status(photo, PhotoState::Pending, Some(reason.clone()))
            }
            RoomEvent::PhotoFailed { photo, reason, .. } => {
                self.set_status(photo, PhotoState::Failed, Some(reason.clone()))
            }
            RoomEvent::PhotoCancelled { photo, .. } => self.set_status(photo, PhotoState::Cancelled, None),
            RoomEvent::PhotoRetried { photo, .. } => self.set_status(photo, PhotoState::Queued, None),
            RoomEvent::PhotoRemoved { photo, .. } => self.photos.retain(|p| p.id != *photo),
            RoomEvent::RefinementStarted { photos } => self.refining = Some(*photos),
            RoomEvent::RefinementInterrupted { .. } => self.refining = None,
            RoomEvent::RefinementDone { manifest, cameras, seconds } => {
                self.refining = None;
                self.model_points = Some(manifest.points());
                self.manifest = manifest.clone();
                self.cameras = cameras.clone();
                self.last_refinement = Some(RefinementInfo { photos: cameras.len() as u32, seconds: *seconds, seq });
            }
            RoomEvent::SettingChanged { setting, revision, by } => self.settings.set(setting, *revision, by),
        }
    }
}

/// Machine-readable error kinds; `message` carries the human-readable explanation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, or JSON that is not a known message.
    BadMessage,
    /// A text or binary frame larger than [`MAX_MESSAGE_BYTES`].
    TooLarge,
    /// Binary frames are not part of the control protocol.
    UnexpectedBinary,
    /// The message is valid but not allowed now (e.g. a second `hello`).
    OutOfOrder,
    UnsupportedVersion,
    /// The server could not carry the request out right now; retrying may work.
    Unavailable,
    /// Too many messages or uploads from this address; wait and retry.
    RateLimited,
    /// The photo named does not exist in this room.
    NotFound,
    /// The request does not apply to the photo's current state (e.g. retrying a registered
    /// photo).
    InvalidState,
    /// A setting value outside its bounds.
    InvalidSetting,
    /// An `upload_image` that the upload path refused; the message says why.
    UploadRejected,
    /// A room limit (photos per room) is reached.
    LimitReached,
    /// Only the photo's uploader or the room's owner may do this.
    Forbidden,
}

impl ClientMessage {
    pub fn to_json(&self) -> String {
        // Serialising these plain enums cannot fail: no maps with non-string keys, no floats
        // that JSON cannot hold.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl ServerMessage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_accept_plain_names() {
        for ok in ["auditorio", "a", "sceaux-castle-2", "0"] {
            assert_eq!(RoomId::parse(ok).map(|r| r.to_string()), Ok(ok.to_owned()));
        }
    }

    #[test]
    fn room_ids_refuse_path_tricks_and_odd_characters() {
        assert_eq!(RoomId::parse(""), Err(RoomIdError::Empty));
        assert!(matches!(RoomId::parse("../etc"), Err(RoomIdError::BadCharacter { found: '.', at: 0 })));
        assert!(matches!(RoomId::parse("a/b"), Err(RoomIdError::BadCharacter { found: '/', .. })));
        assert!(matches!(RoomId::parse("Auditorio"), Err(RoomIdError::BadCharacter { found: 'A', .. })));
        assert!(matches!(RoomId::parse("a\0b"), Err(RoomIdError::BadCharacter { .. })));
        assert!(matches!(RoomId::parse("café"), Err(RoomIdError::BadCharacter { found: 'é', at: 3 })));
        assert_eq!(RoomId::parse("-a"), Err(RoomIdError::BadHyphen));
        assert_eq!(RoomId::parse("a--b"), Err(RoomIdError::BadHyphen));
        assert_eq!(RoomId::parse(&"a".repeat(65)), Err(RoomIdError::TooLong { got: 65 }));
    }

    #[test]
    fn room_id_deserialisation_validates() {
        assert!(serde_json::from_str::<RoomId>("\"ok-room\"").is_ok());
        assert!(serde_json::from_str::<RoomId>("\"../x\"").is_err());
    }

    #[test]
    fn messages_use_a_type_tag() {
        let hello = ClientMessage::Hello { version: PROTOCOL_VERSION, name: Some("Ana".into()), resume: None, user: None, colour: None, key: None };
        assert_eq!(hello.to_json(), r#"{"type":"hello","version":1,"name":"Ana","resume":null,"user":null,"colour":null}"#);
        let parsed: ClientMessage = serde_json::from_str(r#"{"type":"ping","nonce":7}"#).unwrap();
        assert_eq!(parsed, ClientMessage::Ping { nonce: 7 });
        let welcome = ServerMessage::Welcome {
            version: 1,
            room: RoomId::parse("auditorio").unwrap(),
            connection_id: 3,
            server_version: "0.1.0".into(),
            head: StreamPosition { epoch: "e1".into(), seq: 4 },
            upload_key: Some("k".into()),
            room_name: Some("Auditorio".into()),
            uploader: Some("u".into()),
            owner: true,
        };
        let json = welcome.to_json();
        assert_eq!(serde_json::from_str::<ServerMessage>(&json).unwrap(), welcome);
        assert!(json.starts_with(r#"{"type":"welcome""#));
    }

    #[test]
    fn hello_without_name_is_accepted() {
        let parsed: ClientMessage = serde_json::from_str(r#"{"type":"hello","version":1}"#).unwrap();
        assert_eq!(parsed, ClientMessage::Hello { version: 1, name: None, resume: None, user: None, colour: None, key: None });
    }

    #[test]
    fn snapshots_fold_events_and_keep_the_latest_notes() {
        let mut state = RoomSnapshot::default();
        for i in 0..(RoomSnapshot::MAX_NOTES + 5) {
            state.apply(i as u64 + 1, &RoomEvent::Note { by: "Ana".into(), text: i.to_string() });
        }
        assert_eq!(state.events as usize, RoomSnapshot::MAX_NOTES + 5);
        assert_eq!(state.notes.len(), RoomSnapshot::MAX_NOTES);
        assert_eq!(state.notes.first().map(String::as_str), Some("Ana: 5"));
    }

    #[test]
    fn unknown_types_are_errors_not_panics() {
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"launch_missiles"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>("\u{0}\u{1}").is_err());
    }

    fn camera(photo: &str) -> CameraView {
        CameraView::example(photo, IDENTITY, [0.0; 3])
    }

    #[test]
    fn a_photo_journey_folds_into_statuses_cameras_and_the_manifest() {
        let mut state = RoomSnapshot::default();
        let shard = |h: &str, n| ShardRef { hash: h.into(), points: n };
        let queued = |p: &str, position| RoomEvent::PhotoQueued {
            photo: p.into(), name: format!("{p}.jpg"), by: "Ana".into(), uploader: None, bytes: 1, position,
        };
        let events = [
            queued("a", 1),
            queued("b", 2),
            queued("c", 3),
            RoomEvent::PhotoStarted { photo: "a".into() },
            RoomEvent::PhotoRegistered { photo: "a".into(), camera: camera("a"), shard: Some(shard("s1", 10)), model_points: None },
            RoomEvent::PhotoRegistered { photo: "b".into(), camera: camera("b"), shard: Some(shard("s2", 5)), model_points: None },
            RoomEvent::PhotoPending { photo: "c".into(), reason: "no overlap".into() },
        ];
        for (i, e) in events.iter().enumerate() {
            state.apply(i as u64 + 1, e);
        }
        assert_eq!(state.manifest.points(), 15);
        assert_eq!(state.counts(), PhotoCounts { total: 3, registered: 2, pending: 1, ..PhotoCounts::default() });
        assert_eq!(state.photo("c").and_then(|p| p.reason.as_deref()), Some("no overlap"));
        let refined = Manifest { generation: 1, shards: vec![shard("s3", 12)] };
        state.apply(8, &RoomEvent::RefinementDone { manifest: refined.clone(), cameras: vec![camera("a"), camera("b")], seconds: 0.5 });
        assert_eq!(state.manifest, refined);
        assert_eq!(state.last_refinement.as_ref().map(|r| (r.photos, r.seq)), Some((2, 8)));
        state.apply(9, &RoomEvent::PhotoRemoved { photo: "c".into(), by: "Ana".into() });
        assert_eq!(state.counts().total, 2);
    }

    #[test]
    fn settings_validate_average_and_revise() {
        assert!(SettingValue::RefineEvery(0).validate().is_ok());
        assert!(SettingValue::RefineEvery(1001).validate().is_err());
        assert!(SettingValue::MaxImageSide(10).validate().is_err());
        let bad = KnownIntrinsics { fx: -1.0, fy: 1.0, cx: 0.0, cy: 0.0 };
        assert!(SettingValue::Intrinsics(Some(bad)).validate().is_err());
        assert_eq!(SettingValue::RefineEvery(5).average(&SettingValue::RefineEvery(10)), Some(SettingValue::RefineEvery(8)));
        assert_eq!(SettingValue::Intrinsics(None).average(&SettingValue::Intrinsics(None)), None);
        let mut settings = RoomSettings::default();
        settings.set(&SettingValue::MaxImageSide(2000), 1, "Ana");
        assert_eq!(settings.current(&SettingValue::MaxImageSide(0)), (SettingValue::MaxImageSide(2000), 1, Some("Ana".into())));
        let json = serde_json::to_string(&ClientMessage::UpdateSetting { setting: SettingValue::RefineEvery(5), base_revision: 0 }).unwrap();
        assert_eq!(json, r#"{"type":"update_setting","setting":{"field":"refine_every","value":5},"base_revision":0}"#);
    }

    #[test]
    fn a_camera_taken_out_by_a_refinement_leaves_the_snapshot() {
        let mut state = RoomSnapshot::default();
        let camera = CameraView::example("a", IDENTITY, [0.0; 3]);
        state.apply(1, &RoomEvent::PhotoQueued { photo: "a".into(), name: "a.jpg".into(), by: "Ana".into(), uploader: None, bytes: 1, position: 1 });
        state.apply(2, &RoomEvent::PhotoRegistered { photo: "a".into(), camera, shard: None, model_points: Some(5) });
        assert_eq!(state.cameras.len(), 1);
        state.apply(3, &RoomEvent::PhotoPending { photo: "a".into(), reason: "taken out of the model by the refinement: r".into() });
        assert!(state.cameras.is_empty());
        assert_eq!(state.photo("a").map(|p| p.status), Some(PhotoState::Pending));
    }
}
