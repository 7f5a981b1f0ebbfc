//! The one error type of the crate: every fallible public call returns it.

use thiserror::Error;

/// Why a call failed. Input problems are separate variants so the server can tell a user what
/// to fix without parsing messages.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReconError {
    /// The settings break a documented bound.
    #[error("invalid settings: {0}")]
    InvalidSettings(String),
    /// The bytes are empty.
    #[error("the photo is empty (zero bytes)")]
    EmptyInput,
    /// The bytes are neither JPEG nor PNG.
    #[error("unsupported or unrecognised image format")]
    UnsupportedFormat,
    /// The header claims a size the decoder refuses before allocating anything.
    #[error("image of {width}x{height} pixels exceeds the limit of {max_pixels} pixels")]
    ImageTooLarge {
        /// Claimed width.
        width: u32,
        /// Claimed height.
        height: u32,
        /// Largest accepted pixel count.
        max_pixels: u64,
    },
    /// Too small to hold features worth matching.
    #[error("image of {width}x{height} pixels is below the minimum side of {min_side} pixels")]
    ImageTooSmall {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Smallest accepted side.
        min_side: u32,
    },
    /// The decoder failed part way (truncated or corrupt data).
    #[error("could not decode the photo: {0}")]
    Decode(String),
    /// A photo with this id was already added.
    #[error("a photo with id {0:?} was already added")]
    DuplicateId(String),
    /// The id is empty or too long.
    #[error("invalid photo id: {0}")]
    InvalidId(String),
    /// No photo with this id is known (or it is not in the state the call needs).
    #[error("unknown photo id {0:?}")]
    UnknownId(String),
    /// A registered photo cannot be removed; only pending ones can.
    #[error("photo {0:?} is registered and cannot be removed")]
    AlreadyRegistered(String),
    /// The caller cancelled; the model is unchanged.
    #[error("cancelled")]
    Cancelled,
    /// Reading or writing a file failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A saved state could not be read back.
    #[error("saved state is not usable: {0}")]
    CorruptState(String),
    /// A saved state was written by an incompatible version of this crate.
    #[error("saved state has version {found}, this build reads version {expected}")]
    StateVersion {
        /// Version in the file.
        found: u32,
        /// Version this build writes.
        expected: u32,
    },
    /// A ground-truth or intrinsics file is malformed.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// Which file or structure.
        what: String,
        /// What is wrong.
        detail: String,
    },
}

impl ReconError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
