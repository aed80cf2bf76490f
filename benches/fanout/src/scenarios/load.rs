//! The scenarios under load: a steady event rate, a burst of events back to back, and new
//! connections as fast as they complete.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::target::{CpuMark, Started};
use super::{Bench, Record};
use crate::client::{self, quantiles, Fleet, Proto, Tally};
use crate::publisher::Pipeline;

impl Bench {
    /// A steady event rate for a duration: latency, loss, CPU.
    pub(super) async fn sustained(&self, t: &mut Started, record: &mut Record) -> Result<()> {
        let (c, m, rate, secs) = self.sizes.sustained;
        let s = c * m;
        record.shape = format!("{c} conn × {m} streams (h2), {rate} events/s for {secs} s");
        record.subscribers = s as u64;
        let v = &mut record.values;
        let tally = Tally::new();
        let sub = t.subscribe(self, Proto::H2, &tally);
        let (fleet, _) = client::open(&sub, c, m, 64, Duration::from_secs(120)).await?;
        t.wait_ready(s as u64).await?;
        tally.recording.store(true, Ordering::Release);
        let events = rate * secs;
        let cpu = CpuMark::take(t)?;
        let mut pipe = Pipeline::connect(t.nginx.plain_port, self.payload).await?;
        let start = Instant::now();
        let mut ticks = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
        for seq in 0..events {
            ticks.tick().await;
            pipe.publish(&t.channel, seq..seq + 1).await?;
            if seq % rate == 0 {
                tally.check()?;
            }
        }
        let published_in = start.elapsed();
        let (answered, delivered) = tokio::join!(
            pipe.finish(Duration::from_secs(60)),
            tally.wait_delivered(s as u64 * events, Duration::from_secs(60))
        );
        answered.context("the target fell behind the publish rate")?;
        delivered.context("the target fell behind the publish rate")?;
        let cpu = cpu.finish(t)?;
        let q = quantiles(&tally.latency());
        v.insert("events".into(), events as f64);
        v.insert(
            "published_per_s".into(),
            events as f64 / published_in.as_secs_f64(),
        );
        v.insert("p50_us".into(), q.p50 as f64);
        v.insert("p99_us".into(), q.p99 as f64);
        v.insert("max_us".into(), q.max as f64);
        cpu.per("delivery", s as u64 * events, v);
        v.insert(
            "lost".into(),
            (s as u64 * events).saturating_sub(tally.delivered.load(Ordering::Acquire)) as f64,
        );
        tally.check()?;
        drop(fleet);
        Ok(())
    }

    /// Events published back to back (faster than the sockets drain): delivery rate, events
    /// per TLS record and per h2 DATA frame, and RSS some seconds later.
    pub(super) async fn burst(&self, t: &mut Started, record: &mut Record) -> Result<()> {
        let (s, events) = self.sizes.burst;
        record.shape = format!("{s} conn × 1 (h2), {events} events back to back");
        record.subscribers = s as u64;
        let v = &mut record.values;
        let tally = Tally::new();
        let sub = t.subscribe(self, Proto::H2, &tally);
        let (fleet, _) = client::open(&sub, s, 1, 64, Duration::from_secs(120)).await?;
        t.wait_ready(s as u64).await?;
        self.settle().await;
        let idle = t.measured().rss_bytes()?;
        let (records, frames) = (
            tally.records.load(Ordering::Acquire),
            tally.event_frames.load(Ordering::Acquire),
        );
        tally.recording.store(true, Ordering::Release);
        let cpu = CpuMark::take(t)?;
        let mut pipe = Pipeline::connect(t.nginx.plain_port, self.payload).await?;
        let start = client::now_ns();
        pipe.publish(&t.channel, 0..events).await?;
        let total = s as u64 * events;
        let (answered, delivered) = tokio::join!(
            pipe.finish(Duration::from_secs(180)),
            tally.wait_delivered(total, Duration::from_secs(180))
        );
        let published = answered? - start;
        delivered?;
        let took = tally.last_delivery_ns.load(Ordering::Acquire) - start;
        let cpu = cpu.finish(t)?;
        let peak = t.measured().rss_bytes()?;
        let q = quantiles(&tally.latency());
        let records = tally.records.load(Ordering::Acquire) - records;
        let frames = tally.event_frames.load(Ordering::Acquire) - frames;
        v.insert("deliveries".into(), total as f64);
        v.insert(
            "published_per_s".into(),
            events as f64 * 1e9 / published as f64,
        );
        v.insert("deliveries_per_s".into(), total as f64 * 1e9 / took as f64);
        v.insert(
            "events_per_record".into(),
            total as f64 / records.max(1) as f64,
        );
        v.insert(
            "events_per_frame".into(),
            total as f64 / frames.max(1) as f64,
        );
        v.insert("p99_us".into(), q.p99 as f64);
        v.insert("max_us".into(), q.max as f64);
        cpu.per("delivery", total, v);
        tally.check()?;
        tokio::time::sleep(Duration::from_secs(self.sizes.burst_settle_s)).await;
        let after = t.measured().rss_bytes()?;
        v.insert("rss_idle_bytes".into(), idle as f64);
        v.insert("rss_peak_bytes".into(), peak as f64);
        v.insert("rss_after_bytes".into(), after as f64);
        v.insert("rss_after_over_idle".into(), after as f64 / idle as f64);
        tally.check()?;
        drop(fleet);
        Ok(())
    }

