//! One subscriber's place in a topic: a cursor into the ring and a waker slot, nothing per
//! event (DESIGN.md invariant 3). Polling hands over the topic's shared frames (joined into one
//! [`Delivery`] when several wait), heartbeats, lag and the close; dropping it detaches the
//! subscriber. This module knows nothing of HTTP.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::catch_up::{self, CatchUp, Outcome};
use super::topic::{lock, CloseReason, Topic};

/// What a subscriber gets next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// An encoded event frame (shared by all subscribers).
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

/// Ready events handed to one subscriber in one piece: a single event's shared frame, or,
/// when several are waiting, their frames joined (up to [`BATCH_BYTES`]), so a subscriber that
/// is behind costs one h2 DATA frame per batch rather than one per event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The encoded frames: the topic's shared one for a single event, else a joined copy.
    pub frame: Bytes,
    /// Events in `frame`, count (at least 1).
    pub events: u64,
    /// When the first (oldest) event in `frame` arrived from upstream.
    pub received_at: Instant,
    /// Events still ahead of this batch for this subscriber (its lag), count.
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

/// Largest batch of waiting events joined into one [`Delivery`], bytes (a single larger event is
/// handed over alone). One h2 DATA frame's default maximum size (RFC 9113 §6.5.2).
pub const BATCH_BYTES: usize = 16_384;

/// Stalls shorter than this are scheduling noise, not flow control.
const MIN_STALL: Duration = Duration::from_millis(1);

/// One subscriber's place in a topic: a cursor and a waker slot, nothing per event.
/// Dropping it detaches the subscriber (and may start the topic's idle grace period).
/// 64 bytes: every live stream holds one, so what few subscribers need is boxed ([`Detour`]).
pub struct Subscription {
    topic: Arc<Topic>,
    cursor: u64,
    /// 1 + the `wake_generation` at which this subscriber's waker was listed; 0: never.
    listed_in: u64,
    heartbeat_seen: u64,
    /// When the previous frame was handed off, if the subscriber has not waited since.
    last_handoff: Option<Instant>,
    /// A hole to report or a catch-up under way, for the few subscribers that have one.
    detour: Option<Box<Detour>>,
    /// Position in the drain order: this stream ends once drain progress passes it.
    drain_slot: u16,
    /// Another relay of the cluster (counted in the topic while attached).
    peer: bool,
}

/// What only some subscribers carry, for a while: those resumed from an id the ring lacked,
/// or skipped ahead after lagging.
#[derive(Default)]
struct Detour {
    /// A hole to report before the next event: `Some(last id the client had, if known)`.
    gap: Option<Option<Box<str>>>,
    /// The catch-up this subscriber waits for, then the next of its replayed frames to send.
    catch_up: Option<(Arc<CatchUp>, usize)>,
}

impl Detour {
    /// Takes the hole to report from `slot`, if any (and the detour once it holds nothing).
    fn take_gap(slot: &mut Option<Box<Self>>) -> Option<Option<Box<str>>> {
        let detour = slot.as_mut()?;
        let gap = detour.gap.take();
        if detour.catch_up.is_none() {
            *slot = None;
        }
        gap
    }
}

impl Subscription {
    /// Attaches a subscriber to `topic` (counted already by the registry) positioned by
    /// `last_event_id`: just after that event if the ring still holds it; without one, at the
    /// live head. An id the ring lacks is caught up from the origin ([`catch_up`]) unless the
    /// topic's upstream was opened with that very id (the origin replays it into the ring);
    /// when it cannot be, the subscriber starts at the oldest buffered event (nothing that
    /// could be kept is lost) with a [`Next::Gap`] before it.
    pub(super) fn attach(topic: &Arc<Topic>, last_event_id: Option<&str>) -> Self {
        let metrics = &topic.metrics;
        metrics.subscribers.inc();
        topic.subscribers_gauge.inc();
        let state = lock(&topic.state);
        let heartbeat_seen = state.heartbeat_generation;
        let Some(wanted) = last_event_id else {
            return Self::new(topic.clone(), state.next_seq(), heartbeat_seen);
        };
        if let Some(seq) = state.seq_of(wanted) {
            metrics.replay_hits.inc();
            return Self::new(topic.clone(), seq + 1, heartbeat_seen);
        }
        metrics.replay_misses.inc();
        let (first_seq, head) = (state.first_seq, state.next_seq());
        drop(state);
        let mut subscription = Self::new(topic.clone(), first_seq, heartbeat_seen);
        // The id the topic's upstream was opened with: the origin was asked to replay after it,
        // into this ring, so nothing is missing.
        if topic.initial_last_event_id() != Some(wanted) {
            match catch_up::start(topic, wanted, head) {
                Some(catch_up) => subscription.detour().catch_up = Some((catch_up, 0)),
                None => subscription.detour().gap = Some(Some(wanted.into())),
            }
        }
        subscription
    }

    fn new(topic: Arc<Topic>, cursor: u64, heartbeat_seen: u64) -> Self {
        Self {
            topic,
            cursor,
            listed_in: 0,
            heartbeat_seen,
            last_handoff: None,
            detour: None,
            drain_slot: rand::random::<u16>(),
            peer: false,
        }
    }

    /// Marks this subscriber as another relay of the cluster: while it is attached, the topic
    /// reads from the origin (see [`Topic::peer_subscribers`]).
    pub(super) fn mark_peer(&mut self) {
        if !self.peer {
            self.peer = true;
            self.topic.count_peer(true);
        }
    }

    /// This subscriber's [`Detour`], made if it had none.
    fn detour(&mut self) -> &mut Detour {
        self.detour.get_or_insert_with(Box::default)
    }

