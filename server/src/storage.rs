//! Embedded, durable storage: one SQLite database in WAL mode inside the data directory.
//!
//! Two levels of durability, chosen per write ([`Durability`]):
//! - [`Durability::Synced`]: fsynced before the call returns, so it survives a power cut. Used
//!   for what the server acknowledges over HTTP (an uploaded photo before its 201, a room created
//!   or deleted), and for events after which something else is dropped (the pipeline's outcome
//!   events, whose outbox goes with the next save; a removal, whose photo file is deleted).
//! - [`Durability::Written`]: in the WAL file before the call returns, so it survives the
//!   process being killed (the kernel has the bytes), and fsynced by [`Storage::sync`] within a
//!   second. Used for room events, which reach every member right after: waiting for the disk
//!   would put its slowest flushes (over 100 ms on this project's VM) in front of every viewer.
//!
//! A power cut can therefore lose up to a second of room events that clients already saw. So
//! that no client trusts a history that lost its tail, the first start after a reboot gives
//! every room a new epoch ([`Storage::open`]): clients then get a snapshot marked `reset`
//! instead of a resume on top of sequence numbers that may be reused.
//!
//! Calls are synchronous; async handlers reach them through `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot open the database {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("the database was written by a newer Vestige (schema {found}, this build knows {known})")]
    NewerSchema { found: i64, known: i64 },
    #[error("room {0} does not exist")]
    NoSuchRoom(String),
    #[error("the room already has the maximum of {0} photos")]
    PhotoLimit(u64),
    #[error("the server already holds its maximum of {0} rooms")]
    RoomLimit(u64),
    #[error("cannot flush the database to disk: {0}")]
    Sync(std::io::Error),
}

/// A room's row: who may enter and whether it is archived.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomRow {
    pub id: String,
    pub name: String,
    /// Public rooms need no token; private ones (the default) need the owner or join token.
    pub public: bool,
    /// SHA-256 (hex) of the owner token; `None` for rooms made before tokens existed.
    pub owner_hash: Option<String>,
    pub join_hash: Option<String>,
    pub created_at: i64,
    pub last_active: i64,
    pub archived_at: Option<i64>,
}

/// A room about to be created.
#[derive(Debug, Clone)]
pub struct NewRoom<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub public: bool,
    pub owner_hash: &'a str,
    pub join_hash: &'a str,
}

/// Bumped with every schema change; `migrate` brings older databases forward.
const SCHEMA_VERSION: i64 = 4;

/// How far a write must have got before the call returns. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// In the operating system's hands: survives a killed process, and a power cut once
    /// [`Storage::sync`] ran.
    Written,
    /// On the disk: survives a power cut.
    Synced,
}

/// What [`Storage::open`] found about the previous run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// A new data directory, or the same boot of the machine as the last run: nothing written
    /// with [`Durability::Written`] can have been lost.
    SameBoot,
    /// The machine rebooted since the last run, maybe by losing power: every room got a new
    /// epoch.
    AfterReboot,
}

pub struct Storage {
    conn: Mutex<Connection>,
    path: PathBuf,
    restart: Restart,
}

/// A photo about to be recorded.
#[derive(Debug, Clone)]
pub struct NewPhoto<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub by: &'a str,
    /// Who may cancel or remove it besides the owner (see `uploaders`).
    pub uploader: Option<&'a str>,
    pub bytes: u64,
}

/// A room's stream as stored: its epoch, the newest event and the latest saved state.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredStream {
    pub epoch: String,
    pub head: u64,
    /// (seq, JSON) of the last saved snapshot, if any.
    pub snapshot: Option<(u64, String)>,
}

impl Storage {
    /// Opens (or creates) the database in `data_dir`. After a reboot of the machine, gives
    /// every room a new epoch (see the module documentation).
    pub fn open(data_dir: &Path) -> Result<Self, StorageError> {
        // Linux names each boot; elsewhere every start counts as the same boot.
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        Self::open_at_boot(data_dir, boot.trim(), &new_epoch())
    }

