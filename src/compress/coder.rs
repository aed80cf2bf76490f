//! One subscriber's compressed stream: the gzip header first (RFC 1952 §2.3), then runs of the
//! topic's shared parts and pieces of its own ([`super::own`]), then the end (a zstd frame's
//! last block, RFC 8878 §3.1.1.2; deflate's final block and gzip's CRC-32 and length, RFC 1951
//! §3.2.3, RFC 1952 §2.3.1).
//!
//! The rule that keeps the stream decodable: a shared part may follow only the shared part
//! before it in the same segment (its back-references are distances into what the client
//! decoded from that segment), or start a segment. Anything else (the subscriber joined or
//! resumed mid-segment, its stream had bytes of its own, a frame missed its part) is
//! compressed on its own until the next segment starts. It owns a few bytes of state per
//! subscriber and never a compressor.

use std::io;

use bytes::{Bytes, BytesMut};

use super::{own, Coding, Parts};

/// gzip's member header (RFC 1952 §2.3): ID1 ID2, CM = 8 (deflate), no flags, no time, no
/// extra flags, OS = 255 (unknown).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// deflate's final block, empty (RFC 1951 §3.2.3, §3.2.6): BFINAL = 1, BTYPE = 01 (fixed
/// Huffman codes), then the end-of-block code 256 (seven zero bits).
const DEFLATE_END: [u8; 2] = [0x03, 0x00];

/// A zstd block header ending a frame (RFC 8878 §3.1.1.2): Last_Block = 1, Block_Type = 0
/// (Raw_Block), Block_Size = 0. The relay's frames carry no checksum, so this ends one.
const ZSTD_FRAME_END: [u8; 3] = [0x01, 0x00, 0x00];

/// The state of one subscriber's compressed stream (about 40 bytes, boxed in the body of a
/// compressed stream only).
pub struct Coder {
    coding: Coding,
    /// The shared segment the stream is in step with: the last bytes it got are that segment's
    /// and nothing of its own came after them (`None`: on its own).
    segment: Option<u32>,
    /// zstd: the last bytes sent are in a shared frame that is still open.
    frame_open: bool,
    /// The stream's first bytes were sent (gzip: its header with them).
    started: bool,
    /// The stream's end was sent.
    finished: bool,
    /// gzip: the CRC-32 and length of everything the stream carried (RFC 1952 §2.3.1); zstd
    /// has none to keep.
    crc: crc32fast::Hasher,
}

/// Bytes of one poll of a compressed stream, as pieces to send in order: the first apart, so
/// the usual poll (one shared part) allocates nothing.
#[derive(Default)]
struct Pieces {
    first: Option<Bytes>,
    rest: Vec<Bytes>,
}

impl Pieces {
    fn push(&mut self, piece: Bytes) {
        match self.first {
            None => self.first = Some(piece),
            Some(_) => self.rest.push(piece),
        }
    }

    /// One buffer: the single piece itself (a shared part is not copied), else the pieces
    /// joined.
    fn into_bytes(self) -> Bytes {
        let Some(first) = self.first else {
            return Bytes::new();
        };
        if self.rest.is_empty() {
            return first;
        }
        let size = first.len() + self.rest.iter().map(Bytes::len).sum::<usize>();
        let mut joined = BytesMut::with_capacity(size);
        joined.extend_from_slice(&first);
        self.rest.iter().for_each(|p| joined.extend_from_slice(p));
        joined.freeze()
    }
}

/// What the shared bytes account for, per coding: how many bytes the subscriber got from its
/// own pieces and how many from the topic's shared parts, this poll.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Compressed bytes shared with the topic's other subscribers.
    pub shared: u64,
    /// Compressed bytes of this subscriber's own (pieces, headers, frame ends, trailer).
    pub own: u64,
}

impl Coder {
    /// A stream in `coding`, nothing sent yet.
    pub fn new(coding: Coding) -> Self {
        Self {
            coding,
            segment: None,
            frame_open: false,
            started: false,
            finished: false,
            crc: crc32fast::Hasher::new(),
        }
    }

    /// The stream's coding.
    pub fn coding(&self) -> Coding {
        self.coding
    }

    /// True when the stream follows the topic's shared bytes (it would send the next part of
    /// its segment as it is).
    pub fn is_shared(&self) -> bool {
        self.segment.is_some()
    }

    /// Bytes of the subscriber's own (the opening, a heartbeat, a gap signal, a replay, a
    /// `retry:`) compressed on their own; the stream leaves the shared bytes until the next
    /// segment starts.
    ///
    /// # Errors
    /// The compression library's (not expected).
    pub fn own(&mut self, plain: &[u8], sent: &mut Sent) -> io::Result<Bytes> {
        self.frames([(plain, None)].into_iter(), sent)
    }

