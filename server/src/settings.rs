//! Shared room settings: optimistic concurrency per field.
//!
//! Each field carries a revision. An update names the revision its author saw; the room's
//! stream lock orders updates, and one based on an older revision is not applied: its author
//! gets both values back and decides (keep mine, use theirs, or average). Nothing is
//! overwritten silently, and two people editing different fields never conflict.

use crate::event_log::{Decision, EventLog, EventLogError};
use app::protocol::{RoomEvent, RoomId, ServerMessage, SettingValue};

/// Applies `value` if the field is still at `base_revision`. Returns the conflict to send back
/// to the author when it is not; `None` when applied (everyone, the author included, then gets
/// the `setting_changed` event) or when the value was already in force.
pub fn update(
    events: &EventLog,
    room: &RoomId,
    value: SettingValue,
    base_revision: u64,
    by: &str,
) -> Result<Option<ServerMessage>, EventLogError> {
    let (_, conflict) = events.transact(room, |state| {
        let (current, revision, current_by) = state.settings.current(&value);
        if revision != base_revision {
            if current == value {
                // Someone made the same change first: nothing to decide.
                return Decision::nothing(None);
            }
            return Decision::nothing(Some(ServerMessage::SettingConflict {
                yours: value,
                theirs: current,
                theirs_by: current_by,
                revision,
            }));
        }
        if current == value {
            return Decision::nothing(None);
        }
        let event = RoomEvent::SettingChanged { setting: value, revision: revision + 1, by: by.to_owned() };
        Decision::append(vec![event], None)
    })?;
    Ok(conflict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{NewRoom, Storage};
    use std::sync::Arc;

    #[test]
    fn a_stale_update_gets_both_values_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = EventLog::new(Arc::new(Storage::open(dir.path()).expect("storage")));
        let new = NewRoom { id: "r", name: "r", public: true, owner_hash: "o", join_hash: "j" };
        log.create_room(&new).expect("create");
        let room = RoomId::parse("r").expect("id");
        // Ana and Ben both saw revision 0.
        assert_eq!(update(&log, &room, SettingValue::RefineEvery(5), 0, "Ana").expect("ana"), None);
        let conflict = update(&log, &room, SettingValue::RefineEvery(20), 0, "Ben").expect("ben");
        assert_eq!(
            conflict,
            Some(ServerMessage::SettingConflict {
                yours: SettingValue::RefineEvery(20),
                theirs: SettingValue::RefineEvery(5),
                theirs_by: Some("Ana".into()),
                revision: 1,
            })
        );
        let (_, state) = log.status(&room).expect("status");
        assert_eq!((state.settings.refine_every.value, state.settings.refine_every.revision), (5, 1));
        // Ben averages, based on what he now knows.
        let average = SettingValue::RefineEvery(20).average(&SettingValue::RefineEvery(5)).expect("number");
        assert_eq!(update(&log, &room, average, 1, "Ben").expect("ben again"), None);
        let (_, state) = log.status(&room).expect("status");
        assert_eq!(state.settings.refine_every.value, 13);
        assert_eq!(state.settings.refine_every.by.as_deref(), Some("Ben"));
        // Another field is independent of this one's revision.
        assert_eq!(update(&log, &room, SettingValue::MaxImageSide(2000), 0, "Ana").expect("other field"), None);
    }
}
