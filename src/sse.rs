//! The Server-Sent Events wire format: an incremental parser for upstream bytes and an encoder
//! for downstream frames. This module owns the WHATWG rules (HTML Living Standard §9.2.5
//! "Parsing an event stream" and §9.2.6 "Interpreting an event stream"): every upstream byte is
//! parsed exactly once here, and every event is encoded exactly once into a [`Bytes`] that all
//! subscribers share. It must never do I/O, know about HTTP, or allocate without bound: one
//! block is capped at `max_event_bytes`, and so is one unterminated line.

use bytes::{BufMut, Bytes, BytesMut};
use std::fmt::Write as _;

/// The UTF-8 byte order mark; one of these is stripped from the very start of a stream.
const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// One dispatched block from the stream (WHATWG §9.2.6 "dispatch the event").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Value of the block's own `id:` field, if the block had one (valid: contains no U+0000).
    /// Passed through unchanged.
    pub id: Option<String>,
    /// Event type from `event:`; `None` when absent or empty (i.e. "message").
    pub event_type: Option<String>,
    /// Data lines joined by '\n' (trailing LF removed). `None` for an id-only block (no data
    /// field but an id field): such a block still moves the last event id and is forwarded so
    /// clients' `lastEventId` moves too.
    pub data: Option<String>,
}

/// One thing the parser produced, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A dispatched event (or id-only block, `data == None`).
    Event(Event),
    /// A valid `retry:` field (all ASCII digits), in milliseconds, emitted when the field line
    /// is processed. Values beyond `u64::MAX` saturate.
    Retry(u64),
    /// A block was dropped because it exceeded `max_event_bytes`; `bytes` is the block's size in
    /// bytes as counted by the limit (always at least the limit + 1). If the oversized block
    /// carried a valid id field, an [`Item::Event`] with only that id (data and event type
    /// `None`) follows right after this item so the last event id still moves.
    Oversized {
        /// Raw bytes of the dropped block's lines, terminators and comment lines excluded.
        bytes: usize,
    },
    /// A defect the parsing rules tolerate (WHATWG parsing never fails), reported for metrics
    /// when its field line is processed; parsing goes on as the rules say.
    Malformed(Malformed),
}

/// What was wrong with a field line (see [`Item::Malformed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// A field value that is not valid UTF-8: decoded with U+FFFD replacements (§9.2.6 step 1).
    InvalidUtf8,
    /// A `retry` value that is not all ASCII digits: ignored.
    BadRetry,
    /// An `id` value containing U+0000: ignored.
    NulInId,
}

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
    line: Vec<u8>,
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

/// Encodes an event as one canonical frame, once, for all subscribers: `id: X\n` if `id` is
/// `Some`, `event: T\n` if `event_type` is `Some`, one `data: line\n` per line of `data` (if
/// `Some`), then a terminating `\n`. An id-only event encodes as `id: X\n\n`.
///
/// Every value gets a ": " separator so a leading space survives the parser's strip of one.
/// `data` is split at LF, CRLF and lone CR alike. Events from [`Parser`] never carry CR or LF
/// in `id` or `event_type`; if a hand-built one does, each is replaced by a space so the value
/// cannot end the field early or inject another.
pub fn encode(event: &Event) -> Bytes {
    let id_len = event.id.as_ref().map_or(0, |id| id.len() + 5);
    let type_len = event.event_type.as_ref().map_or(0, |t| t.len() + 8);
    let data_len = event
        .data
        .as_ref()
        .map_or(0, |d| d.len() + 7 * (line_count(d) + 1));
    let mut buf = BytesMut::with_capacity(id_len + type_len + data_len + 1);
    if let Some(id) = &event.id {
        put_field(&mut buf, b"id: ", id);
    }
    if let Some(event_type) = &event.event_type {
        put_field(&mut buf, b"event: ", event_type);
    }
    if let Some(data) = &event.data {
        put_data_lines(&mut buf, data);
    }
    buf.put_u8(b'\n');
    buf.freeze()
}

/// Encodes a `retry: N\n\n` frame; `ms` is the reconnection time in milliseconds.
pub fn encode_retry(ms: u64) -> Bytes {
    let mut buf = BytesMut::with_capacity(29);
    // Writing into a BytesMut never fails.
    let _ = write!(buf, "retry: {ms}\n\n");
    buf.freeze()
}