    /// [`Storage::open`] for a given boot id, with `fresh_epoch` as the new epoch of every
    /// room if the boot changed.
    pub fn open_at_boot(data_dir: &Path, boot_id: &str, fresh_epoch: &str) -> Result<Self, StorageError> {
        let path = data_dir.join("vestige.sqlite3");
        let conn = Connection::open(&path).map_err(|source| StorageError::Open { path: path.clone(), source })?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Checkpoints copy the WAL into the database and fsync it, which can take a hundred
        // milliseconds; run inside a commit, they stall the event that triggered them. They run
        // from `checkpoint` on a timer instead (the WAL stays durable either way).
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&conn)?;
        let restart = note_boot(&conn, boot_id, fresh_epoch)?;
        Ok(Self { conn: Mutex::new(conn), path, restart })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this start follows a reboot (and so rotated the epochs).
    pub fn restart(&self) -> Restart {
        self.restart
    }

    /// Puts everything written so far on the disk. Called every second, and at shutdown.
    pub fn sync(&self) -> Result<(), StorageError> {
        // SQLite's WAL is its journal: fsyncing the file is what `synchronous = FULL` does at
        // each commit. Any descriptor of the file will do on Linux.
        match std::fs::File::open(wal_path(&self.path)) {
            Ok(wal) => wal.sync_data().map_err(StorageError::Sync),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(StorageError::Sync(err)),
        }
    }

