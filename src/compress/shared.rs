//! A topic's compressors, one per coding in use: each event is compressed once, with the
//! history of the segment's earlier events, and flushed at once (deflate's sync flush, RFC
//! 1951 §3.2.4 stored block; zstd's flush, RFC 8878 §3.1.1.2 block end), so its bytes decode
//! the moment they arrive and every subscriber of that coding sends the same [`Part`]. At a
//! segment boundary the history is dropped (deflate: the raw compressor reset, so nothing after
//! refers to anything before; zstd: a new frame), which is where a subscriber that was on its
//! own may join.
//!
//! It holds no compressor for a coding no subscriber uses, and knows nothing of subscribers
//! beyond their count per coding; the ring calls it with each frame it appends.

use std::io;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use flate2::{Compress, Compression};
use tokio::time::Instant;
use zstd::stream::raw::{Encoder, Operation};

use super::flush::{configure_zstd, deflate_flushed, zstd_flushed};
use super::{own, Coding, CompressionSettings, SegmentRule};

/// One event's bytes in one coding, as the topic's shared compressor made them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The compressed bytes, shared by every subscriber of the coding.
    pub bytes: Bytes,
    /// The segment they belong to (numbered per topic and coding, never reused).
    pub segment: u32,
    /// They start their segment: they refer to nothing before them (deflate), they open a new
    /// zstd frame (zstd).
    pub starts: bool,
}

/// One event's shared bytes in every coding in use when it was appended, and the event
/// compressed on its own in each coding, made the first time a subscriber that is not in step
/// needs it and kept for the next (a crowd that joins at once waits for the same boundary and
/// would otherwise compress the same frames one by one, each its own copy).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parts {
    shared: [Option<Part>; 2],
    alone: [OnceLock<Bytes>; 2],
}

impl Parts {
    /// The event's shared bytes in `coding`, if that coding was in use.
    pub fn get(&self, coding: Coding) -> Option<&Part> {
        self.shared[coding.index()].as_ref()
    }

    /// Their shared bytes, all codings together (what the ring accounts; the pieces made on
    /// their own are not counted).
    pub fn len(&self) -> usize {
        self.shared.iter().flatten().map(|p| p.bytes.len()).sum()
    }

    /// True when no coding was in use.
    pub fn is_empty(&self) -> bool {
        self.shared.iter().all(Option::is_none)
    }

    /// `plain` (this event's frame) compressed on its own in `coding` ([`super::own`]): a
    /// standalone piece that may follow anything. Made once, by the first caller, and shared
    /// with every later one (two callers at the same moment may both make it; the bytes are the
    /// same and one is kept).
    ///
    /// # Errors
    /// The compression library's (not expected).
    pub fn alone(&self, coding: Coding, plain: &[u8]) -> io::Result<Bytes> {
        let cell = &self.alone[coding.index()];
        if let Some(piece) = cell.get() {
            return Ok(piece.clone());
        }
        let piece = own::piece(coding, plain)?;
        Ok(cell.get_or_init(|| piece).clone())
    }
}

/// A topic's shared compressors: one per coding while any subscriber uses it.
pub struct Compressors {
    settings: CompressionSettings,
    slots: [Slot; 2],
}

/// After a join, the segment ends once it holds this many events at most, count: a joiner
/// compresses at most that many events on its own (each at level 1, standalone) before it
/// shares the topic's bytes.
pub(super) const JOIN_EVENTS: u32 = 64;

/// One coding's subscribers, count, its compressor while they are any, and its segment
/// numbers (kept across compressors, so a segment number is never reused in a topic).
#[derive(Default)]
struct Slot {
    users: u32,
    compressor: Option<SharedCompressor>,
    /// The next segment's number.
    next_segment: u32,
    /// The next part starts a segment (a heartbeat tick asked for a boundary).
    cut: bool,
    /// A subscriber joined since the segment started: it compresses on its own until the
    /// next boundary, which therefore comes early ([`SharedCompressor::is_ripe`]: a quarter of
    /// any bound, at most [`JOIN_EVENTS`] events), so joiners wait a few events and frequent
    /// joins still leave segments long enough to compress well.
    joined: bool,
}

/// One coding's shared compressor, within its current segment.
struct SharedCompressor {
    engine: Engine,
    segment: u32,
    events: u32,
    bytes: usize,
    started_at: Instant,
}

/// The compressor itself.
enum Engine {
    /// Raw deflate (no zlib header): the gzip member's header and trailer are each
    /// subscriber's own (see [`super::Coder`]).
    Deflate(Compress),
    /// A zstd context; boxed as its size is the library's.
    Zstd(Box<Encoder<'static>>),
}

impl Compressors {
    /// No compressor yet; they are made as subscribers of a coding come.
    pub fn new(settings: CompressionSettings) -> Self {
        Self {
            settings,
            slots: Default::default(),
        }
    }

    /// A subscriber of `coding` came: the coding's compressor starts (at the next event, with a
    /// new segment) if it was not running.
    pub fn join(&mut self, coding: Coding) {
        let slot = &mut self.slots[coding.index()];
        slot.users += 1;
        slot.joined = true;
    }

    /// A subscriber of `coding` left: with the last one the coding's compressor is dropped.
    pub fn leave(&mut self, coding: Coding) {
        let slot = &mut self.slots[coding.index()];
        slot.users = slot.users.saturating_sub(1);
        if slot.users == 0 {
            slot.compressor = None;
        }
    }

