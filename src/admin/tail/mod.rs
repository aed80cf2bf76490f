//! The tail of one topic for the status page (`/tail?topic=<key as shown>`): the newest events
//! of the topic's ring, then each new one as it arrives, each described by one SSE event
//! `tail` whose data is a JSON object: its id, type, encoded size, age, and the first
//! [`PREVIEW_BYTES`] of its data.
//!
//! A tail is a subscriber like any other: a cursor into the topic's ring and a waker
//! ([`Subscription::watch`]), reading the topic's shared frames, so it never slows the topic,
//! and a page that falls behind meets the relay's lag policy (docs/architecture.md,
//! invariants 3 and 4). It is counted apart from clients (`sse_relay_admin_tails`), does not
//! keep the topic open, and costs nothing when nobody watches. It never changes a topic, and
//! never tails a topic that holds a user's claims (a per-user topic, shown hashed by
//! [`Topic::shown`]) unless `admin.tail_private` allows it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use tokio::time::Instant;

use super::metrics::AdminMetrics;
use crate::downstream::LagPolicy;
use crate::hub::{CloseReason, Hub, Next, Recent, Subscription, Topic};
use crate::sse::{Item, Parser};

/// Events of the ring's past a new tail is shown first, at most, count: a screenful.
pub const RECENT_EVENTS: usize = 50;

/// Bytes of an event's data a tail shows (cut at a character boundary): enough to recognise an
/// event, little enough that a tail of large events stays light.
pub const PREVIEW_BYTES: usize = 256;

/// How tails behave, from the config.
#[derive(Debug, Clone, Copy)]
pub struct TailSettings {
    /// `admin.tail_private`: per-user topics may be tailed too.
    pub private: bool,
    /// What a tail that falls out of the ring meets (`downstream.lag_policy`).
    pub lag_policy: LagPolicy,
}

/// Why a tail was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TailRefusal {
    /// No open topic is shown under that key (404).
    #[error("no open topic is shown under that key")]
    Unknown,
    /// The topic holds a user's claims and `admin.tail_private` is off (403).
    #[error("a per-user topic: set admin.tail_private = true to tail it")]
    Private,
}

/// True when `topic` is shown other than as its key, that is with a user's claims hashed: a
/// per-user topic, whose events are that user's.
pub fn is_private(topic: &Topic) -> bool {
    match topic.life() {
        Some(life) => life.personal,
        None => topic.shown() != topic.key(),
    }
}

/// Opens a tail of the open topic (or request stream) shown as `shown`, looked for in `hubs`
/// in order.
///
/// # Errors
/// [`TailRefusal::Unknown`] when no open topic is shown so; [`TailRefusal::Private`] for a
/// per-user topic, or a request stream an authenticated user started, unless
/// `settings.private`.
pub fn open<'h>(
    hubs: impl IntoIterator<Item = &'h Hub>,
    shown: &str,
    settings: TailSettings,
    metrics: Arc<AdminMetrics>,
) -> Result<Tail, TailRefusal> {
    let topic = hubs
        .into_iter()
        .flat_map(Hub::topics)
        .find(|t| t.shown() == shown)
        .ok_or(TailRefusal::Unknown)?;
    if is_private(&topic) && !settings.private {
        return Err(TailRefusal::Private);
    }
    let (recent, subscription) = Subscription::watch(&topic, RECENT_EVENTS);
    metrics.tails.inc();
    Ok(Tail {
        recent: Some(recent),
        subscription: Some(subscription),
        parser: Parser::new(usize::MAX),
        lag_policy: settings.lag_policy,
        metrics,
    })
}

/// An open tail: a stream of SSE frames, `tail` events, heartbeat comments, and at its end an
/// event saying why (`lagged`, `closed`).
pub struct Tail {
    /// The ring's past, sent first.
    recent: Option<Vec<Recent>>,
    /// `None` once the tail ended.
    subscription: Option<Subscription>,
    /// Reads the topic's canonical frames back into events.
    parser: Parser,
    lag_policy: LagPolicy,
    metrics: Arc<AdminMetrics>,
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.metrics.tails.dec();
    }
}

/// One event as a tail shows it.
#[derive(serde::Serialize)]
struct Shown<'a> {
    id: Option<&'a str>,
    #[serde(rename = "type")]
    event_type: &'a str,
    /// The encoded frame, bytes.
    size: usize,
    /// Since it arrived from upstream, ms.
    age_ms: u64,
    /// The data's first [`PREVIEW_BYTES`].
    data: &'a str,
    /// The data's length, bytes.
    data_bytes: usize,
}