    /// Moves committed WAL pages into the database file without blocking writers (a passive
    /// checkpoint on a connection of its own, so appends go on meanwhile).
    pub fn checkpoint(&self) -> Result<(), StorageError> {
        let conn = Connection::open(&self.path).map_err(|source| StorageError::Open { path: self.path.clone(), source })?;
        conn.busy_timeout(std::time::Duration::from_secs(1))?;
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll
        // back), so a poisoned lock is still safe to use.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Creates a room with its first epoch. `Ok(false)` (and nothing written) when the id is
    /// taken; `RoomLimit` when `max_live` rooms that are not archived exist already. The count
    /// and the insert happen under one lock, so concurrent creations cannot overshoot it.
    pub fn create_room(&self, room: &NewRoom<'_>, epoch: &str, now_unix: i64, max_live: u64) -> Result<bool, StorageError> {
        let conn = self.conn();
        let live: i64 = conn.query_row("SELECT COUNT(*) FROM rooms WHERE archived_at IS NULL", [], |row| row.get(0))?;
        if live as u64 >= max_live {
            return Err(StorageError::RoomLimit(max_live));
        }
        // Synced: the 201 hands out the room's tokens, which must keep working.
        let _synced = SyncedCommit::start(&conn, Durability::Synced)?;
        let created = conn.execute(
            "INSERT OR IGNORE INTO rooms (id, epoch, created_at, name, visibility, owner_hash, join_hash, last_active)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?3)",
            params![
                room.id,
                epoch,
                now_unix,
                room.name,
                if room.public { "public" } else { "private" },
                room.owner_hash,
                room.join_hash
            ],
        )?;
        Ok(created == 1)
    }

    pub fn room(&self, id: &str) -> Result<Option<RoomRow>, StorageError> {
        Ok(self
            .conn()
            .query_row(&format!("{ROOM_COLUMNS} WHERE id = ?1"), [id], room_row)
            .optional()?)
    }

    /// Every room, oldest first.
    pub fn rooms(&self) -> Result<Vec<RoomRow>, StorageError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{ROOM_COLUMNS} ORDER BY created_at, id"))?;
        let rows = stmt.query_map([], room_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Rooms created at or before `created_before` that never held a photo or an event, and so
    /// were never used.
    pub fn unused_rooms(&self, created_before: i64) -> Result<Vec<String>, StorageError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id FROM rooms r WHERE created_at <= ?1
               AND NOT EXISTS (SELECT 1 FROM events e WHERE e.room = r.id)
               AND NOT EXISTS (SELECT 1 FROM photos p WHERE p.room = r.id)
             ORDER BY id",
        )?;
        let rows = stmt.query_map([created_before], |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Marks a room archived (`Some(time)`) or active again (`None`).
    pub fn set_archived(&self, id: &str, at: Option<i64>) -> Result<(), StorageError> {
        self.conn().execute("UPDATE rooms SET archived_at = ?2 WHERE id = ?1", params![id, at])?;
        Ok(())
    }

    /// Deletes a room with its events, snapshots and photo records.
    pub fn delete_room(&self, id: &str) -> Result<bool, StorageError> {
        let conn = self.conn();
        // Synced: the owner was told it is gone.
        let _synced = SyncedCommit::start(&conn, Durability::Synced)?;
        Ok(conn.execute("DELETE FROM rooms WHERE id = ?1", [id])? == 1)
    }

    /// The room's stream. The room must exist.
    pub fn open_stream(&self, room: &str) -> Result<StoredStream, StorageError> {
        let conn = self.conn();
        let epoch: String = conn
            .query_row("SELECT epoch FROM rooms WHERE id = ?1", [room], |row| row.get(0))
            .optional()?
            .ok_or_else(|| StorageError::NoSuchRoom(room.to_owned()))?;
        let head: u64 = conn.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE room = ?1",
            [room],
            |row| row.get::<_, i64>(0),
        )? as u64;
        let snapshot = conn
            .query_row("SELECT seq, body FROM snapshots WHERE room = ?1", [room], |row| {
                Ok((row.get::<_, i64>(0)? as u64, row.get::<_, String>(1)?))
            })
            .optional()?;
        Ok(StoredStream { epoch, head, snapshot })
    }

    /// Durably appends one event. Fails (and stores nothing) if `seq` is already taken.
    pub fn append_event(&self, room: &str, seq: u64, body: &str) -> Result<(), StorageError> {
        self.append_events(room, &[(seq, body.to_owned())], None, Durability::Synced)
    }

    /// Appends consecutive events in one transaction, and forgets the photo `forget_photo` in
    /// the same transaction (a removal), so a retried upload of it is new.
    pub fn append_events(
        &self,
        room: &str,
        events: &[(u64, String)],
        forget_photo: Option<&str>,
        durability: Durability,
    ) -> Result<(), StorageError> {
        let conn = self.conn();
        let _synced = SyncedCommit::start(&conn, durability)?;
        let tx = conn.unchecked_transaction()?;
        for (seq, body) in events {
            tx.execute("INSERT INTO events (room, seq, body) VALUES (?1, ?2, ?3)", params![room, *seq as i64, body])?;
        }
        if let Some(photo) = forget_photo {
            tx.execute("DELETE FROM photos WHERE room = ?1 AND id = ?2", params![room, photo])?;
        }
        tx.execute("UPDATE rooms SET last_active = ?2 WHERE id = ?1", params![room, now_unix()])?;
        tx.commit()?;
        Ok(())
    }

    /// Rooms that have photos, for resuming their processing after a restart.
    pub fn rooms_with_photos(&self) -> Result<Vec<String>, StorageError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT DISTINCT room FROM photos ORDER BY room")?;
        let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Events with `after < seq <= up_to`, in order.
    pub fn events_between(&self, room: &str, after: u64, up_to: u64) -> Result<Vec<(u64, String)>, StorageError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT seq, body FROM events WHERE room = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq")?;
        let rows = stmt.query_map(params![room, after as i64, up_to as i64], |row| {
            Ok((row.get::<_, i64>(0)? as u64, row.get::<_, String>(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records a photo and the event announcing it in one transaction, so neither exists
    /// without the other. `event_body` gets the photo's position. Returns the position and
    /// body, or `None` (writing nothing) when the room already has this photo.
    pub fn insert_photo(
        &self,
        room: &str,
        photo: &NewPhoto<'_>,
        max_photos: u64,
        seq: u64,
        event_body: impl FnOnce(u32) -> String,
        now_unix: i64,
    ) -> Result<Option<(u32, String)>, StorageError> {
        let conn = self.conn();
        // The upload's 201 promises the photo survives anything.
        let _synced = SyncedCommit::start(&conn, Durability::Synced)?;
        let tx = conn.unchecked_transaction()?;
        let exists = tx
            .query_row("SELECT 1 FROM photos WHERE room = ?1 AND id = ?2", params![room, photo.id], |_| Ok(()))
            .optional()?
            .is_some();
        if exists {
            return Ok(None);
        }
        // Positions are never reused, even after a removal: clients key their cards on them.
        let position: i64 = tx.query_row(
            "SELECT MAX(COALESCE((SELECT MAX(position) FROM photos WHERE room = ?1), 0),
                        (SELECT photos_added FROM rooms WHERE id = ?1)) + 1",
            [room],
            |row| row.get(0),
        )?;
        let count: i64 = tx.query_row("SELECT COUNT(*) FROM photos WHERE room = ?1", [room], |row| row.get(0))?;
        if count as u64 >= max_photos {
            return Err(StorageError::PhotoLimit(max_photos));
        }
        let position = u32::try_from(position).unwrap_or(u32::MAX);
        tx.execute(
            "INSERT INTO photos (room, id, position, name, uploaded_by, bytes, status, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7)",
            params![room, photo.id, position, photo.name, photo.by, photo.bytes as i64, now_unix],
        )?;
        let body = event_body(position);
        tx.execute("INSERT INTO events (room, seq, body) VALUES (?1, ?2, ?3)", params![room, seq as i64, body])?;
        tx.execute("UPDATE rooms SET last_active = ?2, photos_added = ?3 WHERE id = ?1", params![room, now_unix, position])?;
        tx.commit()?;
        Ok(Some((position, body)))
    }

    /// Number of photos a room holds.
    pub fn photo_count(&self, room: &str) -> Result<u64, StorageError> {
        let count: i64 = self.conn().query_row("SELECT COUNT(*) FROM photos WHERE room = ?1", [room], |row| row.get(0))?;
        Ok(count as u64)
    }

    pub fn save_snapshot(&self, room: &str, seq: u64, body: &str) -> Result<(), StorageError> {
        self.conn().execute(
            "INSERT INTO snapshots (room, seq, body) VALUES (?1, ?2, ?3)
             ON CONFLICT(room) DO UPDATE SET seq = excluded.seq, body = excluded.body",
            params![room, seq as i64, body],
        )?;
        Ok(())
    }
}

const ROOM_COLUMNS: &str = "SELECT id, COALESCE(name, id), visibility, owner_hash, join_hash, created_at,
     COALESCE(last_active, created_at), archived_at FROM rooms";

fn room_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RoomRow> {
    Ok(RoomRow {
        id: row.get(0)?,
        name: row.get(1)?,
        public: row.get::<_, String>(2)? == "public",
        owner_hash: row.get(3)?,
        join_hash: row.get(4)?,
        created_at: row.get(5)?,
        last_active: row.get(6)?,
        archived_at: row.get(7)?,
    })
}

fn wal_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// A fresh epoch for a room's stream: at creation, and for every room after a reboot.
pub fn new_epoch() -> String {
    // Unique enough to tell two histories of the same room name apart; not a secret.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}", nanos & 0xffff_ffff_ffff)
}

/// Switches the connection to `synchronous = FULL` for one commit, and back when dropped. In
/// WAL mode that fsyncs the WAL, which also makes every earlier `Written` commit durable.
struct SyncedCommit<'c> {
    conn: Option<&'c Connection>,
}

impl<'c> SyncedCommit<'c> {
    fn start(conn: &'c Connection, durability: Durability) -> Result<Self, StorageError> {
        if durability == Durability::Written {
            return Ok(Self { conn: None });
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        Ok(Self { conn: Some(conn) })
    }
}

impl Drop for SyncedCommit<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn
            && let Err(err) = conn.pragma_update(None, "synchronous", "NORMAL")
        {
            // Staying on FULL is slower, never less safe.
            tracing::warn!(%err, "could not return the database to synchronous = NORMAL");
        }
    }
}

/// Records this boot; after a different one, gives every room `fresh_epoch`. One synced
/// transaction, so a crash in the middle cannot leave some rooms on the old epoch.
fn note_boot(conn: &Connection, boot_id: &str, fresh_epoch: &str) -> Result<Restart, StorageError> {
    let previous: Option<String> =
        conn.query_row("SELECT value FROM meta WHERE key = 'boot_id'", [], |row| row.get(0)).optional()?;
    if previous.as_deref() == Some(boot_id) {
        return Ok(Restart::SameBoot);
    }
    let _synced = SyncedCommit::start(conn, Durability::Synced)?;
    let tx = conn.unchecked_transaction()?;
    if previous.is_some() {
        tx.execute("UPDATE rooms SET epoch = ?1", [fresh_epoch])?;
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('boot_id', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [boot_id],
    )?;
    tx.commit()?;
    Ok(if previous.is_some() { Restart::AfterReboot } else { Restart::SameBoot })
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn migrate(conn: &Connection) -> Result<(), StorageError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StorageError::NewerSchema { found, known: SCHEMA_VERSION });
    }
    if found < 1 {
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE rooms (
                 id TEXT PRIMARY KEY,
                 epoch TEXT NOT NULL,
                 created_at INTEGER NOT NULL
             );
             CREATE TABLE events (
                 room TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
                 seq INTEGER NOT NULL,
                 body TEXT NOT NULL,
                 PRIMARY KEY (room, seq)
             ) WITHOUT ROWID;
             CREATE TABLE snapshots (
                 room TEXT PRIMARY KEY REFERENCES rooms(id) ON DELETE CASCADE,
                 seq INTEGER NOT NULL,
                 body TEXT NOT NULL
             );
             PRAGMA user_version = 1;
             COMMIT;",
        )?;
    }
    if found < 2 {
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE photos (
                 room TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
                 id TEXT NOT NULL,
                 position INTEGER NOT NULL,
                 name TEXT NOT NULL,
                 uploaded_by TEXT NOT NULL,
                 bytes INTEGER NOT NULL,
                 status TEXT NOT NULL,
                 created_at INTEGER NOT NULL,
                 PRIMARY KEY (room, id)
             ) WITHOUT ROWID;
             PRAGMA user_version = 2;
             COMMIT;",
        )?;
    }
    if found < 3 {
        // Rooms made before access control stay public: their links are already out there.
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE rooms ADD COLUMN name TEXT;
             ALTER TABLE rooms ADD COLUMN visibility TEXT NOT NULL DEFAULT 'public';
             ALTER TABLE rooms ADD COLUMN owner_hash TEXT;
             ALTER TABLE rooms ADD COLUMN join_hash TEXT;
             ALTER TABLE rooms ADD COLUMN last_active INTEGER;
             ALTER TABLE rooms ADD COLUMN archived_at INTEGER;
             ALTER TABLE rooms ADD COLUMN photos_added INTEGER NOT NULL DEFAULT 0;
             PRAGMA user_version = 3;
             COMMIT;",
        )?;
    }
    if found < 4 {
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             PRAGMA user_version = 4;
             COMMIT;",
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(storage: &Storage, id: &str, epoch: &str) {
        let room = NewRoom { id, name: id, public: false, owner_hash: "o", join_hash: "j" };
        storage.create_room(&room, epoch, 0, u64::MAX).expect("create");
    }

    #[test]
    fn events_survive_reopening_and_come_back_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let storage = Storage::open(dir.path()).expect("open");
            create(&storage, "auditorio", "e1");
            let stream = storage.open_stream("auditorio").expect("stream");
            assert_eq!(stream, StoredStream { epoch: "e1".into(), head: 0, snapshot: None });
            for seq in 1..=5 {
                storage.append_event("auditorio", seq, &format!("event {seq}")).expect("append");
            }
            storage.save_snapshot("auditorio", 3, "state at 3").expect("snapshot");
        }
        let storage = Storage::open(dir.path()).expect("reopen");
        // The epoch chosen at creation is kept: a restart is not a new history.
        // Creating it again changes nothing.
        create(&storage, "auditorio", "e2");
        let stream = storage.open_stream("auditorio").expect("stream");
        assert_eq!(stream.epoch, "e1");
        assert_eq!(stream.head, 5);
        assert_eq!(stream.snapshot, Some((3, "state at 3".into())));
        let events = storage.events_between("auditorio", 2, 4).expect("read");
        assert_eq!(events, vec![(3, "event 3".into()), (4, "event 4".into())]);
    }

    #[test]
    fn a_sequence_number_cannot_be_written_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::open(dir.path()).expect("open");
        create(&storage, "r", "e");
        storage.append_event("r", 1, "a").expect("first");
        assert!(storage.append_event("r", 1, "b").is_err());
        assert_eq!(storage.events_between("r", 0, 10).expect("read"), vec![(1, "a".into())]);
    }

    #[test]
    fn a_photo_and_its_event_are_recorded_together_and_only_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::open(dir.path()).expect("open");
        create(&storage, "r", "e");
        let photo = NewPhoto { id: "ab", name: "a.jpg", by: "Ana", uploader: None, bytes: 10 };
        let first = storage.insert_photo("r", &photo, 100, 1, |pos| format!("queued at {pos}"), 0).expect("insert");
        assert_eq!(first, Some((1, "queued at 1".into())));
        assert_eq!(storage.insert_photo("r", &photo, 100, 2, |_| unreachable!(), 0).expect("again"), None);
        let other = NewPhoto { id: "cd", ..photo };
        assert_eq!(storage.insert_photo("r", &other, 100, 2, |pos| format!("queued at {pos}"), 0).expect("second").map(|p| p.0), Some(2));
        assert_eq!(storage.photo_count("r").expect("count"), 2);
        assert_eq!(storage.events_between("r", 0, 9).expect("events").len(), 2);
        // A failed event insert (seq taken) leaves no photo row behind.
        let third = NewPhoto { id: "ef", ..other };
        assert!(storage.insert_photo("r", &third, 100, 2, |_| "dup seq".into(), 0).is_err());
        assert_eq!(storage.photo_count("r").expect("count"), 2);
        // The limit counts photos, and a removed photo frees its place.
        let fourth = NewPhoto { id: "gh", ..other };
        assert!(matches!(storage.insert_photo("r", &fourth, 2, 3, |_| "x".into(), 0), Err(StorageError::PhotoLimit(2))));
        storage.append_events("r", &[(3, "removed cd".into())], Some("cd"), Durability::Written).expect("remove");
        let placed = storage.insert_photo("r", &fourth, 2, 4, |pos| format!("queued at {pos}"), 0).expect("fits");
        assert_eq!(placed.map(|p| p.0), Some(3), "positions are never reused");
    }

    #[test]
    fn rooms_are_created_once_listed_archived_and_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::open(dir.path()).expect("open");
        assert!(matches!(storage.open_stream("nope"), Err(StorageError::NoSuchRoom(_))));
        create(&storage, "a", "e");
        create(&storage, "b", "e");
        assert_eq!(storage.rooms().expect("list").len(), 2);
        let row = storage.room("a").expect("read").expect("exists");
        assert!(!row.public);
        assert_eq!(row.owner_hash.as_deref(), Some("o"));
        let third = NewRoom { id: "c", name: "c", public: false, owner_hash: "o", join_hash: "j" };
        assert!(matches!(storage.create_room(&third, "e", 0, 2), Err(StorageError::RoomLimit(2))));
        storage.set_archived("a", Some(5)).expect("archive");
        assert_eq!(storage.room("a").expect("read").and_then(|r| r.archived_at), Some(5));
        assert!(storage.create_room(&third, "e", 0, 2).expect("archived rooms do not count"));
        assert_eq!(storage.unused_rooms(0).expect("unused"), vec!["a", "b", "c"]);
        storage.append_event("b", 1, "x").expect("append");
        assert_eq!(storage.unused_rooms(0).expect("unused"), vec!["a", "c"]);
        assert!(storage.delete_room("c").expect("delete"));
        assert!(storage.delete_room("b").expect("delete"));
        assert_eq!(storage.rooms().expect("list").len(), 1);
        assert!(storage.events_between("b", 0, 9).expect("read").is_empty());
    }

    #[test]
    fn written_and_synced_commits_both_land_and_a_reboot_rotates_epochs_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let storage = Storage::open_at_boot(dir.path(), "boot-1", "unused").expect("open");
            assert_eq!(storage.restart(), Restart::SameBoot);
            create(&storage, "r", "e1");
            storage.append_events("r", &[(1, "a".into())], None, Durability::Written).expect("written");
            storage.append_events("r", &[(2, "b".into())], None, Durability::Synced).expect("synced");
            storage.sync().expect("sync");
        }
        let storage = Storage::open_at_boot(dir.path(), "boot-1", "unused").expect("same boot");
        assert_eq!(storage.restart(), Restart::SameBoot);
        assert_eq!(storage.open_stream("r").expect("stream").epoch, "e1");
        drop(storage);
        let storage = Storage::open_at_boot(dir.path(), "boot-2", "e2").expect("new boot");
        assert_eq!(storage.restart(), Restart::AfterReboot);
        let stream = storage.open_stream("r").expect("stream");
        assert_eq!((stream.epoch.as_str(), stream.head), ("e2", 2));
        drop(storage);
        let storage = Storage::open_at_boot(dir.path(), "boot-2", "e3").expect("again");
        assert_eq!(storage.restart(), Restart::SameBoot);
        assert_eq!(storage.open_stream("r").expect("stream").epoch, "e2");
        // The connection is back on NORMAL after each synced commit.
        let mode: i64 = storage.conn().pragma_query_value(None, "synchronous", |row| row.get(0)).expect("pragma");
        assert_eq!(mode, 1);
    }

    #[test]
    fn a_newer_schema_is_refused_not_corrupted() {
        let dir = tempfile::tempdir().expect("tempdir");
        Storage::open(dir.path()).expect("open");
        {
            let conn = Connection::open(dir.path().join("vestige.sqlite3")).expect("raw");
            conn.pragma_update(None, "user_version", 99).expect("bump");
        }
        assert!(matches!(Storage::open(dir.path()), Err(StorageError::NewerSchema { found: 99, .. })));
    }
}
