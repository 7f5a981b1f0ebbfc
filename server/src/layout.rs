//! Where a room's files live in the data directory. Room ids and photo ids are validated before
//! they get here (`RoomId`, 64 hex digits), so every path stays inside it.

use app::protocol::RoomId;
use std::path::{Path, PathBuf};

pub fn room_dir(data_dir: &Path, room: &RoomId) -> PathBuf {
    data_dir.join("rooms").join(room.as_str())
}

pub fn photo_path(data_dir: &Path, room: &RoomId, photo_id: &str) -> PathBuf {
    room_dir(data_dir, room).join("photos").join(photo_id)
}

/// The small copy of a photo that cards show (see `thumbnails`).
pub fn thumbnail_path(data_dir: &Path, room: &RoomId, photo_id: &str) -> PathBuf {
    room_dir(data_dir, room).join("thumbnails").join(format!("{photo_id}.jpg"))
}
