//! One second of the relay as the status page charts it: a [`Sample`] of the gauges as they
//! are and of what the counters added since the previous sample, per second, with the fan-out
//! latency's quantiles over that second from its histogram's buckets.
//!
//! It reads the components' metrics ([`Sources`]) and never writes them; it keeps only the
//! previous reading ([`Readings`]), so a sample costs a few dozen atomic loads and one copy of
//! the latency histogram's buckets, once a second, off every hot path.

use std::sync::Arc;
use std::time::Duration;

use prometheus::core::Metric;
use prometheus::Histogram;

use crate::admin::metrics::AdminMetrics;
use crate::downstream::DownstreamMetrics;
use crate::hub::HubMetrics;
use crate::ops::metrics::{Family, Label};
use crate::server::ServerMetrics;
use crate::upstream::{Failure, UpstreamMetrics};

/// Reasons of upstream failures in a sample, in [`Failure::ALL`]'s order.
const FAILURES: usize = Failure::ALL.len();

/// The metrics a sample reads.
#[derive(Clone)]
pub struct Sources {
    /// Subscribers, topics, catch-ups, shed subscribers.
    pub hub: Arc<HubMetrics>,
    /// Events in, failures by reason.
    pub upstream: Arc<UpstreamMetrics>,
    /// Deliveries, fan-out latency, lag, gaps.
    pub downstream: Arc<DownstreamMetrics>,
    /// Connections by protocol, refused connections.
    pub server: Arc<ServerMetrics>,
    /// Tails open.
    pub admin: Arc<AdminMetrics>,
    /// The hub of request streams (`None`: no `[[stream_route]]`).
    pub request_streams: Option<crate::hub::Hub>,
}

/// The relay over one second, as the status page charts it. Rates are per second over the
/// time since the previous sample; gauges are as read at `unix_ms`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Sample {
    /// When it was taken, ms since the Unix epoch (the sampler's start on the wall clock plus
    /// the monotonic time since: samples are ordered and a second apart whatever the wall
    /// clock does).
    pub unix_ms: u64,
    /// Subscribers attached (not counting tails), count.
    pub subscribers: u32,
    /// Admin tails open (`sse_relay_admin_tails`), count.
    pub tails: u32,
    /// Connections open over HTTP/2, count.
    pub connections_h2: u32,
    /// Connections open over HTTP/1.1, count.
    pub connections_http1: u32,
    /// Topics open, count.
    pub topics: u32,
    /// Event frames written to subscribers, per second.
    pub deliveries: f32,
    /// Events received from origins, per second.
    pub events_in: f32,
    /// Median fan-out latency (arrival from upstream to hand-off to a subscriber) over the
    /// second, ms; `None` when nothing was handed off.
    pub fanout_p50_ms: Option<f32>,
    /// 99th percentile of the same, ms.
    pub fanout_p99_ms: Option<f32>,
    /// Subscribers that fell out of their topic's ring (lag policy applied), per second.
    pub lagged: f32,
    /// Gaps met by subscribers, per second.
    pub gaps: f32,
    /// Upstream failures per second, by reason in the order of
    /// [`Sample::FAILURE_REASONS`].
    pub upstream_failures: [f32; FAILURES],
    /// Origin-assisted catch-ups that ended, per second.
    pub catch_ups: f32,
    /// Connections refused at a cap, per second.
    pub connections_refused: f32,
    /// New subscribers shed (buffer budget, topic caps, descriptors), per second.
    pub subscribers_shed: f32,
    /// Streams a request started whose answer is still being read; `None` without a
    /// `[[stream_route]]`.
    pub request_streams_open: Option<u32>,
    /// Of those, detached: no viewer attached; `None` likewise.
    pub request_streams_detached: Option<u32>,
    /// The process's resident memory, bytes (`None` where `/proc/self/statm` is absent).
    pub rss_bytes: Option<u64>,
}