impl Tail {
    /// `tail` events describing the events in `frames` (the topic's canonical frames, each
    /// ending in a blank line: docs/architecture.md, "The path of one event"), which arrived
    /// at `received_at` (for a batch, the first of them did).
    fn describe(&mut self, frames: &[u8], received_at: Instant, now: Instant) -> String {
        let age_ms = now.saturating_duration_since(received_at).as_millis() as u64;
        let mut out = String::new();
        let mut items = Vec::new();
        for frame in frames.split_inclusive_blank_line() {
            items.clear();
            self.parser.feed(frame, &mut items);
            for item in &items {
                let Item::Event(event) = item else { continue };
                let data = event.data.as_deref().unwrap_or_default();
                let shown = Shown {
                    id: event.id.as_deref(),
                    event_type: event.event_type.as_deref().unwrap_or("message"),
                    size: frame.len(),
                    age_ms,
                    data: preview(data),
                    data_bytes: data.len(),
                };
                self.metrics.tail_events.inc();
                push_event(
                    &mut out,
                    "tail",
                    &serde_json::to_string(&shown).unwrap_or_default(),
                );
            }
        }
        out
    }

    /// What the tail sends for `next`; `None`: nothing (poll again).
    fn bytes_for(&mut self, next: Next) -> Option<Bytes> {
        let now = Instant::now();
        let mut out = String::new();
        match next {
            Next::Frame(delivery) => {
                out = self.describe(&delivery.frame, delivery.received_at, now);
            }
            Next::Heartbeat => out.push_str(":\n\n"),
            Next::Gap(_) => push_event(&mut out, "gap", "{}"),
            Next::Lagged => {
                self.metrics.tails_lagged.inc();
                let policy = match self.lag_policy {
                    LagPolicy::Skip => "skip",
                    LagPolicy::Disconnect => "disconnect",
                };
                push_event(&mut out, "lagged", &format!("{{\"policy\":\"{policy}\"}}"));
                match (self.lag_policy, self.subscription.as_mut()) {
                    (LagPolicy::Skip, Some(subscription)) => subscription.skip_to_oldest(),
                    _ => self.subscription = None,
                }
            }
            Next::Closed(reason) => {
                let reason = match reason {
                    CloseReason::OriginClosed => "origin_closed",
                    CloseReason::OriginRefused => "origin_refused",
                    CloseReason::Draining => "draining",
                    CloseReason::Retired => "retired",
                    CloseReason::Finished => "finished",
                    CloseReason::Cancelled => "cancelled",
                };
                push_event(&mut out, "closed", &format!("{{\"reason\":\"{reason}\"}}"));
                self.subscription = None;
            }
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }
}

impl Stream for Tail {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = self.get_mut();
        if let Some(recent) = this.recent.take() {
            let now = Instant::now();
            let mut out = String::from(": sse-relay tail\n\n");
            for event in recent {
                out.push_str(&this.describe(&event.frame, event.received_at, now));
            }
            return Poll::Ready(Some(Bytes::from(out)));
        }
        loop {
            let Some(subscription) = this.subscription.as_mut() else {
                return Poll::Ready(None);
            };
            let next = std::task::ready!(subscription.poll_next(cx));
            if let Some(bytes) = this.bytes_for(next) {
                return Poll::Ready(Some(bytes));
            }
        }
    }
}

/// Splits canonical frames after each blank line (`\n\n`), keeping it.
trait BlankLines {
    fn split_inclusive_blank_line(&self) -> impl Iterator<Item = &[u8]>;
}

impl BlankLines for [u8] {
    fn split_inclusive_blank_line(&self) -> impl Iterator<Item = &[u8]> {
        let mut rest = self;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let end = rest
                .windows(2)
                .position(|w| w == b"\n\n")
                .map_or(rest.len(), |i| i + 2);
            let (frame, tail) = rest.split_at(end);
            rest = tail;
            Some(frame)
        })
    }
}

/// The first [`PREVIEW_BYTES`] of `data`, cut back to a character boundary.
fn preview(data: &str) -> &str {
    let mut end = data.len().min(PREVIEW_BYTES);
    while !data.is_char_boundary(end) {
        end -= 1;
    }
    &data[..end]
}

/// Appends an SSE event of type `event_type` with one line of `data` (JSON: no line breaks).
fn push_event(out: &mut String, event_type: &str, data: &str) {
    out.push_str("event: ");
    out.push_str(event_type);
    out.push_str("\ndata: ");
    out.push_str(data);
    out.push_str("\n\n");
}

#[cfg(test)]
mod tests;