    /// True when any coding has subscribers.
    pub fn in_use(&self) -> bool {
        self.slots.iter().any(|s| s.users > 0)
    }

    /// The next part of every coding in use starts a new segment: after a heartbeat tick, so
    /// a subscriber that sent a heartbeat of its own meanwhile joins the shared bytes again at
    /// the next event.
    pub fn cut(&mut self) {
        for slot in &mut self.slots {
            slot.cut = slot.compressor.is_some();
        }
    }

    /// Compresses `frame` (the next frame of the topic's stream) in every coding in use;
    /// `None` when none is. A coding whose compressor fails is left out of this frame and
    /// starts a new segment at the next (its subscribers get this frame compressed on their
    /// own), and the failure is returned with it.
    pub fn pack(&mut self, frame: &[u8], now: Instant) -> (Option<Arc<Parts>>, Option<io::Error>) {
        if !self.in_use() {
            return (None, None);
        }
        let mut parts = Parts::default();
        let mut failure = None;
        for coding in Coding::ALL {
            let slot = &mut self.slots[coding.index()];
            if slot.users == 0 {
                continue;
            }
            match slot.pack(coding, frame, now, &self.settings) {
                Ok(part) => parts.shared[coding.index()] = Some(part),
                Err(error) => {
                    slot.compressor = None;
                    failure = Some(error);
                }
            }
        }
        let parts = (!parts.is_empty()).then(|| Arc::new(parts));
        (parts, failure)
    }
}

impl Slot {
    /// Compresses `frame` with this coding's compressor, starting a segment (and the
    /// compressor, if none runs) when the rule or a cut says so.
    fn pack(
        &mut self,
        coding: Coding,
        frame: &[u8],
        now: Instant,
        settings: &CompressionSettings,
    ) -> io::Result<Part> {
        let due = self.cut
            || self.compressor.as_ref().is_none_or(|c| {
                c.is_full(&settings.segment, now)
                    || (self.joined && c.is_ripe(&settings.segment, now))
            });
        if due {
            let segment = self.next_segment;
            self.next_segment = self.next_segment.wrapping_add(1);
            self.cut = false;
            self.joined = false;
            match &mut self.compressor {
                Some(compressor) => compressor.restart(segment, now)?,
                None => {
                    self.compressor = Some(SharedCompressor::new(coding, settings, segment, now)?)
                }
            }
        }
        let Some(compressor) = self.compressor.as_mut() else {
            return Err(io::Error::other("no compressor"));
        };
        let starts = compressor.events == 0;
        let bytes = compressor.compress(frame)?;
        Ok(Part {
            bytes,
            segment: compressor.segment,
            starts,
        })
    }
}

impl SharedCompressor {
    fn new(
        coding: Coding,
        settings: &CompressionSettings,
        segment: u32,
        now: Instant,
    ) -> io::Result<Self> {
        let engine = match coding {
            Coding::Gzip => {
                Engine::Deflate(Compress::new(Compression::new(settings.gzip_level), false))
            }
            Coding::Zstd => {
                let mut encoder = Encoder::new(settings.zstd_level)?;
                configure_zstd(&mut encoder, settings.segment.bytes)?;
                Engine::Zstd(Box::new(encoder))
            }
        };
        Ok(Self {
            engine,
            segment,
            events: 0,
            bytes: 0,
            started_at: now,
        })
    }

    /// True when the segment reached a bound of `rule`.
    fn is_full(&self, rule: &SegmentRule, now: Instant) -> bool {
        self.events >= rule.events
            || self.bytes >= rule.bytes
            || now.saturating_duration_since(self.started_at) >= rule.duration
    }

    /// True when the segment may end early for a subscriber that joined it: it reached a
    /// quarter of a bound of `rule` (events at most [`JOIN_EVENTS`]). A quarter keeps the
    /// history that gives the ratio when joins come often; the bytes and time quarters bound
    /// a joiner's wait on large or slow events, the events cap on long segments of small ones.
    fn is_ripe(&self, rule: &SegmentRule, now: Instant) -> bool {
        self.events >= (rule.events / 4).clamp(1, JOIN_EVENTS)
            || self.bytes >= rule.bytes / 4
            || now.saturating_duration_since(self.started_at) >= rule.duration / 4
    }

    /// Drops the history: the next bytes start segment `segment`.
    fn restart(&mut self, segment: u32, now: Instant) -> io::Result<()> {
        match &mut self.engine {
            Engine::Deflate(compress) => compress.reset(),
            Engine::Zstd(encoder) => encoder.reinit()?,
        }
        self.segment = segment;
        self.events = 0;
        self.bytes = 0;
        self.started_at = now;
        Ok(())
    }

    /// `frame` compressed and flushed.
    fn compress(&mut self, frame: &[u8]) -> io::Result<Bytes> {
        let mut out = Vec::with_capacity(frame.len() / 2 + 64);
        match &mut self.engine {
            Engine::Deflate(compress) => deflate_flushed(compress, frame, &mut out)?,
            Engine::Zstd(encoder) => zstd_flushed(encoder, frame, &mut out)?,
        }
        self.events += 1;
        self.bytes += frame.len();
        Ok(Bytes::from(out))
    }
}
