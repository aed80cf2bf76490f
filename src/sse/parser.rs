//! The incremental parser: bytes in any split → [`Item`]s, by the WHATWG rules (HTML Living
//! Standard §9.2.5–§9.2.6). It never does I/O and never holds more than `max_event_bytes` of
//! one block or one unterminated line.

use super::{Event, Item, Malformed};

/// The UTF-8 byte order mark; one of these is stripped from the very start of a stream.
const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// Where the parser is in matching the optional leading byte order mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BomState {
    /// This many leading bytes of the stream matched the BOM so far (0..=2).
    Matching(u8),
    /// The BOM was stripped, or the stream did not start with one.
    Done,
}

/// The field buffers of the block being read (WHATWG "data buffer", "event type buffer").
#[derive(Debug, Default)]
struct Block {
    data: String,
    event_type: String,
    /// This block had its own valid `id` field.
    has_id: bool,
    /// Raw bytes of the block's non-comment lines, terminators excluded (saturating).
    bytes: usize,
    /// The block went over the limit: data and type are dropped, id and retry still apply.
    oversized: bool,
}

impl Block {
    fn reset(&mut self) {
        self.data.clear();
        self.event_type.clear();
        self.has_id = false;
        self.bytes = 0;
        self.oversized = false;
    }
}

/// An incremental, chunk-split-agnostic SSE parser for one upstream at a time.
///
/// Memory is bounded by `max_event_bytes`: one line buffer of at most that many bytes plus the
/// block's decoded data (at most three times that, as each invalid byte may become U+FFFD).
#[derive(Debug)]
pub struct Parser {
    max_event_bytes: usize,
    bom: BomState,
    /// The previous chunk ended in CR, so a leading LF in the next chunk ends no new line.
    pending_cr: bool,
    /// Bytes of the current line, up to `max_event_bytes`; comment lines are not kept.
    pub(super) line: Vec<u8>,
    /// Raw length of the current line so far (saturating), including bytes not kept.
    line_len: usize,
    /// The current line starts with ':' and will be ignored.
    line_is_comment: bool,
    block: Block,
    /// WHATWG "last event ID buffer"; `None` until an id field is seen.
    id_buffer: Option<String>,
    /// WHATWG "last event ID string" as of the last dispatch.
    last_event_id: Option<String>,
}

impl Parser {
    /// Creates a parser. `max_event_bytes` is the limit on one block's size in bytes: the sum of
    /// the raw lengths of the block's lines, excluding line terminators and comment lines. It
    /// also bounds one unterminated line, which is never buffered beyond the limit.
    pub fn new(max_event_bytes: usize) -> Self {
        Parser {
            max_event_bytes,
            bom: BomState::Matching(0),
            pending_cr: false,
            line: Vec::new(),
            line_len: 0,
            line_is_comment: false,
            block: Block::default(),
            id_buffer: None,
            last_event_id: None,
        }
    }