/// Encodes a comment frame `: text\n\n` (ignored by clients; used for keep-alives). CR and LF
/// in `text` are replaced by spaces so the comment stays one line.
pub fn encode_comment(text: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(text.len() + 4);
    put_field(&mut buf, b": ", text);
    buf.put_u8(b'\n');
    buf.freeze()
}

/// Writes `prefix`, `value` with CR and LF replaced by spaces, and a terminating LF.
fn put_field(buf: &mut BytesMut, prefix: &[u8], value: &str) {
    buf.put_slice(prefix);
    let mut rest = value.as_bytes();
    while let Some(i) = rest.iter().position(|&b| b == b'\r' || b == b'\n') {
        buf.put_slice(&rest[..i]);
        buf.put_u8(b' ');
        rest = &rest[i + 1..];
    }
    buf.put_slice(rest);
    buf.put_u8(b'\n');
}

/// Writes one `data: ` field per line of `data`, splitting at LF, CRLF or lone CR.
fn put_data_lines(buf: &mut BytesMut, data: &str) {
    let mut rest = data.as_bytes();
    loop {
        buf.put_slice(b"data: ");
        let Some(i) = rest.iter().position(|&b| b == b'\r' || b == b'\n') else {
            buf.put_slice(rest);
            buf.put_u8(b'\n');
            return;
        };
        buf.put_slice(&rest[..i]);
        buf.put_u8(b'\n');
        let crlf = rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n');
        rest = &rest[i + 1 + usize::from(crlf)..];
    }
}

