//! A steady publish rate over several topics for the cluster benchmark: one event at a time,
//! the topics in turn, each at the same rate (so a topic's subscribers get one event every
//! 1/rate s and the machine sees an even load rather than bursts), pipelined on one connection
//! to nchan so the rate does not depend on its answers. Also measures delivery latency at that
//! rate. It publishes only; it never starts or stops servers.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use tokio::time::Interval;

use crate::groups::Group;
use crate::procs::{proc_cpu, Child, Cpu};
use crate::publisher::Pipeline;
use crate::scenarios::{machine_busy, Values};

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
    /// stream. Records in `v` the CPU the named `servers`, this process and the machine used
    /// meanwhile ([`CpuMark`]).
    pub async fn measure(
        &mut self,
        groups: &[Group],
        duration: Duration,
        servers: &[(String, &Child)],
        v: &mut Values,
    ) -> Result<()> {
        for g in groups {
            g.tally.reset_latency();
            g.tally.recording.store(true, Ordering::Release);
        }
        let cpu = CpuMark::take(servers)?;
        let start = Instant::now();
        while start.elapsed() < duration {
            self.tick().await?;
        }
        cpu.put(v, "steady_cpu_cores.")?;
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

/// CPU times at the start of a stretch: each named server's, this process's (load generator
/// and publisher) and the machine's busy time (all cores).
struct CpuMark<'a> {
    servers: Vec<(&'a str, &'a Child, Cpu)>,
    client: Cpu,
    machine: Duration,
    wall: Instant,
}

impl<'a> CpuMark<'a> {
    fn take(servers: &'a [(String, &'a Child)]) -> Result<Self> {
        let servers = servers
            .iter()
            .map(|(name, child)| Ok((name.as_str(), *child, child.cpu_time()?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            servers,
            client: proc_cpu("self")?,
            machine: machine_busy()?,
            wall: Instant::now(),
        })
    }

    /// Records the CPU used since [`Self::take`] in cores (CPU seconds per second of wall
    /// time) as `<prefix><server name>`, `<prefix>client` and `<prefix>machine` (2 = both
    /// cores busy).
    fn put(self, v: &mut Values, prefix: &str) -> Result<()> {
        let wall = self.wall.elapsed().as_secs_f64();
        let cores = |d: Duration| d.as_secs_f64() / wall;
        for (name, child, before) in &self.servers {
            let used = child.cpu_time()?.since(*before).total();
            v.insert(format!("{prefix}{name}"), cores(used));
        }
        let client = proc_cpu("self")?.since(self.client).total();
        v.insert(format!("{prefix}client"), cores(client));
        let machine = machine_busy()?.saturating_sub(self.machine);
        v.insert(format!("{prefix}machine"), cores(machine));
        Ok(())
    }
}