impl Sample {
    /// The label of each entry of [`Sample::upstream_failures`], in order.
    pub const FAILURE_REASONS: [&'static str; FAILURES] = {
        let mut out = [""; FAILURES];
        let mut i = 0;
        while i < FAILURES {
            out[i] = failure_label(Failure::ALL[i]);
            i += 1;
        }
        out
    };
}

/// [`Failure`]'s label in a `const` context (its [`Label`] method is not `const`); the
/// sampler's unit test checks the two agree.
const fn failure_label(failure: Failure) -> &'static str {
    match failure {
        Failure::Connect => "connect",
        Failure::Status => "status",
        Failure::Refused => "refused",
        Failure::Redirect => "redirect",
        Failure::ContentType => "content_type",
        Failure::ContentEncoding => "content_encoding",
        Failure::Stream => "stream",
        Failure::IdleTimeout => "idle_timeout",
        Failure::LastEventId => "last_event_id",
    }
}

/// The counters' values at one instant, kept until the next sample.
#[derive(Debug, Clone, Default)]
pub struct Readings {
    deliveries: u64,
    events_in: u64,
    lagged: u64,
    gaps: u64,
    failures: [u64; FAILURES],
    catch_ups: u64,
    refused: u64,
    shed: u64,
    /// The fan-out latency histogram's buckets: (upper bound, cumulative count), in order.
    fanout: Vec<(f64, u64)>,
}

impl Sources {
    /// The counters now.
    pub fn read(&self) -> Readings {
        let mut failures = [0; FAILURES];
        for (slot, failure) in failures.iter_mut().zip(Failure::ALL) {
            *slot = self.upstream.failures.get(*failure).get();
        }
        Readings {
            deliveries: self.downstream.events_delivered.get(),
            events_in: self.upstream.events_received.get(),
            lagged: self.downstream.subscribers_lagged.get(),
            gaps: self.downstream.gaps.get(),
            failures,
            catch_ups: total(&self.hub.catch_ups),
            refused: total(&self.server.connections_refused),
            shed: self.hub.subscribers_shed.get(),
            fanout: buckets(&self.downstream.fanout_latency),
        }
    }

    /// The sample labelled `unix_ms`, with the counters `now` and `before` them, read
    /// `elapsed` apart (the rates are what they added, per second of it).
    pub fn sample(
        &self,
        unix_ms: u64,
        before: &Readings,
        now: &Readings,
        elapsed: Duration,
    ) -> Sample {
        let secs = elapsed.as_secs_f32().max(1e-3);
        let rate = |now: u64, before: u64| now.saturating_sub(before) as f32 / secs;
        let bounds: Vec<f64> = now.fanout.iter().map(|b| b.0).collect();
        let before_counts = before
            .fanout
            .iter()
            .map(|b| b.1)
            .chain(std::iter::repeat(0));
        let added: Vec<u64> = now
            .fanout
            .iter()
            .zip(before_counts)
            .map(|(n, b)| n.1.saturating_sub(b))
            .collect();
        let ms = |q| quantile(q, &bounds, &added).map(|s| (s * 1000.0) as f32);
        let open = &self.server.connections_open;
        let mut upstream_failures = [0.0; FAILURES];
        for (slot, (n, b)) in upstream_failures
            .iter_mut()
            .zip(now.failures.iter().zip(&before.failures))
        {
            *slot = rate(*n, *b);
        }
        Sample {
            unix_ms,
            subscribers: count(self.hub.subscribers.get()),
            tails: count(self.admin.tails.get()),
            connections_h2: count(open.h2.get()),
            connections_http1: count(open.http1.get()),
            topics: count(self.hub.topics.get()),
            deliveries: rate(now.deliveries, before.deliveries),
            events_in: rate(now.events_in, before.events_in),
            fanout_p50_ms: ms(0.5),
            fanout_p99_ms: ms(0.99),
            lagged: rate(now.lagged, before.lagged),
            gaps: rate(now.gaps, before.gaps),
            upstream_failures,
            catch_ups: rate(now.catch_ups, before.catch_ups),
            connections_refused: rate(now.refused, before.refused),
            subscribers_shed: rate(now.shed, before.shed),
            request_streams_open: self.request_streams.as_ref().map(|hub| {
                let open = hub.topics().into_iter().filter(|t| !t.is_closed());
                count(open.count() as i64)
            }),
            request_streams_detached: self.request_streams.as_ref().map(|hub| {
                let open = hub.topics().into_iter().filter(|t| !t.is_closed());
                count(open.filter(|t| t.subscriber_count() == 0).count() as i64)
            }),
            rss_bytes: rss_bytes(),
        }
    }
}

