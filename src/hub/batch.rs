//! What one reader of a topic's ring gets in one piece: a [`Batch`] of waiting frames, a single
//! one as the topic's shared [`Bytes`] or several joined, up to [`BATCH_BYTES`], so a reader
//! that is behind costs one h2 DATA frame per batch rather than one per event.
//!
//! It only sizes and joins frames; it never reads the ring (the ring hands it the frames) and
//! knows nothing of subscribers or HTTP.

use bytes::{Bytes, BytesMut};

use crate::compress::Part;
use tokio::time::Instant;

/// Largest batch of waiting events handed over in one piece, bytes (a single larger event is
/// handed over alone). One h2 DATA frame's default maximum size (RFC 9113 §6.5.2).
pub const BATCH_BYTES: usize = 16_384;

/// Frames handed to one reader in one piece.
pub(super) struct Batch {
    /// Their frames.
    pub frames: Frames,
    /// For a reader of a coding, each frame's shared part in it, in order (`None` in the list:
    /// the frame has none).
    pub parts: Option<Vec<Option<Part>>>,
    /// Events among them, count: a frame that carries only the origin's new `retry:` is none.
    pub events: u64,
    /// When the first of them arrived from upstream.
    pub first_at: Instant,
    /// Frames still ahead of the batch for this reader, count.
    pub behind: u64,
}

/// The frames of a batch: one frame, the topic's shared one, or several to join after
/// unlocking.
pub(super) enum Frames {
    /// A single frame, the topic's shared one.
    One(Bytes),
    /// Several frames and their total size, bytes.
    Many(Vec<Bytes>, usize),
}

impl Frames {
    /// The leading frames of `waiting` that fit one batch of at most [`BATCH_BYTES`] (at
    /// least one), and how many they are; `None` when nothing waits.
    pub fn first_batch<'a, I>(waiting: I) -> Option<(Self, usize)>
    where
        I: Iterator<Item = &'a Bytes> + Clone,
    {
        let (mut count, mut bytes) = (0, 0);
        for size in waiting.clone().map(Bytes::len) {
            if count > 0 && bytes + size > BATCH_BYTES {
                break;
            }
            count += 1;
            bytes += size;
        }
        let mut frames = waiting.take(count).cloned();
        let batch = match count {
            0 => return None,
            1 => Self::One(frames.next()?),
            _ => Self::Many(frames.collect(), bytes),
        };
        Some((batch, count))
    }

    /// The frames, each the topic's shared one (nothing is copied).
    pub fn into_vec(self) -> Vec<Bytes> {
        match self {
            Self::One(frame) => vec![frame],
            Self::Many(frames, _) => frames,
        }
    }

    /// The frames as one buffer: the shared frame itself, or the frames joined (one copy).
    pub fn into_bytes(self) -> Bytes {
        match self {
            Self::One(frame) => frame,
            Self::Many(frames, bytes) => {
                let mut joined = BytesMut::with_capacity(bytes);
                frames.iter().for_each(|f| joined.extend_from_slice(f));
                joined.freeze()
            }
        }
    }
}
