//! One subscriber's place in a topic: a [`Cursor`] into the ring, nothing per event
//! (docs/architecture.md, invariant 3). Polling hands over the topic's shared frames (joined
//! into one [`Delivery`] when several wait), heartbeats, lag and the close, and first what a
//! resumed subscriber must still get (a catch-up's replay, the gap signal); dropping it detaches
//! the subscriber. It reads the ring through the ring's methods only and knows nothing of HTTP.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::batch::{Batch, Frames};
pub use super::batch::{Packed, Packs};
use super::catch_up::{CatchUp, Outcome};
use super::ring::{CloseReason, Cursor, Placed, Read, Want};
use super::topic::Topic;
use crate::compress::Coding;

/// What a subscriber gets next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Encoded frames (shared by all subscribers): events, and changes of the origin's
    /// `retry:` in order with them.
    Frame(Delivery),
    /// Nothing was sent since the last heartbeat tick: send a heartbeat.
    Heartbeat,
    /// The cursor fell out of the ring (events were evicted before this subscriber read them).
    Lagged,
    /// Events this subscriber should have had are gone: it resumed from an id the ring no
    /// longer (or never) held, or skipped ahead after lagging. Sent once, right before the
    /// next event it gets.
    Gap(Gap),
    /// The topic ended, or the drain reached this subscriber.
    Closed(CloseReason),
}

/// Ready frames handed to one subscriber in one piece: a single frame, the topic's shared one,
/// or, when several are waiting, their frames joined (up to [`super::BATCH_BYTES`]), so a
/// subscriber that is behind costs one h2 DATA frame per batch rather than one per event. The
/// frames are events and the origin's `retry:` changes, in the order the origin sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The encoded frames: the topic's shared one for a single frame, else a joined copy.
    /// Empty for a subscriber of a coding reading the ring: its frames are in `packed`.
    pub frame: Bytes,
    /// For a subscriber of a coding ([`Subscription::compress_in`]) reading the ring: each
    /// frame with its shared compressed part, in order (nothing is copied).
    pub packed: Packs,
    /// Events in `frame`, count (0 when it is only a change of the origin's `retry:`).
    pub events: u64,
    /// When the first (oldest) frame in `frame` arrived from upstream.
    pub received_at: Instant,
    /// Frames still ahead of this batch for this subscriber (its lag), count.
    pub behind: u64,
    /// Set when the subscriber was not polled for a while although this event was waiting (the
    /// client's flow-control window was closed): how long, from the previous hand-off.
    pub stalled_for: Option<Duration>,
    /// When this batch was handed over: the clock is read once per hand-off, for the stall
    /// above and for the fan-out latency (`handed_at - received_at`).
    pub handed_at: Instant,
}

/// Where a subscriber's stream has a hole, as far as the relay knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The last id the client had (its `Last-Event-ID`); `None` after a lag skip (the client
    /// knows it: EventSource's `lastEventId`).
    pub last_event_id: Option<Box<str>>,
    /// The id of the first event it gets next (`None` when that event has none).
    pub next_event_id: Option<Arc<str>>,
}

/// Stalls shorter than this are scheduling noise, not flow control.
const MIN_STALL: Duration = Duration::from_millis(1);

/// One subscriber's place in a topic: a cursor, nothing per event. Dropping it detaches the
/// subscriber (and may start the topic's idle grace period). 64 bytes: every live stream holds
/// one, so what few subscribers need is boxed ([`Recovery`]).
pub struct Subscription {
    topic: Arc<Topic>,
    cursor: Cursor,
    /// When the previous frame was handed off, if the subscriber has not waited since.
    last_handoff: Option<Instant>,
    /// What a resumed or skipped-ahead subscriber must get before the ring's next event.
    recovery: Option<Box<Recovery>>,
    /// Position in the drain order: this stream ends once drain progress passes it.
    drain_slot: u16,
    /// Another relay of the cluster (counted in the topic while attached).
    peer: bool,
    /// A watcher ([`Subscription::watch`]): not counted among the topic's subscribers.
    watcher: bool,
    /// The coding its stream is compressed in (`None`: identity).
    coding: Option<Coding>,
}

/// An event a watcher is shown from the ring's recent past ([`Subscription::watch`]).
#[derive(Debug, Clone)]
pub struct Recent {
    /// Its encoded frame, the topic's shared one.
    pub frame: Bytes,
    /// When it arrived from upstream.
    pub received_at: Instant,
}

/// What only some subscribers carry, for a while, before the ring's next event.
enum Recovery {
    /// The gap signal, sent right before the next event: the last id the client had, if
    /// known (`None` after a lag skip).
    ReportGap { last_event_id: Option<Box<str>> },
    /// The catch-up this subscriber waits for, then the index of the next of its replayed
    /// frames to send.
    CatchUp { catch_up: Arc<CatchUp>, next: usize },
}

