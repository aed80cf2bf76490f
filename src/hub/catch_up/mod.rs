//! Origin-assisted catch-up. A subscriber that resumes from a `Last-Event-ID` its topic's
//! replay ring does not hold (evicted, or never held) is not quietly moved to the oldest
//! buffered event: the hub asks the origin once more with that id, in a one-off upstream
//! request beside the topic's shared subscription ([`Replay`]), buffers what the origin replays
//! until it meets an event the ring holds, and the subscriber gets the replayed events, then the
//! ring from that event on: no gap, no duplicate.
//!
//! When the origin cannot replay, the subscriber gets the in-band gap signal ([`super::Gap`])
//! and the ring from its oldest event, as without catch-up; unless the ring has come to hold
//! the resume id itself by then (a topic whose upstream had just opened), which resumes it
//! right after that id. The origin cannot replay when its
//! first event is already in the ring, when the event it meets the ring with arrived after the
//! catch-up started (it sent live events, not the past: it ignored `Last-Event-ID`), when it
//! fails or ends first, or when the catch-up outgrows its time or byte bound.
//!
//! Catch-ups from the same id on one topic share one request; they are capped per topic and in
//! total, and counted by outcome. This module owns that bookkeeping and the meeting rule; the
//! upstream owns the HTTP request and feeds each replayed event in with [`CatchUp::offer`].

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::time::Instant;
use tracing::debug;

use super::lock::lock;
use super::metrics::{CatchUpOutcome, HubMetrics};
use super::ring::{Listing, Ring};

/// Settings of origin-assisted catch-up (`[replay] catch_up*`).
#[derive(Debug, Clone, Copy)]
pub struct CatchUpSettings {
    /// Whether resumes the ring cannot serve ask the origin at all.
    pub enabled: bool,
    /// How long one catch-up may take, from its request to meeting the ring.
    pub timeout: Duration,
    /// Replayed bytes one catch-up may buffer before it meets the ring, bytes.
    pub max_bytes: usize,
    /// Catch-ups (distinct ids) under way per topic at once, count.
    pub max_per_topic: usize,
    /// Catch-ups under way in the whole relay at once, count.
    pub max_total: usize,
}

/// Starts one catch-up request: sends `Last-Event-ID: catch_up.last_event_id()` to the topic's
/// origin and feeds each replayed event to [`CatchUp::offer`] until it returns false or the
/// stream ends. The hub bounds it in time and drops it when done.
pub type Replay = Arc<dyn Fn(Arc<CatchUp>) -> BoxFuture<'static, ()> + Send + Sync>;

/// One catch-up under way: the id it replays after, what the origin sent so far, and, once
/// decided, its outcome (shared by every subscriber that resumed from that id).
pub struct CatchUp {
    /// The topic's ring, which the replay must meet.
    ring: Arc<Ring>,
    metrics: Arc<HubMetrics>,
    /// The topic's catch-ups under way, which this one leaves when its task ends.
    under_way: Arc<UnderWay>,
    last_event_id: Box<str>,
    /// The ring's next sequence number when the catch-up started: an event the origin replays
    /// meets the ring below it, a live event at or above it.
    head: u64,
    max_bytes: usize,
    progress: Mutex<Progress>,
    outcome: OnceLock<Outcome>,
}

#[derive(Default)]
struct Progress {
    frames: Vec<Bytes>,
    bytes: usize,
    /// The id of the first replayed event that had one.
    first_id: Option<Box<str>>,
}

/// How a catch-up ended, for its subscribers.
pub(super) enum Outcome {
    /// The origin replayed what the ring lacks: these frames, then the ring from sequence
    /// number `at`.
    Joined {
        frames: Vec<Bytes>,
        at: u64,
        ready_at: Instant,
    },
    /// It could not: the gap signal, then the ring from its oldest event.
    Gap,
}

/// A topic's catch-ups under way, by the id they replay after.
type UnderWay = Mutex<HashMap<Box<str>, Arc<CatchUp>>>;