    /// The catch-up under way, if any.
    fn catch_up(&self) -> Option<&(Arc<CatchUp>, usize)> {
        self.detour.as_ref()?.catch_up.as_ref()
    }

    /// The topic subscribed to.
    pub fn topic(&self) -> &Arc<Topic> {
        &self.topic
    }

    /// Polls for the next item; registers the task's waker when nothing is ready.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Next> {
        if self.topic.drain_progress.load(Ordering::Relaxed) > u32::from(self.drain_slot) {
            return Poll::Ready(Next::Closed(CloseReason::Draining));
        }
        if let Some(delivery) = self.replayed() {
            return Poll::Ready(Next::Frame(delivery));
        }
        let mut state = lock(&self.topic.state);
        let caught_up = self.catch_up().is_none();
        // A catch-up decided after `replayed` looked: its wake-up may be past (it sets the
        // outcome before taking this lock to wake), so look again rather than wait.
        if self
            .catch_up()
            .is_some_and(|(catch_up, _)| catch_up.outcome().is_some())
        {
            drop(state);
            return self.poll_next(cx);
        }
        if caught_up && self.cursor < state.first_seq {
            return Poll::Ready(Next::Lagged);
        }
        let offset = self.cursor.saturating_sub(state.first_seq) as usize;
        if let Some(entry) = state.entries.get(offset).filter(|_| caught_up) {
            if let Some(last_event_id) = Detour::take_gap(&mut self.detour) {
                return Poll::Ready(Next::Gap(Gap {
                    last_event_id,
                    next_event_id: entry.id.clone(),
                }));
            }
            let now = Instant::now();
            let stalled_for = self
                .last_handoff
                .filter(|&handoff| entry.at <= handoff)
                .map(|handoff| now.saturating_duration_since(handoff))
                .filter(|&stall| stall >= MIN_STALL);
            let received_at = entry.at;
            let (events, bytes) = batch(state.entries.range(offset..).map(|e| e.frame.len()));
            let behind = (state.entries.len() - offset - events) as u64;
            self.cursor += events as u64;
            self.heartbeat_seen = state.heartbeat_generation;
            self.last_handoff = Some(now);
            // One event is the topic's shared frame itself (no allocation); several are joined
            // after unlocking, from handles taken under the lock.
            let frame = if events == 1 {
                let frame = entry.frame.clone();
                drop(state);
                frame
            } else {
                let waiting: Vec<Bytes> = state
                    .entries
                    .range(offset..offset + events)
                    .map(|e| e.frame.clone())
                    .collect();
                drop(state);
                let mut joined = bytes::BytesMut::with_capacity(bytes);
                waiting.iter().for_each(|f| joined.extend_from_slice(f));
                joined.freeze()
            };
            return Poll::Ready(Next::Frame(Delivery {
                frame,
                events: events as u64,
                received_at,
                behind,
                stalled_for,
                handed_at: now,
            }));
        }
        self.last_handoff = None;
        if let Some(reason) = state.closed {
            return Poll::Ready(Next::Closed(reason));
        }
        if self.heartbeat_seen != state.heartbeat_generation {
            self.heartbeat_seen = state.heartbeat_generation;
            return Poll::Ready(Next::Heartbeat);
        }
        if self.listed_in != state.wake_generation + 1 {
            state.waiters.push(cx.waker().clone());
            self.listed_in = state.wake_generation + 1;
        }
        Poll::Pending
    }

    /// While a catch-up is under way, nothing; once it joined, its replayed frames, in
    /// batches, then the cursor moves to where it met the ring; once it could not, the cursor
    /// moves to the oldest buffered event with a gap before it.
    fn replayed(&mut self) -> Option<Delivery> {
        let detour = self.detour.as_mut()?;
        let (catch_up, next) = detour.catch_up.as_mut()?;
        match catch_up.outcome()? {
            Outcome::Joined {
                frames,
                at,
                ready_at,
            } => {
                if let Some(rest) = frames.get(*next..).filter(|rest| !rest.is_empty()) {
                    let (events, bytes) = batch(rest.iter().map(Bytes::len));
                    let frame = match events {
                        1 => rest[0].clone(),
                        _ => {
                            let mut joined = bytes::BytesMut::with_capacity(bytes);
                            rest[..events]
                                .iter()
                                .for_each(|f| joined.extend_from_slice(f));
                            joined.freeze()
                        }
                    };
                    *next += events;
                    let now = Instant::now();
                    self.last_handoff = Some(now);
                    return Some(Delivery {
                        frame,
                        events: events as u64,
                        received_at: *ready_at,
                        behind: (rest.len() - events) as u64,
                        stalled_for: None,
                        handed_at: now,
                    });
                }
                self.cursor = *at;
            }
            Outcome::Gap => {
                detour.gap = Some(Some(catch_up.last_event_id().into()));
                self.cursor = lock(&self.topic.state).first_seq;
            }
        }
        detour.catch_up = None;
        if detour.gap.is_none() {
            self.detour = None;
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
        self.cursor = lock(&self.topic.state).first_seq;
        self.detour().gap = Some(None);
    }
}

/// How many of the waiting frames (of these sizes, in bytes) fit one batch of at most
/// [`BATCH_BYTES`] (at least one), and their bytes.
fn batch(sizes: impl Iterator<Item = usize>) -> (usize, usize) {
    let (mut events, mut bytes) = (0, 0);
    for size in sizes {
        if events > 0 && bytes + size > BATCH_BYTES {
            break;
        }
        events += 1;
        bytes += size;
    }
    (events, bytes)
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.peer {
            self.topic.count_peer(false);
        }
        self.topic.remove_subscriber();
    }
}
