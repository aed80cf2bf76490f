//! The single-event fan-out scenarios: idle RSS per subscriber and one event to every
//! subscriber, over one connection each (the sweep, HTTP/1.1), multiplexed h2 streams, and the
//! 100k-subscriber one.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Result;

use super::target::{CpuMark, Started};
use super::{Bench, Record, Values, BIG_ROUNDS};
use crate::client::{self, quantiles, Fleet, Proto, Tally};

impl Bench {
    /// Idle RSS per subscriber and single-event fan-out, S connections × 1 stream.
    pub(super) async fn sweep(&self, t: &mut Started, s: usize, record: &mut Record) -> Result<()> {
        let v = &mut record.values;
        self.settle().await;
        let base = t.measured().rss_bytes()?;
        let tally = Tally::new();
        let sub = t.subscribe(self, Proto::H2, &tally);
        let (fleet, _conns) = client::open(&sub, s, 1, 64, Duration::from_secs(300)).await?;
        t.wait_ready(s as u64).await?;
        self.settle().await;
        let loaded = t.measured().rss_bytes()?;
        v.insert("rss_base_bytes".into(), base as f64);
        v.insert("rss_loaded_bytes".into(), loaded as f64);
        v.insert(
            "rss_per_sub_bytes".into(),
            (loaded as f64 - base as f64) / s as f64,
        );
        t.origin_figures(v).await?;
        self.fanout(t, &tally, s as u64, self.sizes.rounds, v)
            .await?;
        tls_figures(&tally, v);
        drop(fleet);
        Ok(())
    }

    /// RSS per extra multiplexed stream (C × 1 → C × M), then fan-out over C × M.
    pub(super) async fn multiplexed(&self, t: &mut Started, record: &mut Record) -> Result<()> {
        let (c, m) = self.sizes.mux;
        record.shape = format!("{c} conn × {m} streams (h2)");
        record.subscribers = (c * m) as u64;
        let v = &mut record.values;
        self.settle().await;
        let base = t.measured().rss_bytes()?;
        let tally = Tally::new();
        let sub = t.subscribe(self, Proto::H2, &tally);
        let (mut fleet, conns) = client::open(&sub, c, 1, 64, Duration::from_secs(120)).await?;
        t.wait_ready(c as u64).await?;
        self.settle().await;
        let one = t.measured().rss_bytes()?;
        let mut adds = tokio::task::JoinSet::new();
        for mut conn in conns {
            let sub = sub.clone();
            adds.spawn(async move {
                let mut f = Fleet::default();
                client::add_streams(&sub, &mut conn, m - 1, &mut f).await?;
                anyhow::Ok(f)
            });
        }
        while let Some(added) = adds.join_next().await {
            fleet.absorb(added??);
        }
        t.wait_ready((c * m) as u64).await?;
        self.settle().await;
        let all = t.measured().rss_bytes()?;
        v.insert("rss_base_bytes".into(), base as f64);
        v.insert("rss_one_stream_bytes".into(), one as f64);
        v.insert("rss_loaded_bytes".into(), all as f64);
        v.insert(
            "rss_per_extra_stream_bytes".into(),
            (all as f64 - one as f64) / (c * (m - 1)) as f64,
        );
        v.insert(
            "rss_per_sub_bytes".into(),
            (all as f64 - base as f64) / (c * m) as f64,
        );
        t.origin_figures(v).await?;
        self.fanout(t, &tally, (c * m) as u64, self.sizes.rounds, v)
            .await?;
        tls_figures(&tally, v);
        drop(fleet);
        Ok(())
    }

    /// Single-event fan-out over HTTP/1.1, one connection per subscriber.
    pub(super) async fn http1(&self, t: &mut Started, record: &mut Record) -> Result<()> {
        let s = self.sizes.h1;
        record.shape = format!("{s} conn × 1 (HTTP/1.1)");
        record.subscribers = s as u64;
        let v = &mut record.values;
        self.settle().await;
        let base = t.measured().rss_bytes()?;
        let tally = Tally::new();
        let sub = t.subscribe(self, Proto::H1, &tally);
        let (fleet, _) = client::open(&sub, s, 1, 64, Duration::from_secs(120)).await?;
        t.wait_ready(s as u64).await?;
        self.settle().await;
        let loaded = t.measured().rss_bytes()?;
        v.insert(
            "rss_per_sub_bytes".into(),
            (loaded as f64 - base as f64) / s as f64,
        );
        self.fanout(t, &tally, s as u64, self.sizes.rounds, v)
            .await?;
        tls_figures(&tally, v);
        drop(fleet);
        Ok(())
    }

    /// `rounds` single events (after one warm-up), each waited for by every subscriber:
    /// latency quantiles and server CPU per delivery.
    pub(super) async fn fanout(
        &self,
        t: &mut Started,
        tally: &Tally,
        subscribers: u64,
        rounds: u64,
        v: &mut Values,
    ) -> Result<()> {
        let timeout = Duration::from_secs(60);
        t.publisher.publish(&t.channel, 0).await?;
        tally.wait_delivered(subscribers, timeout).await?;
        tally.reset_latency();
        tally.recording.store(true, Ordering::Release);
        let cpu = CpuMark::take(t)?;
        for round in 1..=rounds {
            tokio::time::sleep(Duration::from_millis(100)).await;
            t.publisher.publish(&t.channel, round).await?;
            tally
                .wait_delivered(subscribers * (round + 1), timeout)
                .await?;
        }
        let cpu = cpu.finish(t)?;
        tally.recording.store(false, Ordering::Release);
        let q = quantiles(&tally.latency());
        v.insert("p50_us".into(), q.p50 as f64);
        v.insert("p99_us".into(), q.p99 as f64);
        v.insert("max_us".into(), q.max as f64);
        v.insert("samples".into(), q.count as f64);
        cpu.per("delivery", subscribers * rounds, v);
        tally.check()
    }

    /// The big one: C connections × M streams, RSS total and single-event fan-out.
    pub(super) async fn big(&self, t: &mut Started, record: &mut Record) -> Result<()> {
        let (c, m) = self.sizes.big;
        let s = (c * m) as u64;
        record.shape = format!("{c} conn × {m} streams (h2)");
        record.subscribers = s;
        let v = &mut record.values;
        self.settle().await;
        let base = t.measured().rss_bytes()?;
        let tally = Tally::new();
        let sub = t.subscribe(self, Proto::H2, &tally);
        let (fleet, _) = client::open(&sub, c, m, 32, Duration::from_secs(600)).await?;
        t.wait_ready(s).await?;
        self.settle().await;
        let loaded = t.measured().rss_bytes()?;
        v.insert("rss_base_bytes".into(), base as f64);
        v.insert("rss_loaded_bytes".into(), loaded as f64);
        v.insert(
            "rss_per_sub_bytes".into(),
            (loaded as f64 - base as f64) / s as f64,
        );
        t.origin_figures(v).await?;
        self.fanout(t, &tally, s, self.sizes.rounds.min(BIG_ROUNDS), v)
            .await?;
        let after = t.measured().rss_bytes()?;
        v.insert("rss_after_fanout_bytes".into(), after as f64);
        tls_figures(&tally, v);
        drop(fleet);
        Ok(())
    }
}

fn tls_figures(tally: &Tally, v: &mut Values) {
    let frames = tally.event_frames.load(Ordering::Acquire).max(1);
    v.insert(
        "events_per_frame".into(),
        tally.delivered.load(Ordering::Acquire) as f64 / frames as f64,
    );
}
