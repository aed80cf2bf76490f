//! What one reader of a topic's ring gets in one piece: a [`Batch`] of waiting frames, a single
//! one as the topic's shared [`Bytes`] or several joined, up to [`BATCH_BYTES`], so a reader
//! that is behind costs one h2 DATA frame per batch rather than one per event.
//!
//! It only sizes and joins frames; it never reads the ring (the ring hands it the frames) and
//! knows nothing of subscribers or HTTP.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::compress::Parts;
use tokio::time::Instant;

/// Largest batch of waiting events handed over in one piece, bytes (a single larger event is
/// handed over alone). One h2 DATA frame's default maximum size (RFC 9113 §6.5.2).
pub const BATCH_BYTES: usize = 16_384;

/// Frames handed to one reader in one piece.
pub(super) struct Batch {
    /// Their frames.
    pub frames: Frames,
    /// For a reader of a coding: the frames with their shared parts in it, in order (`frames`
    /// is then empty).
    pub packed: Option<Packs>,
    /// Events among them, count: a frame that carries only the origin's new `retry:` is none.
    pub events: u64,
    /// When the first of them arrived from upstream.
    pub first_at: Instant,
    /// Frames still ahead of the batch for this reader, count.
    pub behind: u64,
}

/// A frame of the ring with its compressed parts, for a subscriber of a coding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    /// The encoded frame, the topic's shared one.
    pub frame: Bytes,
    /// Its parts, the topic's shared ones: the shared bytes in each coding in use when it was
    /// appended, and the frame compressed on its own once someone needed it (`None`: no
    /// coding was in use).
    pub parts: Option<Arc<Parts>>,
}

/// The frames handed to a subscriber of a coding in one piece, each with its part: one
/// without allocating (the usual live hand-off), several in a list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Packs {
    /// None: the subscriber reads no coding, or the frames came from elsewhere (a catch-up).
    #[default]
    None,
    /// A single frame.
    One(Packed),
    /// Several frames, in order.
    Many(Vec<Packed>),
}

impl Packs {
    /// The frames, in order.
    pub fn as_slice(&self) -> &[Packed] {
        match self {
            Self::None => &[],
            Self::One(packed) => std::slice::from_ref(packed),
            Self::Many(packed) => packed,
        }
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }
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
        let count = Self::batch_len(waiting.clone());
        let mut frames = waiting.take(count).cloned();
        let batch = match count {
            0 => return None,
            1 => Self::One(frames.next()?),
            _ => {
                let frames: Vec<_> = frames.collect();
                let bytes = frames.iter().map(Bytes::len).sum();
                Self::Many(frames, bytes)
            }
        };
        Some((batch, count))
    }

    /// How many of the leading frames of `waiting` fit one batch of at most [`BATCH_BYTES`]
    /// (at least one, unless nothing waits).
    pub fn batch_len<'a>(waiting: impl Iterator<Item = &'a Bytes>) -> usize {
        let (mut count, mut bytes) = (0, 0);
        for size in waiting.map(Bytes::len) {
            if count > 0 && bytes + size > BATCH_BYTES {
                break;
            }
            count += 1;
            bytes += size;
        }
        count
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
