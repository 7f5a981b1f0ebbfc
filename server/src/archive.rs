//! A room's life when nobody is asking: idle rooms are archived (kept, unloaded) and come back
//! when opened; rooms that were never used expire, so their names are free again; and the one
//! way a room's data is removed.

use crate::state::{AppState, Shared};
use crate::storage::now_unix;
use app::protocol::RoomId;
use std::time::Duration;
use tracing::{info, warn};

/// Archives rooms nobody has used for `idle`: they leave memory and are flagged in storage,
/// with every photo, event and model kept. Opening one restores it.
pub fn archive_idle(state: &AppState, idle: Duration) -> usize {
    let shared = &state.inner;
    let cutoff = now_unix() - idle.as_secs() as i64;
    let Ok(rows) = shared.events.storage().rooms() else { return 0 };
    let mut archived = 0;
    for row in rows.into_iter().filter(|r| r.archived_at.is_none() && r.last_active <= cutoff) {
        let Ok(room) = RoomId::parse(&row.id) else { continue };
        if shared.events.connections(&room) > 0 {
            continue;
        }
        if shared.events.storage().set_archived(&row.id, Some(now_unix())).is_ok() {
            shared.pipeline.forget(&room);
            shared.events.unload(&room);
            info!(room = %room, "idle room archived");
            archived += 1;
        }
    }
    archived
}

/// Deletes rooms created more than `after` ago that never received a photo, a note or a setting
/// and have nobody in them. Returns how many.
pub fn expire_unused(state: &AppState, after: Duration) -> usize {
    let shared = &state.inner;
    let cutoff = now_unix() - after.as_secs() as i64;
    let Ok(ids) = shared.events.storage().unused_rooms(cutoff) else { return 0 };
    let mut expired = 0;
    for id in ids {
        let Ok(room) = RoomId::parse(&id) else { continue };
        if shared.events.connections(&room) > 0 {
            continue;
        }
        match remove(shared, &room) {
            Ok(()) => {
                info!(room = %room, "unused room expired; its name is free again");
                expired += 1;
            }
            Err(err) => warn!(room = %room, %err, "could not expire an unused room"),
        }
    }
    expired
}

/// Brings an archived room back: it is flagged active and its waiting photos continue.
pub async fn restore(state: &AppState, room: &RoomId) {
    let storage = state.inner.events.storage().clone();
    let pipeline = state.inner.pipeline.clone();
    let id = room.clone();
    let restored = tokio::task::spawn_blocking(move || {
        storage.set_archived(id.as_str(), None)?;
        pipeline.recover().map(|_| ())
    })
    .await;
    match restored {
        Ok(Ok(())) => info!(room = %room, "archived room restored"),
        _ => warn!(room = %room, "could not restore an archived room"),
    }
}

/// Removes a room: its record, stream and photo rows (synced), then its files. Members are
/// disconnected with "room closed".
pub fn remove(shared: &Shared, room: &RoomId) -> Result<(), crate::storage::StorageError> {
    shared.pipeline.forget(room);
    shared.events.storage().delete_room(room.as_str())?;
    shared.events.unload(room);
    let dir = shared.data_dir.join("rooms").join(room.as_str());
    if let Err(err) = std::fs::remove_dir_all(&dir)
        && err.kind() != std::io::ErrorKind::NotFound
    {
        warn!(%err, dir = %dir.display(), "could not delete a deleted room's files");
    }
    Ok(())
}
