//! The encoder: one canonical frame per event, built once into a [`Bytes`] every subscriber
//! shares; `retry:` and comment frames for the downstream side.

use bytes::{BufMut, Bytes, BytesMut};
use std::fmt::Write as _;

use super::Event;

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
