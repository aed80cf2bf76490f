//! The relay's recent history for the status page: a sampler that takes a [`Sample`] of the
//! relay's metrics once a second and keeps the last 15 minutes of them in a bounded ring
//! ([`ring::SampleRing`]), and the two ways they are read: the whole ring as one JSON document
//! (`/history`) and an SSE stream that starts with that document and then sends each new
//! sample (`/history/stream`), so the page fills at once and then follows live.
//!
//! It only reads metrics, once a second, on its own task; it never touches a topic, a
//! subscriber or anything on the path of an event (docs/architecture.md, invariant 4), and its
//! memory is fixed by the ring's capacity whatever the load.

mod ring;
mod sample;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

pub use ring::{SampleRing, CAPACITY};
pub use sample::{quantile, Readings, Sample, Sources};

/// How often a sample is taken: once a second, the finest step a chart of 15 minutes shows.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// The relay's recent samples (cheap to clone; every clone reads the same ring).
#[derive(Clone)]
pub struct History {
    shared: Arc<Shared>,
}

struct Shared {
    ring: Mutex<SampleRing<Sample>>,
    /// The ring's next sequence number, changed by each new sample.
    next: watch::Sender<u64>,
}

/// The document `/history` answers and `/history/stream` starts with.
#[derive(serde::Serialize)]
struct Document<'a> {
    /// Time between samples, ms.
    interval_ms: u64,
    /// Samples kept at most, count.
    capacity: usize,
    /// What each entry of a sample's `upstream_failures` counts.
    failure_reasons: &'a [&'static str],
    /// The samples, oldest first.
    samples: Vec<Sample>,
}

impl History {
    /// An empty history keeping at most `capacity` samples.
    pub fn new(capacity: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                ring: Mutex::new(SampleRing::new(capacity)),
                next: watch::Sender::new(0),
            }),
        }
    }

    /// A history of [`CAPACITY`] samples, and its sampler on a task of its own: a sample of
    /// `sources` every [`SAMPLE_EVERY`] until `stop` turns true. Must be called within a tokio
    /// runtime.
    pub fn start(sources: Sources, stop: watch::Receiver<bool>) -> Self {
        let history = Self::new(CAPACITY);
        tokio::spawn(history.clone().sample(sources, stop));
        history
    }

    /// Takes a sample every [`SAMPLE_EVERY`] until `stop` turns true. A sample is labelled
    /// with its tick: the wall clock at the start plus whole seconds, so samples stay ordered
    /// and exactly a second apart even when the wall clock is set; a tick the task could not
    /// take in time (a starved runtime) is taken at once after, so no second is missing (what
    /// the late second counted shows in it, the catching-up ones show what came since).
    async fn sample(self, sources: Sources, mut stop: watch::Receiver<bool>) {
        let started_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let mut ticks = tokio::time::interval(SAMPLE_EVERY);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let started = ticks.tick().await;
        let mut before = sources.read();
        loop {
            let tick: Instant = tokio::select! {
                tick = ticks.tick() => tick,
                _ = stop.wait_for(|s| *s) => return,
            };
            let now = sources.read();
            let unix_ms = started_unix_ms + (tick - started).as_millis() as u64;
            self.record(sources.sample(unix_ms, &before, &now, SAMPLE_EVERY));
            before = now;
        }
    }

    /// Appends `sample` and tells the followers.
    pub fn record(&self, sample: Sample) {
        let next = {
            let mut ring = self.ring();
            ring.push(sample);
            ring.next_seq()
        };
        self.shared.next.send_replace(next);
    }

    /// The samples from sequence number `seq` on, oldest first, and the sequence number of the
    /// next one.
    pub fn since(&self, seq: u64) -> (Vec<Sample>, u64) {
        let ring = self.ring();
        (ring.since(seq), ring.next_seq())
    }

    /// Watches the sequence number of the next sample (it changes with each new one).
    pub fn follow(&self) -> watch::Receiver<u64> {
        self.shared.next.subscribe()
    }

    /// The whole history as the JSON document of `/history`.
    pub fn document(&self) -> Vec<u8> {
        let (samples, _) = self.since(0);
        serde_json::to_vec(&self.document_of(samples)).unwrap_or_default()
    }

    fn document_of(&self, samples: Vec<Sample>) -> Document<'static> {
        Document {
            interval_ms: SAMPLE_EVERY.as_millis() as u64,
            capacity: self.ring().capacity(),
            failure_reasons: &Sample::FAILURE_REASONS,
            samples,
        }
    }

    /// The SSE stream of `/history/stream`: an event `history` with the whole document, then
    /// an event `sample` per new sample, until `stop` turns true.
    pub fn stream(&self, stop: watch::Receiver<bool>) -> impl Stream<Item = Bytes> + Send {
        let history = self.clone();
        let follow = self.follow();
        futures_util::stream::unfold(
            (history, follow, stop, None::<u64>),
            |(history, mut follow, mut stop, next)| async move {
                let Some(seq) = next else {
                    follow.borrow_and_update();
                    let (samples, next) = history.since(0);
                    let doc = serde_json::to_string(&history.document_of(samples)).ok()?;
                    let frame = Bytes::from(format!("event: history\ndata: {doc}\n\n"));
                    return Some((frame, (history, follow, stop, Some(next))));
                };
                tokio::select! {
                    changed = follow.changed() => changed.ok()?,
                    _ = stop.wait_for(|s| *s) => return None,
                }
                let (samples, next) = history.since(seq);
                let mut out = String::new();
                for sample in samples {
                    let json = serde_json::to_string(&sample).ok()?;
                    out.push_str(&format!("event: sample\ndata: {json}\n\n"));
                }
                Some((Bytes::from(out), (history, follow, stop, Some(next))))
            },
        )
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, SampleRing<Sample>> {
        self.shared
            .ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