/// A gauge as a count (a gauge below zero, which a count never is, reads 0).
fn count(gauge: i64) -> u32 {
    u32::try_from(gauge.max(0)).unwrap_or(u32::MAX)
}

/// A counter family's sum over its label values.
fn total<E: Label>(family: &Family<E>) -> u64 {
    E::ALL.iter().map(|v| family.get(*v).get()).sum()
}

/// A histogram's buckets: (upper bound, cumulative count), in order, without `+Inf`.
fn buckets(histogram: &Histogram) -> Vec<(f64, u64)> {
    let metric = histogram.metric();
    let mut out: Vec<(f64, u64)> = metric
        .get_histogram()
        .get_bucket()
        .iter()
        .map(|b| (b.upper_bound(), b.cumulative_count()))
        .collect();
    // The observations above the last bound, as Prometheus' `+Inf` bucket counts them.
    out.push((f64::INFINITY, metric.get_histogram().get_sample_count()));
    out
}

/// The `q` quantile (0..=1) of the observations whose cumulative counts per bucket are
/// `cumulative` (upper bounds `bounds`, the last `+Inf`), interpolated linearly within the
/// bucket it falls in, as Prometheus' `histogram_quantile` does; in the `+Inf` bucket, the
/// highest finite bound. `None` without observations.
pub fn quantile(q: f64, bounds: &[f64], cumulative: &[u64]) -> Option<f64> {
    let total = *cumulative.last()?;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let index = cumulative.iter().position(|&c| c as f64 >= rank)?;
    let upper = bounds.get(index).copied()?;
    let lower = if index == 0 { 0.0 } else { bounds[index - 1] };
    if upper.is_infinite() {
        return Some(lower);
    }
    let below = if index == 0 { 0 } else { cumulative[index - 1] };
    let inside = (cumulative[index] - below) as f64;
    Some(lower + (upper - lower) * ((rank - below as f64) / inside.max(1.0)))
}

/// The process's resident memory from `/proc/self/statm` (its second field, in pages; the page
/// size from `sysconf(3)`), bytes.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: `sysconf` only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons_are_the_metrics_labels() {
        let labels: Vec<&str> = Failure::ALL.iter().map(|f| f.label()).collect();
        assert_eq!(Sample::FAILURE_REASONS.to_vec(), labels);
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_as_prometheus_does() {
        let bounds = [1.0, 2.0, 4.0, f64::INFINITY];
        // 10 observations ≤ 1, 10 in (1, 2], none in (2, 4], 0 above.
        let cumulative = [10, 20, 20, 20];
        assert_eq!(quantile(0.5, &bounds, &cumulative), Some(1.0));
        assert_eq!(quantile(0.75, &bounds, &cumulative), Some(1.5));
        assert_eq!(quantile(0.25, &bounds, &cumulative), Some(0.5));
        assert_eq!(
            quantile(0.99, &bounds, &[0, 0, 0, 5]),
            Some(4.0),
            "+Inf: the top bound"
        );
        assert_eq!(
            quantile(0.5, &bounds, &[0, 0, 0, 0]),
            None,
            "no observations"
        );
    }

    #[test]
    fn a_sample_is_small_enough_for_fifteen_minutes_in_a_few_hundred_kib() {
        let ring = std::mem::size_of::<Sample>() * super::super::ring::CAPACITY;
        assert!(
            std::mem::size_of::<Sample>() < 200 && ring < 180 * 1024,
            "{} bytes a sample, {ring} for the ring",
            std::mem::size_of::<Sample>()
        );
    }
}
