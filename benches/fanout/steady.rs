//! A steady publish rate over several topics for the cluster benchmark: one event at a time,
//! the topics in turn, each at the same rate (so a topic's subscribers get one event every
//! 1/rate s and the machine sees an even load rather than bursts), pipelined on one connection
//! to nchan so the rate does not depend on its answers. Also measures delivery latency at that
//! rate. It publishes only; it never starts or stops servers.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use tokio::time::Interval;

use crate::cluster::Group;
use crate::publisher::Pipeline;

/// Events published one topic after another, each topic at the same steady rate.
pub struct Steady<'a> {
    pipe: Pipeline,
    channels: &'a [String],
    next: Vec<u64>,
    turn: usize,
    ticks: Interval,
}

impl<'a> Steady<'a> {
    /// Connects to nchan on `port`; every topic's next event is numbered `first_seq`, and
    /// each topic gets `rate` events per second.
    pub async fn connect(
        port: u16,
        payload: usize,
        channels: &'a [String],
        first_seq: u64,
        rate: u64,
    ) -> Result<Self> {
        let per_s = (rate * channels.len() as u64).max(1);
        Ok(Self {
            pipe: Pipeline::connect(port, payload).await?,
            channels,
            next: vec![first_seq; channels.len()],
            turn: 0,
            ticks: tokio::time::interval(Duration::from_nanos(1_000_000_000 / per_s)),
        })
    }

    /// Waits for the next tick and publishes the next topic's next event.
    pub async fn tick(&mut self) -> Result<()> {
        self.ticks.tick().await;
        let t = self.turn % self.channels.len();
        self.turn += 1;
        self.publish(t).await
    }

    /// Publishes one event on every topic now.
    pub async fn all(&mut self) -> Result<()> {
        for t in 0..self.channels.len() {
            self.publish(t).await?;
        }
        Ok(())
    }

    /// Each topic's next sequence number: events published on it so far, the rounds before
    /// included (sequence numbers start at 0).
    pub fn published(&self) -> &[u64] {
        &self.next
    }

    /// Waits until nchan answered every publish request.
    pub async fn finish(self, timeout: Duration) -> Result<()> {
        self.pipe.finish(timeout).await.map(|_| ())
    }

    async fn publish(&mut self, t: usize) -> Result<()> {
        let seq = self.next[t];
        self.next[t] += 1;
        self.pipe.publish(&self.channels[t], seq..seq + 1).await
    }

    /// Publishes for `duration` with latency recorded afresh for `groups`, then waits until
    /// they had every event; fails on a lost, duplicated or reordered event or an ended
    /// stream.
    pub async fn measure(&mut self, groups: &[Group], duration: Duration) -> Result<()> {
        for g in groups {
            g.tally.reset_latency();
            g.tally.recording.store(true, Ordering::Release);
        }
        let start = Instant::now();
        while start.elapsed() < duration {
            self.tick().await?;
        }
        let all: Vec<&Group> = groups.iter().collect();
        let complete = delivered_all(&all, self.published(), Duration::from_secs(60)).await;
        for g in groups {
            g.tally.recording.store(false, Ordering::Release);
            g.tally.check()?;
        }
        if !complete {
            bail!("the relays fell behind {duration:?} of steady publishing");
        }
        Ok(())
    }
}

/// Waits until every stream of `groups` had all the events `published` on its topic; false if
/// some were still missing at `timeout`.
pub async fn delivered_all(groups: &[&Group], published: &[u64], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let all = groups.iter().all(|g| {
            g.tally.delivered.load(Ordering::Acquire) >= g.subscribers * published[g.topic]
        });
        if all || Instant::now() > deadline {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