/// A topic's catch-ups: how to ask its origin for a replay (if it can be asked), the
/// relay-wide pool, and those under way.
pub(super) struct CatchUps {
    source: Option<(Replay, Arc<CatchUpPool>)>,
    ring: Arc<Ring>,
    metrics: Arc<HubMetrics>,
    under_way: Arc<UnderWay>,
}

/// The relay-wide count of catch-ups under way, and their settings.
pub(super) struct CatchUpPool {
    pub settings: CatchUpSettings,
    open: AtomicUsize,
}

impl CatchUpPool {
    pub fn new(settings: CatchUpSettings) -> Self {
        Self {
            settings,
            open: AtomicUsize::new(0),
        }
    }

    /// Takes a slot under `max_total`; false when none is free.
    fn take(&self) -> bool {
        let max = self.settings.max_total;
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    fn release(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl CatchUp {
    /// The id the client had: sent upstream as `Last-Event-ID`.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Takes one replayed event (`id`: its own `id:` field, `frame`: encoded as the topic's
    /// events are). Returns false once the catch-up is decided: the caller stops reading.
    ///
    /// The first replayed event the ring also holds decides it: joined when the origin sent
    /// something before it that the ring lacks and that event was in the ring before the
    /// catch-up started; the gap signal otherwise.
    pub fn offer(&self, id: Option<&str>, frame: Bytes) -> bool {
        if self.outcome.get().is_some() {
            return false;
        }
        let mut progress = lock(&self.progress);
        if let Some(id) = id {
            let [met, first] = self.ring.seqs_of([Some(id), progress.first_id.as_deref()]);
            let first_in_ring = first.is_some();
            if let Some(at) = met {
                let replayed = progress.first_id.is_some() && !first_in_ring && at < self.head;
                if replayed {
                    let frames = std::mem::take(&mut progress.frames);
                    drop(progress);
                    let ready_at = Instant::now();
                    let outcome = Outcome::Joined {
                        frames,
                        at,
                        ready_at,
                    };
                    self.conclude(outcome, CatchUpOutcome::Joined);
                } else {
                    drop(progress);
                    self.conclude(Outcome::Gap, CatchUpOutcome::NoReplay);
                }
                return false;
            }
            if progress.first_id.is_none() {
                progress.first_id = Some(id.into());
            }
        }
        progress.bytes += frame.len();
        if progress.bytes > self.max_bytes {
            drop(progress);
            debug!(last_event_id = %self.last_event_id, "catch-up over replay.catch_up_max_bytes");
            self.conclude(Outcome::Gap, CatchUpOutcome::Failed);
            return false;
        }
        progress.frames.push(frame);
        true
    }

    /// The outcome, once decided.
    pub(super) fn outcome(&self) -> Option<&Outcome> {
        self.outcome.get()
    }

    /// Decides the catch-up (the first call wins), counts it and wakes the topic's waiting
    /// subscribers. A gap is no gap when the ring has come to hold the resume id itself (the
    /// topic's own subscription delivered it: an upstream that had just opened, or opened with
    /// an older id or none): the subscribers then resume right after it, with nothing missing
    /// and nothing twice, counted as [`CatchUpOutcome::Ring`].
    fn conclude(&self, outcome: Outcome, label: CatchUpOutcome) {
        if self.outcome.get().is_some() {
            return;
        }
        let (outcome, label) = match outcome {
            Outcome::Gap => match self.ring.seqs_of([Some(&*self.last_event_id)]) {
                [Some(seq)] => {
                    let resumed = Outcome::Joined {
                        frames: Vec::new(),
                        at: seq + 1,
                        ready_at: Instant::now(),
                    };
                    (resumed, CatchUpOutcome::Ring)
                }
                [None] => (Outcome::Gap, label),
            },
            joined => (joined, label),
        };
        if self.outcome.set(outcome).is_ok() {
            self.metrics.catch_ups.inc(label);
            self.ring.wake_all();
        }
    }

    /// Re-checks after the ring moved: the topic closed, the ring now holds the resume id
    /// itself, or the first replayed event has reached the ring on the topic's own subscription
    /// (the origin sent live events). True once decided.
    fn recheck(&self) -> bool {
        if self.outcome.get().is_some() {
            return true;
        }
        if self.ring.is_closed() {
            self.conclude(Outcome::Gap, CatchUpOutcome::Failed);
            return true;
        }
        let progress = lock(&self.progress);
        let seqs = self
            .ring
            .seqs_of([Some(&*self.last_event_id), progress.first_id.as_deref()]);
        drop(progress);
        let decided = seqs.iter().any(Option::is_some);
        if decided {
            self.conclude(Outcome::Gap, CatchUpOutcome::NoReplay);
        }
        decided
    }

    /// Resolves once the catch-up is decided by a change of the ring (see [`Self::recheck`]).
    async fn watch_ring(&self) {
        let (mut seen, mut listing) = (None, Listing::default());
        loop {
            poll_fn(|cx| self.ring.poll_changed(&mut seen, &mut listing, cx)).await;
            if self.recheck() {
                return;
            }
        }
    }
}

impl CatchUps {
    /// A topic's catch-ups: `replay` asks its origin (`None`: it cannot be asked), `pool`
    /// caps them relay-wide, `ring` is what a replay must meet.
    pub fn new(
        replay: Option<Replay>,
        pool: &Arc<CatchUpPool>,
        ring: &Arc<Ring>,
        metrics: &Arc<HubMetrics>,
    ) -> Self {
        Self {
            source: replay.map(|replay| (replay, pool.clone())),
            ring: ring.clone(),
            metrics: metrics.clone(),
            under_way: Arc::default(),
        }
    }

    /// Starts a catch-up from `wanted` (the ring's next sequence number being `head`), or
    /// joins the one under way from that id; `None` when catch-up is off for the topic or over
    /// its caps (counted as `capped`): the subscriber gets the gap signal.
    pub fn start(&self, wanted: &str, head: u64) -> Option<Arc<CatchUp>> {
        let (replay, pool) = self.source.clone()?;
        if !pool.settings.enabled {
            return None;
        }
        let mut under_way = lock(&self.under_way);
        if let Some(catch_up) = under_way.get(wanted) {
            return Some(catch_up.clone());
        }
        if under_way.len() >= pool.settings.max_per_topic || !pool.take() {
            self.metrics.catch_ups.inc(CatchUpOutcome::Capped);
            return None;
        }
        let catch_up = Arc::new(CatchUp {
            ring: self.ring.clone(),
            metrics: self.metrics.clone(),
            under_way: self.under_way.clone(),
            last_event_id: wanted.into(),
            head,
            max_bytes: pool.settings.max_bytes,
            progress: Mutex::default(),
            outcome: OnceLock::new(),
        });
        under_way.insert(wanted.into(), catch_up.clone());
        drop(under_way);
        self.metrics.catch_ups_open.inc();
        tokio::spawn(run(catch_up.clone(), replay, pool));
        Some(catch_up)
    }
}

/// Runs one catch-up's request until it is decided or its time is up, then releases its slot
/// (also if the request panics: the slot is a drop guard).
async fn run(catch_up: Arc<CatchUp>, replay: Replay, pool: Arc<CatchUpPool>) {
    let _slot = Slot {
        catch_up: catch_up.clone(),
        pool: pool.clone(),
    };
    let request = replay(catch_up.clone());
    let decided = async {
        tokio::select! {
            () = request => {}
            () = catch_up.watch_ring() => {}
        }
    };
    if tokio::time::timeout(pool.settings.timeout, decided)
        .await
        .is_err()
    {
        debug!(last_event_id = %catch_up.last_event_id, "catch-up timed out");
    }
}

/// A catch-up's place in its topic and in the pool, given back when its task ends however it
/// ends; one still undecided then could not replay.
struct Slot {
    catch_up: Arc<CatchUp>,
    pool: Arc<CatchUpPool>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let catch_up = &self.catch_up;
        catch_up.conclude(Outcome::Gap, CatchUpOutcome::Failed);
        lock(&catch_up.under_way).remove(&catch_up.last_event_id);
        catch_up.metrics.catch_ups_open.dec();
        self.pool.release();
    }
}

#[cfg(test)]
mod tests;
