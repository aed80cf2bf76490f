//! The request streams' own metrics: how starts, resumes and cancellations went, how the
//! origins' answers pace their events. The streams' topics, viewers and bytes held are the
//! request-stream hub's (`sse_relay_request_stream_topics`, `…_subscribers`,
//! `…_buffered_bytes`).

use prometheus::{IntCounter, Registry};

use crate::ops::metrics::{counter, histogram, Family, Label};
use crate::upstream::AnswerMetrics;

/// How a POST on a stream route went (`sse_relay_request_streams_started_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    /// The answer was an event stream and is kept as a resumable stream.
    Kept,
    /// The answer was not `200 text/event-stream`: passed through untouched, nothing kept.
    NotEventStream,
    /// The answer was an event stream but `streams.max_streams` or `streams.max_bytes` was
    /// reached: passed through untouched, not resumable.
    NotKept,
}

impl Label for StartOutcome {
    const ALL: &'static [Self] = &[Self::Kept, Self::NotEventStream, Self::NotKept];

    fn label(self) -> &'static str {
        match self {
            Self::Kept => "kept",
            Self::NotEventStream => "not_event_stream",
            Self::NotKept => "not_kept",
        }
    }
}

/// How a resume went (`sse_relay_request_streams_resumed_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeOutcome {
    /// The viewer follows the stream.
    Followed,
    /// The stream ended and nothing was left after the viewer's last event: 204.
    Ended,
    /// No such stream for this viewer: 404 (on an MCP endpoint, passed to the origin).
    NotFound,
}

impl Label for ResumeOutcome {
    const ALL: &'static [Self] = &[Self::Followed, Self::Ended, Self::NotFound];

    fn label(self) -> &'static str {
        match self {
            Self::Followed => "followed",
            Self::Ended => "ended",
            Self::NotFound => "not_found",
        }
    }
}

/// Who cancelled a stream (`sse_relay_request_streams_cancelled_total{by}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelledBy {
    /// A `DELETE` of its resume URL.
    Delete,
    /// The end of its MCP session (`DELETE` on the MCP endpoint).
    SessionEnd,
}

impl Label for CancelledBy {
    const ALL: &'static [Self] = &[Self::Delete, Self::SessionEnd];

    fn label(self) -> &'static str {
        match self {
            Self::Delete => "delete",
            Self::SessionEnd => "session_end",
        }
    }
}

/// The request streams' metrics.
pub struct StreamMetrics {
    /// POSTs on stream routes by outcome (counter).
    pub started: Family<StartOutcome>,
    /// Resumes by outcome (counter).
    pub resumed: Family<ResumeOutcome>,
    /// Streams cancelled, by who (counter).
    pub cancelled: Family<CancelledBy>,
    /// Streams whose answers were given up unfinished because their viewers left
    /// (`on_disconnect = "cancel"`) or the relay drained (counter).
    pub dropped: IntCounter,
    /// What the answers' readers measure.
    pub answers: AnswerMetrics,
}

/// Bucket bounds of the time to a stream's first event, s: an LLM may think for a minute.
const FIRST_EVENT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Bucket bounds of the gap between two events of a stream, s.
const GAP_BUCKETS: &[f64] = &[
    0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

impl StreamMetrics {
    /// Registers the metrics in `registry`.
    ///
    /// # Errors
    /// A `prometheus::Error` if a name is already registered there.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let r = registry;
        let dropped = counter(
            r,
            "sse_relay_request_streams_dropped_total",
            "Request streams given up unfinished: their viewers left (on_disconnect = cancel) or the relay drained.",
        )?;
        Ok(Self {
            started: Family::new(
                r,
                "sse_relay_request_streams_started_total",
                "POSTs on stream routes, by outcome (kept, not_event_stream, not_kept).",
                "outcome",
            )?,
            resumed: Family::new(
                r,
                "sse_relay_request_streams_resumed_total",
                "Resumes of request streams, by outcome (followed, ended, not_found).",
                "outcome",
            )?,
            cancelled: Family::new(
                r,
                "sse_relay_request_streams_cancelled_total",
                "Request streams cancelled, by who (delete, session_end).",
                "by",
            )?,
            answers: AnswerMetrics {
                first_event: histogram(
                    r,
                    "sse_relay_request_stream_first_event_seconds",
                    "Time from a request stream's response headers to its first event.",
                    FIRST_EVENT_BUCKETS.to_vec(),
                )?,
                between_events: histogram(
                    r,
                    "sse_relay_request_stream_event_gap_seconds",
                    "Time between two events of a request stream.",
                    GAP_BUCKETS.to_vec(),
                )?,
                dropped: dropped.clone(),
            },
            dropped,
        })
    }
}

/// The request streams' states at the moment of a scrape: `sse_relay_request_streams_open`
/// (the answer still being read), `…_detached` (of those, with no viewer) and `…_retained`
/// (finished, kept resumable). Read from the hub when Prometheus collects, so nothing is
/// counted per event or per viewer.
pub struct StreamStates {
    hub: crate::hub::Hub,
    open: prometheus::IntGauge,
    detached: prometheus::IntGauge,
    retained: prometheus::IntGauge,
}

impl StreamStates {
    /// The states of the streams `hub` holds.
    ///
    /// # Errors
    /// A `prometheus::Error` for an invalid name (none is).
    pub fn new(hub: crate::hub::Hub) -> prometheus::Result<Self> {
        let gauge = |name: &str, help: &str| prometheus::IntGauge::new(name, help);
        Ok(Self {
            hub,
            open: gauge(
                "sse_relay_request_streams_open",
                "Request streams whose answer is still being read.",
            )?,
            detached: gauge(
                "sse_relay_request_streams_detached",
                "Open request streams with no viewer attached.",
            )?,
            retained: gauge(
                "sse_relay_request_streams_retained",
                "Finished request streams kept resumable (streams.retain_ms).",
            )?,
        })
    }
}

impl prometheus::core::Collector for StreamStates {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        [&self.open, &self.detached, &self.retained]
            .into_iter()
            .flat_map(|g| g.desc())
            .collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let (mut open, mut detached, mut retained) = (0, 0, 0);
        for topic in self.hub.topics() {
            if topic.is_closed() {
                retained += 1;
            } else {
                open += 1;
                detached += i64::from(topic.subscriber_count() == 0);
            }
        }
        self.open.set(open);
        self.detached.set(detached);
        self.retained.set(retained);
        [&self.open, &self.detached, &self.retained]
            .into_iter()
            .flat_map(|g| g.collect())
            .collect()
    }
}