    /// New TLS + h2 + subscribe as fast as they complete (`concurrency` in flight) for a
    /// duration: setups per second and setup latency; then one event must reach them all.
    pub(super) async fn ramp(&self, t: &mut Started, record: &mut Record) -> Result<()> {
        let (secs, cap, concurrency) = self.sizes.ramp;
        record.shape = format!("new conn + h2 + subscribe, {concurrency} in flight, {secs} s");
        let tally = Tally::new();
        let sub = t.subscribe(self, Proto::H2, &tally);
        let setup = Arc::new(Mutex::new(client::histogram()));
        let cpu = CpuMark::take(t)?;
        let start = Instant::now();
        let deadline = start + Duration::from_secs(secs);
        let mut workers = tokio::task::JoinSet::new();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..concurrency {
            let (sub, setup, next) = (sub.clone(), setup.clone(), next.clone());
            workers.spawn(async move {
                let mut fleet = Fleet::default();
                while Instant::now() < deadline {
                    let index = next.fetch_add(1, Ordering::AcqRel);
                    if index >= cap {
                        break;
                    }
                    let began = Instant::now();
                    let mut conn = client::connect(&sub, index, &mut fleet).await?;
                    client::add_streams(&sub, &mut conn, 1, &mut fleet).await?;
                    let us = began.elapsed().as_micros() as u64;
                    if let Ok(mut h) = setup.lock() {
                        h.saturating_record(us.max(1));
                    }
                }
                anyhow::Ok(fleet)
            });
        }
        let mut fleet = Fleet::default();
        while let Some(done) = workers.join_next().await {
            fleet.absorb(done?.context("ramp setup")?);
        }
        let elapsed = start.elapsed();
        let cpu = cpu.finish(t)?;
        let n = fleet.subscribers;
        record.subscribers = n;
        let v = &mut record.values;
        let q = match setup.lock() {
            Ok(h) => quantiles(&h),
            Err(_) => bail!("setup histogram poisoned"),
        };
        v.insert("subscribers".into(), n as f64);
        v.insert("setups_per_s".into(), n as f64 / elapsed.as_secs_f64());
        v.insert("setup_p50_us".into(), q.p50 as f64);
        v.insert("setup_p99_us".into(), q.p99 as f64);
        cpu.per("setup", n.max(1), v);
        t.wait_ready(n).await?;
        t.publisher.publish(&t.channel, 0).await?;
        tally.wait_delivered(n, Duration::from_secs(60)).await?;
        tally.check()?;
        drop(fleet);
        Ok(())
    }
}