impl Subscription {
    /// Attaches a subscriber to `topic` (counted already by the registry) positioned by
    /// `last_event_id`: just after that event if the ring still holds it; without one, at the
    /// live head. An id the ring lacks is caught up from the origin ([`super::catch_up`])
    /// unless the topic's upstream was opened with that very id (the origin replays it into the
    /// ring); when it cannot be, the subscriber starts at the oldest buffered event (nothing
    /// that could be kept is lost) with a [`Next::Gap`] before it.
    pub(super) fn attach(topic: &Arc<Topic>, last_event_id: Option<&str>) -> Self {
        let metrics = topic.metrics();
        let (cursor, placed) = topic.ring().place(last_event_id);
        let mut subscription = Self::at(topic, cursor, false);
        match (placed, last_event_id) {
            (Placed::Head, _) => {}
            (Placed::After, _) => metrics.replay_hits.inc(),
            (Placed::Missing { head }, Some(wanted)) => {
                metrics.replay_misses.inc();
                // The id the topic's upstream was opened with: the origin was asked to replay
                // after it, into this ring, so nothing is missing.
                if topic.initial_last_event_id() != Some(wanted) {
                    subscription.recovery =
                        Some(Box::new(match topic.start_catch_up(wanted, head) {
                            Some(catch_up) => Recovery::CatchUp { catch_up, next: 0 },
                            None => Recovery::ReportGap {
                                last_event_id: Some(wanted.into()),
                            },
                        }));
                }
            }
            (Placed::Missing { .. }, None) => {}
        }
        subscription
    }

    /// A watcher of `topic` (the admin listener's tail): the newest `back` events of its ring,
    /// oldest first, and a subscription right after them that reads like any other (the
    /// topic's shared frames from a cursor, heartbeats, [`Next::Lagged`] when it falls out of
    /// the ring, the close and the drain), but is not counted among the topic's subscribers:
    /// it neither keeps the topic open nor starts its idle grace when dropped
    /// (docs/architecture.md, invariants 3 and 4).
    pub fn watch(topic: &Arc<Topic>, back: usize) -> (Vec<Recent>, Self) {
        let (recent, cursor) = topic.ring().recent(back);
        let recent = recent
            .into_iter()
            .map(|(frame, received_at)| Recent { frame, received_at })
            .collect();
        (recent, Self::at(topic, cursor, true))
    }

    /// A reader of `topic` at `cursor`, with a random place in the drain order.
    fn at(topic: &Arc<Topic>, cursor: Cursor, watcher: bool) -> Self {
        Self {
            topic: topic.clone(),
            cursor,
            last_handoff: None,
            recovery: None,
            drain_slot: rand::random::<u16>(),
            peer: false,
            watcher,
            coding: None,
        }
    }

    /// Has this subscriber's stream compressed in `coding`: the topic compresses each frame in
    /// it once for all such subscribers, and deliveries carry those parts ([`Delivery::packed`]).
    pub fn compress_in(&mut self, coding: Coding) {
        if self.coding.is_none() {
            self.coding = Some(coding);
            self.topic.ring().join_coding(coding);
        }
    }

    /// The coding this subscriber's stream is compressed in (`None`: identity).
    pub fn coding(&self) -> Option<Coding> {
        self.coding
    }

    /// Marks this subscriber as another relay of the cluster: while it is attached, the topic
    /// reads from the origin (see [`Topic::peer_subscribers`]).
    pub(super) fn mark_peer(&mut self) {
        if !self.peer {
            self.peer = true;
            self.topic.count_peer(true);
        }
    }

    /// True when this subscriber would get nothing but the end: the topic is closed and the
    /// cursor is past its last frame, with nothing owed before it (a gap signal, a catch-up).
    pub fn is_spent(&self) -> bool {
        self.recovery.is_none() && self.topic.ring().is_spent(&self.cursor)
    }

    /// Moves the cursor to the oldest buffered event: a follower of a request stream that
    /// named no event wants the whole answer. If the ring no longer holds its start, a
    /// [`Next::Gap`] comes first (the answer's start is gone).
    pub(super) fn rewind(&mut self) {
        let ring = self.topic.ring();
        ring.seek(&mut self.cursor, None);
        if ring.first_seq() > 0 {
            self.recovery = Some(Box::new(Recovery::ReportGap {
                last_event_id: None,
            }));
        }
    }

    /// The topic subscribed to.
    pub fn topic(&self) -> &Arc<Topic> {
        &self.topic
    }

