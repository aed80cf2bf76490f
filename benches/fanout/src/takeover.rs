//! The owner's crash, measured (the takeover time): while events are published at a
//! steady rate on every topic, the relay that owns the most topics is killed (SIGKILL), one
//! event is published on every topic right after, and the steady rate goes on. It records, for
//! the subscribers of the surviving relays only, how long until every one of them had that
//! first post-kill event, the delivery latency of the events published around the kill, and
//! any event lost, duplicated or out of order; and, from a poller of nchan's channel info, how
//! long until nchan counts exactly one subscriber per topic again. It kills only the relay it
//! was handed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::client::now_ns;
use crate::groups::{merged, put_quantiles, ClusterSizes, Group};
use crate::peers::put_metrics;
use crate::procs::Relay;
use crate::publisher::Publisher;
use crate::scenarios::Values;
use crate::steady::{delivered_all, Steady};

/// How often nchan's subscriber counts are read during the takeover.
const POLL: Duration = Duration::from_millis(20);

/// A running cluster and its subscribers, ready for the kill.
pub struct Takeover<'a> {
    /// The relays; the one owning the most topics is killed.
    pub relays: &'a mut [Relay],
    /// Every relay's subscribers, per topic.
    pub groups: &'a [Group],
    /// nchan channels, one per topic.
    pub channels: &'a [String],
    /// Each topic's owner (index into `relays`).
    pub owners: &'a [usize],
    /// The steady publisher, already running on `channels`.
    pub steady: Steady<'a>,
    /// nchan's plain-HTTP port (for its channel info).
    pub origin_port: u16,
    /// Warm-up and tail.
    pub sizes: &'a ClusterSizes,
    /// The relays' `cluster.refresh_ms`.
    pub refresh: Duration,
}

/// What happened after the kill.
struct Followed {
    killed: u64,
    complete: bool,
    nchan: Watch,
}

impl Takeover<'_> {
    /// Publishes, kills the owner of the most topics, waits for the takeover, and records the
    /// figures in `v` (also when the survivors lost events: then it fails after recording).
    pub async fn measure(mut self, v: &mut Values) -> Result<()> {
        let victim = (0..self.relays.len())
            .max_by_key(|&r| (self.owners.iter().filter(|&&o| o == r).count(), r))
            .unwrap_or(0);
        let groups = self.groups;
        let survivors: Vec<&Group> = groups.iter().filter(|g| g.relay != victim).collect();
        let moved: Vec<bool> = self.owners.iter().map(|&o| o == victim).collect();
        v.insert(
            format!("victim_owned_topics.{}", self.relays[victim].ip),
            moved.iter().filter(|&&m| m).count() as f64,
        );
        let before: u64 = self.steady.published().iter().sum();
        let cap = self.cap();
        self.warm().await?;
        let followed = self.kill_and_follow(victim, &survivors).await?;
        let published = self.steady.published().to_vec();
        self.steady.finish(Duration::from_secs(60)).await?;
        let delivered = delivered_all(&survivors, &published, Duration::from_secs(60)).await;
        for g in groups {
            g.tally.recording.store(false, Ordering::Release);
        }
        let timing = Timing {
            killed: followed.killed,
            survivors: &survivors,
            moved: &moved,
        };
        timing.put(v, &followed.nchan);
        put_quantiles(v, "window_", &merged(survivors.iter().copied()));
        let events = published.iter().sum::<u64>() - before;
        v.insert("takeover_events_published".into(), events as f64);
        put_metrics(v, "after", survivor_relays(self.relays, victim))?;
        for (r, relay) in self.relays.iter_mut().enumerate() {
            if r != victim {
                relay.child.check_running()?;
            }
        }
        if !followed.complete {
            bail!("takeover not complete {cap:?} after the kill");
        }
        losses(v, &survivors, &published, delivered)
    }

    /// How long after the kill the takeover may take before it counts as failed.
    fn cap(&self) -> Duration {
        self.refresh * 3 + Duration::from_secs(30)
    }

    /// Steady publishing for `warm_s`, latency recorded (afresh) for the last second.
    async fn warm(&mut self) -> Result<()> {
        let warm = Duration::from_secs(self.sizes.warm_s.max(2));
        let started = Instant::now();
        while started.elapsed() < warm {
            self.steady.tick().await?;
            if started.elapsed() + Duration::from_secs(1) >= warm {
                record_latency(self.groups);
            }
        }
        Ok(())
    }

    /// Kills `victim`, publishes one event on every topic, and goes on at the steady rate
    /// until every survivor stream had that event and nchan counts one subscriber per topic,
    /// then for `tail_s` more (or until [`Self::cap`]).
    async fn kill_and_follow(&mut self, victim: usize, survivors: &[&Group]) -> Result<Followed> {
        for g in survivors {
            g.tally.watch_for(self.steady.published()[g.topic]);
        }
        let watch = NchanWatch::start(self.origin_port, self.channels.to_vec());
        self.relays[victim].child.kill_now()?;
        let killed = now_ns();
        self.steady.all().await?;
        let (cap, tail) = (self.cap(), Duration::from_secs(self.sizes.tail_s));
        let mut done: Option<Instant> = None;
        while done.is_none_or(|d| d.elapsed() < tail) {
            self.steady.tick().await?;
            let reached = survivors
                .iter()
                .all(|g| g.tally.reached_mark.load(Ordering::Acquire) >= g.subscribers);
            if done.is_none() && reached && watch.all_one() {
                done = Some(Instant::now());
            }
            if Duration::from_nanos(now_ns() - killed) > cap {
                break;
            }
        }
        Ok(Followed {
            killed,
            complete: done.is_some(),
            nchan: watch.stop().await?,
        })
    }
}

