//! The Server-Sent Events wire format: an incremental parser for upstream bytes
//! ([`parser`]) and an encoder for downstream frames ([`encode`]). This module owns the WHATWG
//! rules (HTML Living Standard §9.2.5 "Parsing an event stream" and §9.2.6 "Interpreting an
//! event stream"): every upstream byte is parsed exactly once here, and every event is encoded
//! exactly once into a [`bytes::Bytes`] that all subscribers share. It must never do I/O, know
//! about HTTP, or allocate without bound: one block is capped at `max_event_bytes`, and so is
//! one unterminated line.

mod encode;
mod parser;
#[cfg(test)]
mod tests;

pub use encode::{encode, encode_comment, encode_retry};
pub use parser::Parser;

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

impl crate::ops::metrics::Label for Malformed {
    const ALL: &'static [Self] = &[Self::InvalidUtf8, Self::BadRetry, Self::NulInId];

    fn label(self) -> &'static str {
        match self {
            Self::InvalidUtf8 => "invalid_utf8",
            Self::BadRetry => "bad_retry",
            Self::NulInId => "nul_in_id",
        }
    }
}