    /// The topic's frames, each with its parts if it has any: shared parts as they are where
    /// the rule allows; otherwise a lone frame (the live hand-off of a subscriber waiting for
    /// the next boundary) as the topic's piece of it compressed on its own
    /// ([`Parts::alone`], made once for every such subscriber), and several (a reader behind)
    /// compressed together on their own, which keeps their history.
    ///
    /// # Errors
    /// The compression library's (not expected).
    pub fn frames<'a>(
        &mut self,
        frames: impl ExactSizeIterator<Item = (&'a [u8], Option<&'a Parts>)>,
        sent: &mut Sent,
    ) -> io::Result<Bytes> {
        let mut pieces = Pieces::default();
        let mut own_plain = OwnRun::default();
        let lone = frames.len() == 1;
        self.start(&mut pieces, sent);
        for (plain, parts) in frames {
            if self.coding == Coding::Gzip {
                self.crc.update(plain);
            }
            let part = parts.and_then(|p| p.get(self.coding));
            let joins = part.filter(|p| p.starts || self.segment == Some(p.segment));
            match (joins, parts.filter(|_| lone)) {
                (Some(part), _) => {
                    self.flush_own(&mut own_plain, &mut pieces, sent)?;
                    if part.starts {
                        self.close_frame(&mut pieces, sent);
                    }
                    sent.shared += part.bytes.len() as u64;
                    pieces.push(part.bytes.clone());
                    self.segment = Some(part.segment);
                    self.frame_open = self.coding == Coding::Zstd;
                }
                (None, Some(parts)) => {
                    let piece = parts.alone(self.coding, plain)?;
                    self.own_piece(piece, &mut pieces, sent);
                }
                (None, None) => own_plain.push(plain),
            }
        }
        self.flush_own(&mut own_plain, &mut pieces, sent)?;
        Ok(pieces.into_bytes())
    }

    /// The stream's end: the open zstd frame's last block; for gzip the final deflate block
    /// and the trailer (CRC-32 and length mod 2^32 of everything it carried, little-endian,
    /// RFC 1952 §2.3.1). Empty once sent.
    pub fn finish(&mut self, sent: &mut Sent) -> Bytes {
        if self.finished {
            return Bytes::new();
        }
        self.finished = true;
        let mut pieces = Pieces::default();
        self.start(&mut pieces, sent);
        self.close_frame(&mut pieces, sent);
        if self.coding == Coding::Gzip {
            let mut end = Vec::with_capacity(10);
            end.extend_from_slice(&DEFLATE_END);
            let crc = self.crc.clone();
            let length = crc.total_len() as u32;
            end.extend_from_slice(&crc.finalize().to_le_bytes());
            end.extend_from_slice(&length.to_le_bytes());
            sent.own += end.len() as u64;
            pieces.push(Bytes::from(end));
        }
        pieces.into_bytes()
    }

    /// The stream's cursor jumped (a lag skip): the next shared part may not follow the last
    /// one sent, so the stream is on its own until a segment starts (an open zstd frame is
    /// ended before whatever comes next).
    pub fn leave_shared(&mut self) {
        self.segment = None;
    }

    /// True once the end was sent.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The gzip header, before the stream's first bytes.
    fn start(&mut self, pieces: &mut Pieces, sent: &mut Sent) {
        if !self.started {
            self.started = true;
            if self.coding == Coding::Gzip {
                sent.own += GZIP_HEADER.len() as u64;
                pieces.push(Bytes::from_static(&GZIP_HEADER));
            }
        }
    }

    /// Ends an open shared zstd frame (nothing for deflate, whose flushed parts end on a byte
    /// boundary between blocks).
    fn close_frame(&mut self, pieces: &mut Pieces, sent: &mut Sent) {
        if std::mem::take(&mut self.frame_open) {
            sent.own += ZSTD_FRAME_END.len() as u64;
            pieces.push(Bytes::from_static(&ZSTD_FRAME_END));
        }
    }

    /// Compresses the frames gathered for a piece of the subscriber's own, if any: the
    /// stream leaves the shared bytes.
    fn flush_own(
        &mut self,
        plain: &mut OwnRun<'_>,
        pieces: &mut Pieces,
        sent: &mut Sent,
    ) -> io::Result<()> {
        let bytes = match std::mem::take(plain) {
            OwnRun::None => return Ok(()),
            OwnRun::One(frame) => own::piece(self.coding, frame)?,
            OwnRun::Many(frames) => own::piece(self.coding, &frames)?,
        };
        self.own_piece(bytes, pieces, sent);
        Ok(())
    }

    /// Sends a piece compressed on its own: the open shared zstd frame ends first, and the
    /// stream leaves the shared bytes.
    fn own_piece(&mut self, piece: Bytes, pieces: &mut Pieces, sent: &mut Sent) {
        self.close_frame(pieces, sent);
        self.segment = None;
        sent.own += piece.len() as u64;
        pieces.push(piece);
    }
}

/// Frames gathered for one piece of a subscriber's own: a single one is compressed where it
/// is (a 30 KB event is not copied first), several are joined.
#[derive(Default)]
enum OwnRun<'a> {
    #[default]
    None,
    One(&'a [u8]),
    Many(Vec<u8>),
}

impl<'a> OwnRun<'a> {
    fn push(&mut self, frame: &'a [u8]) {
        *self = match std::mem::take(self) {
            OwnRun::None => OwnRun::One(frame),
            OwnRun::One(first) => OwnRun::Many([first, frame].concat()),
            OwnRun::Many(mut joined) => {
                joined.extend_from_slice(frame);
                OwnRun::Many(joined)
            }
        };
    }
}