/// Turns latency recording on (fresh histograms) for every group, once.
fn record_latency(groups: &[Group]) {
    for g in groups {
        if !g.tally.recording.swap(true, Ordering::AcqRel) {
            g.tally.reset_latency();
        }
    }
}

fn survivor_relays(relays: &[Relay], victim: usize) -> Vec<&Relay> {
    relays
        .iter()
        .enumerate()
        .filter(|(r, _)| *r != victim)
        .map(|(_, relay)| relay)
        .collect()
}

/// Lost, extra (duplicated) and out-of-sequence events on the survivors' streams, and streams
/// that ended; fails unless all are 0.
fn losses(v: &mut Values, survivors: &[&Group], published: &[u64], complete: bool) -> Result<()> {
    let (mut lost, mut extra, mut disorder, mut ended, mut streams) = (0, 0, 0, 0, 0);
    for g in survivors {
        let expected = g.subscribers * published[g.topic];
        let got = g.tally.delivered.load(Ordering::Acquire);
        lost += expected.saturating_sub(got);
        extra += got.saturating_sub(expected);
        disorder += g.tally.order_errors.load(Ordering::Acquire);
        ended += g.tally.ended.load(Ordering::Acquire);
        streams += g.subscribers;
    }
    v.insert("survivor_subscribers".into(), streams as f64);
    v.insert("survivor_lost".into(), lost as f64);
    v.insert("survivor_extra".into(), extra as f64);
    v.insert("survivor_out_of_sequence".into(), disorder as f64);
    v.insert("survivor_streams_ended".into(), ended as f64);
    if !complete || lost + extra + disorder + ended > 0 {
        bail!(
            "survivors: {lost} events lost, {extra} extra, {disorder} out of sequence, \
             {ended} streams ended"
        );
    }
    Ok(())
}

/// When the survivors' subscribers had the first event published after the kill.
struct Timing<'a> {
    killed: u64,
    survivors: &'a [&'a Group],
    moved: &'a [bool],
}

impl Timing<'_> {
    /// `first_event_all_ms` (every survivor stream), split into the killed relay's topics
    /// (`_moved_`) and the others; streams that never had it; nchan's figures.
    fn put(&self, v: &mut Values, nchan: &Watch) {
        let ms = |ns: u64| ns.saturating_sub(self.killed) as f64 / 1e6;
        let last = |moved: Option<bool>| {
            self.survivors
                .iter()
                .filter(|g| moved.is_none_or(|m| self.moved[g.topic] == m))
                .map(|g| g.tally.reached_mark_last_ns.load(Ordering::Acquire))
                .max()
                .unwrap_or(0)
        };
        v.insert("first_event_all_ms".into(), ms(last(None)));
        v.insert("first_event_moved_topics_ms".into(), ms(last(Some(true))));
        v.insert("first_event_other_topics_ms".into(), ms(last(Some(false))));
        let missing: u64 = self
            .survivors
            .iter()
            .map(|g| {
                g.subscribers
                    - g.tally
                        .reached_mark
                        .load(Ordering::Acquire)
                        .min(g.subscribers)
            })
            .sum();
        v.insert("first_event_missing_streams".into(), missing as f64);
        v.insert(
            "nchan_one_per_topic_ms".into(),
            ms(nchan.settled_ns.max(self.killed)),
        );
        v.insert("nchan_poll_ms".into(), POLL.as_secs_f64() * 1e3);
        v.insert("nchan_min_sum_after_kill".into(), nchan.min_sum as f64);
        v.insert("nchan_max_sum_after_kill".into(), nchan.max_sum as f64);
        v.insert("nchan_final_sum".into(), nchan.last_sum as f64);
    }
}

/// What the nchan poller saw.
struct Watch {
    /// The first sample of the final stretch in which every channel counted one subscriber
    /// ([`now_ns`], taken when the sample was complete); 0 if the last sample was not.
    settled_ns: u64,
    min_sum: u64,
    max_sum: u64,
    last_sum: u64,
}

/// Reads nchan's subscriber count on every channel every [`POLL`] until stopped.
struct NchanWatch {
    stop: Arc<AtomicBool>,
    all_one: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<Watch>>,
}

impl NchanWatch {
    fn start(port: u16, channels: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let all_one = Arc::new(AtomicBool::new(false));
        let (s, a) = (stop.clone(), all_one.clone());
        let task = tokio::spawn(async move {
            let publisher = Publisher::new(port, 0);
            let mut w = Watch {
                settled_ns: 0,
                min_sum: u64::MAX,
                max_sum: 0,
                last_sum: 0,
            };
            while !s.load(Ordering::Acquire) {
                let mut counts = Vec::with_capacity(channels.len());
                for channel in &channels {
                    counts.push(publisher.subscribers(channel).await?);
                }
                let t = now_ns();
                let good = counts.iter().all(|&c| c == 1);
                w.last_sum = counts.iter().sum();
                w.min_sum = w.min_sum.min(w.last_sum);
                w.max_sum = w.max_sum.max(w.last_sum);
                match (good, w.settled_ns) {
                    (false, _) => w.settled_ns = 0,
                    (true, 0) => w.settled_ns = t,
                    (true, _) => {}
                }
                a.store(good, Ordering::Release);
                tokio::time::sleep(POLL).await;
            }
            Ok(w)
        });
        Self {
            stop,
            all_one,
            task,
        }
    }

    /// Whether the latest sample counted one subscriber on every channel.
    fn all_one(&self) -> bool {
        self.all_one.load(Ordering::Acquire)
    }

    async fn stop(self) -> Result<Watch> {
        self.stop.store(true, Ordering::Release);
        self.task.await?
    }
}