    /// Feeds one chunk of raw bytes, split anywhere (mid-UTF-8 sequence, mid-CRLF, mid-BOM);
    /// items dispatched by it are appended to `out` in stream order. Lines end at CRLF, lone
    /// LF or lone CR (§9.2.5).
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Item>) {
        let mut rest = self.strip_bom(chunk, out);
        if self.pending_cr && !rest.is_empty() {
            self.pending_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(i) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.append_to_line(&rest[..i]);
            self.end_line(out);
            let mut next = i + 1;
            if rest[i] == b'\r' {
                match rest.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.pending_cr = true,
                }
            }
            rest = &rest[next..];
        }
        self.append_to_line(rest);
    }

    /// The stream ended: discards any unterminated line and any undispatched block (§9.2.6: an
    /// incomplete event is not dispatched). The parser can then be reused for a new connection:
    /// line, block and BOM state are reset, but the last event ID is kept, and the id buffer
    /// goes back to it so an id field of the discarded block never leaks into a later dispatch.
    /// Returns true when something was discarded (the stream was cut mid-event).
    pub fn finish(&mut self) -> bool {
        let truncated = (self.line_len > 0 && !self.line_is_comment)
            || self.block.bytes > 0
            || self.block.has_id
            || self.block.oversized;
        self.bom = BomState::Matching(0);
        self.pending_cr = false;
        self.clear_line();
        self.block.reset();
        self.id_buffer.clone_from(&self.last_event_id);
        truncated
    }

    /// The "last event ID string" as of the last dispatch (set at dispatch step 1, so id-only
    /// blocks move it; an id field in an undispatched block does not). `None` if no dispatched
    /// block ever had an id field; `Some("")` after an id field with an empty value (which the
    /// spec defines as resetting it).
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// Strips one leading BOM, even when split across chunks, and returns the rest of `chunk`.
    /// If the stream's first bytes only partly matched, they are replayed as line content.
    fn strip_bom<'a>(&mut self, chunk: &'a [u8], out: &mut Vec<Item>) -> &'a [u8] {
        let BomState::Matching(mut matched) = self.bom else {
            return chunk;
        };
        let mut rest = chunk;
        while let Some((&b, tail)) = rest.split_first() {
            if b != BOM[usize::from(matched)] {
                self.bom = BomState::Done;
                // The replayed prefix holds no CR/LF, so it only extends the first line.
                self.feed(&BOM[..usize::from(matched)], out);
                return rest;
            }
            matched += 1;
            rest = tail;
            if usize::from(matched) == BOM.len() {
                self.bom = BomState::Done;
                return rest;
            }
        }
        self.bom = BomState::Matching(matched);
        rest
    }

    /// Adds raw bytes to the current line, keeping at most `max_event_bytes` of them.
    fn append_to_line(&mut self, bytes: &[u8]) {
        let Some(&first) = bytes.first() else {
            return;
        };
        if self.line_len == 0 {
            self.line_is_comment = first == b':';
        }
        self.line_len = self.line_len.saturating_add(bytes.len());
        if self.line_is_comment {
            return;
        }
        let room = self.max_event_bytes.saturating_sub(self.line.len());
        self.line.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn clear_line(&mut self) {
        self.line.clear();
        self.line_len = 0;
        self.line_is_comment = false;
    }

    /// Processes the completed current line (§9.2.6): blank → dispatch, ':' → comment,
    /// otherwise a field, subject to the size limit.
    fn end_line(&mut self, out: &mut Vec<Item>) {
        if self.line_len == 0 {
            self.dispatch(out);
            return;
        }
        if !self.line_is_comment {
            let block = &mut self.block;
            block.bytes = block.bytes.saturating_add(self.line_len);
            if block.bytes > self.max_event_bytes && !block.oversized {
                block.oversized = true;
                block.data.clear();
                block.event_type.clear();
            }
            if self.line_len <= self.max_event_bytes {
                let line = std::mem::take(&mut self.line);
                self.process_field(&line, out);
                self.line = line;
            }
        }
        self.clear_line();
    }

    /// Applies one field line. In an oversized block only `id` and `retry` still apply.
    fn process_field(&mut self, line: &[u8], out: &mut Vec<Item>) {
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        let known = matches!(name, b"event" | b"data" | b"id" | b"retry");
        if known && std::str::from_utf8(value).is_err() {
            out.push(Item::Malformed(Malformed::InvalidUtf8));
        }
        let block = &mut self.block;
        match name {
            b"event" if !block.oversized => {
                block.event_type.clear();
                block.event_type.push_str(&String::from_utf8_lossy(value));
            }
            b"data" if !block.oversized => {
                block.data.push_str(&String::from_utf8_lossy(value));
                block.data.push('\n');
            }
            b"id" if !value.contains(&0) => {
                let id = self.id_buffer.get_or_insert_with(String::new);
                id.clear();
                id.push_str(&String::from_utf8_lossy(value));
                block.has_id = true;
            }
            b"id" => out.push(Item::Malformed(Malformed::NulInId)),
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                let ms = value.iter().fold(0u64, |acc, &d| {
                    acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
                });
                out.push(Item::Retry(ms));
            }
            b"retry" => out.push(Item::Malformed(Malformed::BadRetry)),
            _ => {}
        }
    }

    /// Dispatches the block at a blank line (§9.2.6 "dispatch the event"), then resets it.
    fn dispatch(&mut self, out: &mut Vec<Item>) {
        self.last_event_id.clone_from(&self.id_buffer);
        let block = &mut self.block;
        let id = if block.has_id {
            self.id_buffer.clone()
        } else {
            None
        };
        if block.oversized {
            out.push(Item::Oversized { bytes: block.bytes });
        }
        if block.oversized || block.data.is_empty() {
            if id.is_some() {
                out.push(Item::Event(Event {
                    id,
                    event_type: None,
                    data: None,
                }));
            }
        } else {
            block.data.pop();
            let event_type = (!block.event_type.is_empty()).then(|| block.event_type.clone());
            out.push(Item::Event(Event {
                id,
                event_type,
                data: Some(block.data.clone()),
            }));
        }
        block.reset();
    }
}