    /// Polls for the next item; registers the task's waker when nothing is ready.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Next> {
        // Another relay following a request stream keeps it through the drain (see
        // `Hub::drain_streams`): its viewers moved there.
        let kept = self.peer && self.topic.life().is_some();
        if !kept && self.topic.drained_past(self.drain_slot) {
            return Poll::Ready(Next::Closed(CloseReason::Draining));
        }
        loop {
            if let Some(delivery) = self.replayed() {
                return Poll::Ready(Next::Frame(delivery));
            }
            let want = match self.recovery.as_deref() {
                None => Want::Events,
                Some(Recovery::ReportGap { .. }) => Want::NextId,
                Some(Recovery::CatchUp { .. }) => Want::Nothing,
            };
            let read = match self
                .topic
                .ring()
                .poll_read(&mut self.cursor, want, self.coding, cx)
            {
                Poll::Ready(read) => read,
                // A catch-up decided after `replayed` looked: its wake-up may be past (it sets
                // the outcome before it wakes the ring's readers), so look again.
                Poll::Pending if self.catch_up_decided() => continue,
                Poll::Pending => {
                    self.last_handoff = None;
                    return Poll::Pending;
                }
            };
            return Poll::Ready(match read {
                Read::Batch(batch) => Next::Frame(self.hand_off(batch)),
                Read::NextId(next_event_id) => {
                    let last_event_id = match self.recovery.take().map(|r| *r) {
                        Some(Recovery::ReportGap { last_event_id }) => last_event_id,
                        _ => None,
                    };
                    Next::Gap(Gap {
                        last_event_id,
                        next_event_id,
                    })
                }
                Read::Lagged => Next::Lagged,
                Read::Closed(reason) => {
                    self.last_handoff = None;
                    Next::Closed(reason)
                }
                Read::Heartbeat => {
                    self.last_handoff = None;
                    Next::Heartbeat
                }
            });
        }
    }

    /// A batch from the ring as a [`Delivery`]: the clock read once, the stall measured from
    /// the previous hand-off, the frames joined after the ring's lock was released.
    fn hand_off(&mut self, batch: Batch) -> Delivery {
        let now = Instant::now();
        let stalled_for = self
            .last_handoff
            .filter(|&handoff| batch.first_at <= handoff)
            .map(|handoff| now.saturating_duration_since(handoff))
            .filter(|&stall| stall >= MIN_STALL);
        self.last_handoff = Some(now);
        let (frame, packed) = match batch.packed {
            None => (batch.frames.into_bytes(), Packs::None),
            Some(packed) => (Bytes::new(), packed),
        };
        Delivery {
            frame,
            packed,
            events: batch.events,
            received_at: batch.first_at,
            behind: batch.behind,
            stalled_for,
            handed_at: now,
        }
    }

    /// True when this subscriber waits for a catch-up that is decided now.
    fn catch_up_decided(&self) -> bool {
        matches!(self.recovery.as_deref(), Some(Recovery::CatchUp { catch_up, .. }) if catch_up.outcome().is_some())
    }

    /// While a catch-up is under way, nothing; once it joined, its replayed frames, in
    /// batches, then the cursor moves to where it met the ring; once it could not, the cursor
    /// moves to the oldest buffered event with a gap before it.
    fn replayed(&mut self) -> Option<Delivery> {
        let Some(Recovery::CatchUp { catch_up, next }) = self.recovery.as_deref_mut() else {
            return None;
        };
        let ring = self.topic.ring();
        match catch_up.outcome()? {
            Outcome::Joined {
                frames,
                at,
                ready_at,
            } => {
                let rest = frames.get(*next..).unwrap_or_default();
                if let Some((batch, events)) = Frames::first_batch(rest.iter()) {
                    *next += events;
                    let now = Instant::now();
                    self.last_handoff = Some(now);
                    return Some(Delivery {
                        frame: batch.into_bytes(),
                        packed: Packs::None,
                        events: events as u64,
                        received_at: *ready_at,
                        behind: (rest.len() - events) as u64,
                        stalled_for: None,
                        handed_at: now,
                    });
                }
                ring.seek(&mut self.cursor, Some(*at));
                self.recovery = None;
            }
            Outcome::Gap => {
                let last_event_id = Some(catch_up.last_event_id().into());
                ring.seek(&mut self.cursor, None);
                self.recovery = Some(Box::new(Recovery::ReportGap { last_event_id }));
            }
        }
        None
    }

    /// Resolves once the origin's answer for this topic is known (see [`Topic::verdict`]): a
    /// subscriber that arrives while the first upstream attempt is under way waits for it, so
    /// it can be given the origin's refusal instead of a stream.
    pub async fn verdict(&self) -> super::Verdict {
        self.topic.verdict().await
    }

    /// Moves the cursor to the oldest buffered event (the `skip` lag policy); a [`Next::Gap`]
    /// comes before that event.
    pub fn skip_to_oldest(&mut self) {
        self.topic.ring().seek(&mut self.cursor, None);
        self.recovery = Some(Box::new(Recovery::ReportGap {
            last_event_id: None,
        }));
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.peer {
            self.topic.count_peer(false);
        }
        if let Some(coding) = self.coding {
            self.topic.ring().leave_coding(coding);
        }
        if !self.watcher {
            self.topic.remove_subscriber();
        }
    }
}