/// Upper bound on the number of line breaks in `data`, for capacity planning.
fn line_count(data: &str) -> usize {
    data.bytes().filter(|&b| b == b'\n' || b == b'\r').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_chunks(max: usize, chunks: &[&[u8]]) -> (Vec<Item>, Parser) {
        let mut parser = Parser::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut out);
        }
        (out, parser)
    }

    fn parse(input: &str) -> Vec<Item> {
        parse_chunks(1 << 20, &[input.as_bytes()]).0
    }

    fn data(d: &str) -> Item {
        event(None, None, Some(d))
    }

    fn event(id: Option<&str>, event_type: Option<&str>, data: Option<&str>) -> Item {
        Item::Event(Event {
            id: id.map(str::to_owned),
            event_type: event_type.map(str::to_owned),
            data: data.map(str::to_owned),
        })
    }

    #[test]
    fn spec_stock_example_joins_data_lines() {
        assert_eq!(
            parse("data: YHOO\ndata: +2\ndata: 10\n\n"),
            [data("YHOO\n+2\n10")]
        );
    }

    #[test]
    fn spec_four_block_example() {
        let input = ": test stream\n\ndata: first event\nid: 1\n\n\
                     data:second event\nid\n\ndata:  third event\n";
        let (items, mut parser) = parse_chunks(1 << 20, &[input.as_bytes()]);
        assert_eq!(
            items,
            [
                event(Some("1"), None, Some("first event")),
                event(Some(""), None, Some("second event")),
            ]
        );
        assert_eq!(parser.last_event_id(), Some(""));
        parser.finish();
        assert_eq!(parser.last_event_id(), Some(""));
        // With the final blank line the third event keeps both leading spaces but one.
        assert_eq!(parse("data:  third event\n\n"), [data(" third event")]);
    }

    #[test]
    fn spec_two_block_example_data_colon_forms() {
        assert_eq!(
            parse("data\n\ndata\ndata\n\ndata:\n"),
            [data(""), data("\n")]
        );
        assert_eq!(
            parse("data:test\n\ndata: test\n\n"),
            [data("test"), data("test")]
        );
    }

    #[test]
    fn one_leading_bom_is_stripped_even_split() {
        let (items, _) = parse_chunks(64, &[b"\xEF", b"\xBB", b"\xBFdata: a\n\n"]);
        assert_eq!(items, [data("a")]);
        // A second BOM is content: it becomes part of the field name, an unknown field.
        let (items, _) = parse_chunks(64, &[b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: b\n\n"]);
        assert_eq!(items, [data("b")]);
    }

    #[test]
    fn partial_bom_is_replayed_as_content() {
        let (items, _) = parse_chunks(64, &[b"\xEF\xBB", b"data: a\n\n"]);
        assert_eq!(items, []);
        let (items, _) = parse_chunks(64, &[b"data: \xEF\xBB\n\n"]);
        let bad = Item::Malformed(Malformed::InvalidUtf8);
        assert_eq!(items, [bad, data("\u{FFFD}")]);
    }

    #[test]
    fn cr_lf_and_crlf_all_end_lines() {
        assert_eq!(
            parse("data: a\rdata: b\r\n\rdata: c\n\r\n"),
            [data("a\nb"), data("c")]
        );
    }

    #[test]
    fn crlf_split_across_chunks_is_one_line_end() {
        let (items, _) = parse_chunks(64, &[b"data: a\r", b"\ndata: b\r", b"", b"\n\r", b"\n"]);
        assert_eq!(items, [data("a\nb")]);
    }

    #[test]
    fn invalid_utf8_split_mid_sequence_decodes_lossily() {
        let (items, _) = parse_chunks(64, &[b"data: \xE2\x82", b"\xAC \xFF\n\n"]);
        let bad = Item::Malformed(Malformed::InvalidUtf8);
        assert_eq!(items, [bad, data("\u{20AC} \u{FFFD}")]);
    }

    #[test]
    fn id_with_nul_is_ignored() {
        let (items, parser) = parse_chunks(64, &[b"id: 7\n\nid: a\0b\ndata: x\n\n"]);
        let bad = Item::Malformed(Malformed::NulInId);
        assert_eq!(items, [event(Some("7"), None, None), bad, data("x")]);
        assert_eq!(parser.last_event_id(), Some("7"));
    }

    #[test]
    fn retry_must_be_all_digits() {
        assert_eq!(
            parse("retry: 1500\nretry: 15x\nretry:\nretry: -1\nretry: 99999999999999999999999\n"),
            [
                Item::Retry(1500),
                Item::Malformed(Malformed::BadRetry),
                Item::Malformed(Malformed::BadRetry),
                Item::Malformed(Malformed::BadRetry),
                Item::Retry(u64::MAX)
            ]
        );
    }

    #[test]
    fn finish_reports_whether_an_event_was_cut() {
        let mut parser = Parser::new(64);
        let mut out = Vec::new();
        parser.feed(b"data: a\n\n: comment", &mut out);
        assert!(!parser.finish(), "a clean end (a cut comment is no event)");
        parser.feed(b"data: a\n\ndata: b", &mut out);
        assert!(parser.finish(), "cut mid-line");
        parser.feed(b"id: 3\ndata: b\n", &mut out);
        assert!(parser.finish(), "cut before the blank line");
    }

    #[test]
    fn id_only_block_moves_last_event_id_and_is_forwarded() {
        let (items, parser) = parse_chunks(64, &[b"id: 42\nevent: ignored\n\n"]);
        assert_eq!(items, [event(Some("42"), None, None)]);
        assert_eq!(parser.last_event_id(), Some("42"));
    }

    #[test]
    fn later_blocks_without_id_keep_last_event_id_but_report_none() {
        let (items, parser) = parse_chunks(64, &[b"id: 1\ndata: a\n\ndata: b\n\n"]);
        assert_eq!(items, [event(Some("1"), None, Some("a")), data("b")]);
        assert_eq!(parser.last_event_id(), Some("1"));
    }

    #[test]
    fn unterminated_block_is_discarded_by_finish() {
        let (items, mut parser) = parse_chunks(64, &[b"id: 1\n\nid: 2\ndata: half\n"]);
        assert_eq!(items, [event(Some("1"), None, None)]);
        parser.finish();
        assert_eq!(parser.last_event_id(), Some("1"));
        // A new connection: BOM allowed again, the discarded id does not leak into dispatch.
        let mut out = Vec::new();
        parser.feed(b"\xEF\xBB\xBFdata: next\n\n", &mut out);
        assert_eq!(out, [data("next")]);
        assert_eq!(parser.last_event_id(), Some("1"));
    }

    #[test]
    fn finish_drops_unterminated_line_and_pending_cr() {
        let mut parser = Parser::new(64);
        let mut out = Vec::new();
        parser.feed(b"data: a\r", &mut out);
        parser.finish();
        parser.feed(b"\ndata: b\n\n", &mut out);
        assert_eq!(out, [data("b")]);
    }

    #[test]
    fn empty_data_field_gives_empty_string() {
        assert_eq!(parse("data:\n\n"), [data("")]);
    }

    #[test]
    fn empty_event_field_means_message() {
        assert_eq!(
            parse("event:\ndata: a\n\nevent: tick\ndata: b\n\n"),
            [data("a"), event(None, Some("tick"), Some("b"))]
        );
    }

    #[test]
    fn field_without_colon_has_empty_value() {
        assert_eq!(
            parse("data\nevent\nunknown\nid\n\n"),
            [event(Some(""), None, Some(""))]
        );
    }

    #[test]
    fn comments_and_unknown_fields_are_ignored() {
        assert_eq!(
            parse(": keep-alive\nfoo: bar\nDATA: no\ndata : no\ndata: yes\n\n"),
            [data("yes")]
        );
    }

    #[test]
    fn oversized_block_is_dropped_and_stream_continues() {
        let big = format!("id: 9\ndata: {}\nretry: 5\n\ndata: ok\n\n", "x".repeat(40));
        let (items, parser) = parse_chunks(32, &[big.as_bytes()]);
        assert_eq!(
            items,
            [
                Item::Retry(5),
                Item::Oversized { bytes: 5 + 46 + 8 },
                event(Some("9"), None, None),
                data("ok"),
            ]
        );
        assert_eq!(parser.last_event_id(), Some("9"));
    }

    #[test]
    fn oversized_block_without_id_emits_only_oversized() {
        let input = "data: 0123456789\ndata: 0123456789\n\n";
        assert_eq!(
            parse_chunks(20, &[input.as_bytes()]).0,
            [Item::Oversized { bytes: 32 }]
        );
    }

    #[test]
    fn oversized_unterminated_line_is_bounded() {
        let mut parser = Parser::new(16);
        let mut out = Vec::new();
        parser.feed(b"data: ", &mut out);
        for _ in 0..1000 {
            parser.feed(&[b'y'; 1024], &mut out);
        }
        assert!(parser.line.capacity() <= 1024 + 16);
        assert_eq!(parser.line.len(), 16);
        parser.feed(b"\n\ndata: after\n\n", &mut out);
        assert_eq!(
            out,
            [
                Item::Oversized {
                    bytes: 6 + 1000 * 1024
                },
                data("after"),
            ]
        );
    }

    #[test]
    fn long_comments_do_not_count_toward_the_limit() {
        let input = format!(":{}\n: ping\ndata: ok\n\n", "c".repeat(100));
        assert_eq!(parse_chunks(16, &[input.as_bytes()]).0, [data("ok")]);
    }

    #[test]
    fn encode_writes_canonical_frame() {
        let e = Event {
            id: Some("7".into()),
            event_type: Some("tick".into()),
            data: Some("a\n\n b".into()),
        };
        assert_eq!(
            &encode(&e)[..],
            b"id: 7\nevent: tick\ndata: a\ndata: \ndata:  b\n\n"
        );
        let (items, _) = parse_chunks(1024, &[&encode(&e)]);
        assert_eq!(items, [Item::Event(e)]);
    }

    #[test]
    fn encode_id_only_event() {
        let e = Event {
            id: Some("5".into()),
            event_type: None,
            data: None,
        };
        assert_eq!(&encode(&e)[..], b"id: 5\n\n");
    }

    #[test]
    fn encode_splits_cr_in_data_and_sanitises_id() {
        let e = Event {
            id: Some("a\nb".into()),
            event_type: None,
            data: Some("x\r\ny\rz".into()),
        };
        assert_eq!(&encode(&e)[..], b"id: a b\ndata: x\ndata: y\ndata: z\n\n");
    }

    #[test]
    fn encode_retry_frame() {
        assert_eq!(&encode_retry(3000)[..], b"retry: 3000\n\n");
        assert_eq!(
            parse("retry: 18446744073709551615\n"),
            [Item::Retry(u64::MAX)]
        );
    }

    #[test]
    fn encode_comment_sanitises_cr_lf() {
        assert_eq!(&encode_comment("a\r\nb\nc")[..], b": a  b c\n\n");
        assert_eq!(
            parse(std::str::from_utf8(&encode_comment("x\ny")).unwrap()),
            []
        );
    }
}
