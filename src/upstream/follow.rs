//! Following one origin stream for a topic: attempt after attempt, resuming with the last event
//! id seen (WHATWG HTML §9.2.4: the `Last-Event-ID` request header), backing off with full
//! jitter, never sooner than the origin's `retry:` and `Retry-After` ask, until the origin closes the
//! topic with 204 or refuses it for good. It also decides the topic's [`crate::hub::Verdict`]:
//! a stream, or an outage the relay retries (5xx but 508, 408, 429, a network error), gives
//! subscribers their 200 stream; a refusal (any other status but 200 and 204, a redirect not
//! followed, [`MAX_NOT_EVENT_STREAM`] answers in a row that are not an event stream) is passed
//! on to them. The backoff restarts only after a stream stayed up for its ceiling, so an
//! origin that answers, sends an event and closes is not asked again at the minimum delay.
//!
//! In a cluster an attempt ends as soon as the topic's source changes (a new owner), and so does
//! a backoff wait: the delay was earned by the source that failed, not by the new one, whose
//! backoff starts afresh. A peer's `retry:` is the origin's advice to browsers, which the
//! attempt passes on to the topic's subscribers; it never sets this relay's backoff toward the
//! peer.
//!
//! Each turn of the loop is four steps, one method each of [`Follower`]: choose the source,
//! attempt, settle (what the attempt's end means: the topic is over, move at once, or retry)
//! and back off.
//!
//! It returns only when the topic is over; its supervisor drops it on retire or drain. It never
//! writes to a subscriber: what subscribers learn goes through the [`Topic`].

use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use tracing::{debug, warn};

use super::attempt::{Attempt, AttemptEnd, AttemptError, TopicWarnings};
use super::backoff::Backoff;
use super::metrics::{Defect, Failure, Refusal};
use super::peer::{self, PeerRoute, SourceGauge};
use super::request::{OriginRequest, RequestError};
use super::{Upstream, UpstreamHeaders, MAX_LAST_EVENT_ID_BYTES};
use crate::cluster::Source;
use crate::hub::{OriginAnswer, Topic, UpstreamEnd, UpstreamState};
use crate::ops::metrics::Label;
use crate::sse::Parser;

/// Answers in a row that are `200` but not `text/event-stream` (a login page, a proxy's error
/// page) before the topic is refused with 502: a brief misroute during a deploy is ridden out,
/// a wrong upstream URL is not retried forever.
pub const MAX_NOT_EVENT_STREAM: u32 = 3;

impl Upstream {
    /// Subscribes to `uri` for `topic` until the origin closes the topic with 204 or refuses
    /// it for good.
    pub(super) async fn follow(
        &self,
        uri: Uri,
        headers: &UpstreamHeaders,
        hops: &str,
        topic: &Topic,
    ) -> UpstreamEnd {
        let mut follower = Follower::new(self, uri, headers, hops, topic);
        loop {
            let chosen = follower.choose_source();
            let end = follower.attempt(&chosen).await;
            match follower.settle(end) {
                Next::Over(end) => return end,
                Next::Move => {}
                Next::Retry { retry_after } => follower.back_off(&chosen, retry_after).await,
            }
        }
    }
}

/// One topic's following of its origin: what carries over from one attempt to the next.
struct Follower<'a> {
    upstream: &'a Upstream,
    /// The route's upstream URL for this topic.
    uri: Uri,
    /// The route's headers toward the origin.
    headers: &'a UpstreamHeaders,
    /// The relays the subscription passed through, this one last.
    hops: &'a str,
    topic: &'a Topic,
    warnings: TopicWarnings,
    /// The topic's parser: an event cut by a broken stream is dropped, its id kept.
    parser: Parser,
    /// The id the next attempt resumes after (`Last-Event-ID`).
    last_id: Option<String>,
    /// The first subscriber's resume point, until the origin has opened a stream once.
    client_id: Option<String>,
    /// The origin's last `retry:` value (a peer's is its advice to browsers, never used here).
    retry: Option<Duration>,
    backoff: Backoff,
    /// Answers in a row that were not an event stream.
    not_event_stream: u32,
    /// The source of the last attempt.
    last_source: Option<Source>,
    /// Attempts started, count.
    attempts: u64,
}

/// Where one attempt reads from, chosen when it starts.
struct ChosenSource<'a> {
    /// The source it reads.
    source: Source,
    /// The owning peer's route when `source` is a peer.
    peer_route: Option<PeerRoute<'a>>,
    /// What the cluster's view says the source is. A peer whose URL could not be made for this
    /// key is read from the origin, and the watches wait for the view to change, not for
    /// `source` to match it.
    expected_source: Source,
    /// Counts the topic under its source for the attempt and its backoff.
    _gauge: Option<SourceGauge>,
}

/// What follows an attempt.
enum Next {
    /// The topic is over.
    Over(UpstreamEnd),
    /// The topic's source changed: the next attempt starts at once.
    Move,
    /// The next attempt starts after a backoff, at least `retry_after` (the origin's
    /// `Retry-After`).
    Retry { retry_after: Option<Duration> },
}

impl<'a> Follower<'a> {
    fn new(
        upstream: &'a Upstream,
        uri: Uri,
        headers: &'a UpstreamHeaders,
        hops: &'a str,
        topic: &'a Topic,
    ) -> Self {
        let client_id = topic.initial_last_event_id().map(str::to_string);
        Self {
            upstream,
            uri,
            headers,
            hops,
            topic,
            warnings: TopicWarnings::default(),
            parser: Parser::new(upstream.settings.max_event_bytes),
            last_id: client_id.clone(),
            client_id,
            retry: None,
            backoff: upstream.settings.backoff.clone(),
            not_event_stream: 0,
            last_source: None,
            attempts: 0,
        }
    }

    /// Starts an attempt (a reconnect after the first) and chooses its source: the owning
    /// peer in a cluster, else the origin. A source other than the last one may start further
    /// back than asked (the topic expects an overlap) and starts with a fresh backoff.
    fn choose_source(&mut self) -> ChosenSource<'a> {
        if self.attempts > 0 {
            self.upstream.metrics.reconnects.inc();
        }
        self.attempts += 1;
        self.topic.set_upstream_state(UpstreamState::Connecting);
        let cluster = self.upstream.cluster.as_ref();
        let peer_route =
            cluster.and_then(|(cluster, token)| peer::peer_route(cluster, token, self.topic));
        let source = peer_route
            .as_ref()
            .map_or(Source::Origin, |route| Source::Peer(route.addr));
        self.topic
            .set_source(peer_route.as_ref().map(|route| route.addr));
        let expected_source =
            cluster.map_or(source, |(cluster, _)| peer::source_of(cluster, self.topic));
        if self
            .last_source
            .replace(source)
            .is_some_and(|last| last != source)
        {
            self.topic.expect_overlap();
            self.backoff.reset();
            if let Some((cluster, _)) = cluster {
                cluster.metrics().ownership_moves.inc();
            }
        }
        ChosenSource {
            source,
            peer_route,
            expected_source,
            _gauge: cluster.map(|(cluster, _)| SourceGauge::new(cluster, source)),
        }
    }

    /// Runs one attempt against `chosen`, ended early in a cluster once the topic's source is
    /// no longer the expected one; then takes the last event id the parser saw.
    async fn attempt(&mut self, chosen: &ChosenSource<'_>) -> AttemptEnd {
        let (uri, headers, client) = match &chosen.peer_route {
            Some(route) => (&route.uri, route.headers, route.client),
            None => (&self.uri, self.headers, &self.upstream.client),
        };
        // A peer's `retry:` is the origin's advice to browsers (the attempt passes it on to
        // the topic); this relay's backoff toward a peer starts at its own minimum.
        let mut peer_retry = None;
        let attempt = Attempt {
            request: OriginRequest {
                upstream: self.upstream,
                client,
                uri,
                headers,
                credential_warnings: &self.warnings.credentials,
                hops: self.hops,
            },
            topic: self.topic,
            parser: &mut self.parser,
            retry: match chosen.source {
                Source::Origin => &mut self.retry,
                Source::Peer(_) => &mut peer_retry,
            },
            warnings: &self.warnings,
        }
        .run(self.last_id.as_deref());
        let end = match &self.upstream.cluster {
            None => attempt.await,
            Some((cluster, _)) => tokio::select! {
                end = attempt => end,
                () = peer::source_changes(cluster, self.topic, chosen.expected_source) => {
                    AttemptEnd::Moved
                }
            },
        };
        if self.parser.finish() {
            self.upstream.metrics.malformed.inc(Defect::Truncated);
        }
        self.take_last_id();
        end
    }

    /// Takes the parser's last event id as the next attempt's resume point: empty resets it
    /// (WHATWG HTML §9.2.6), and one over [`MAX_LAST_EVENT_ID_BYTES`] is dropped, as a
    /// client's is, and counted once per attempt it is withheld from: the next attempt
    /// subscribes without it.
    fn take_last_id(&mut self) {
        let Some(id) = self.parser.last_event_id() else {
            return;
        };
        if id.len() > MAX_LAST_EVENT_ID_BYTES {
            debug!(
                bytes = id.len(),
                "the origin's event id is over 1 KiB: not resuming with it"
            );
            self.upstream.metrics.failures.inc(Failure::LastEventId);
            self.last_id = None;
            return;
        }
        self.last_id = (!id.is_empty()).then(|| id.to_string());
    }

    /// Decides what an attempt's end means for the topic: over (closed, refused), a move to
    /// the new source, or a retry after a backoff; counts and reports it.
    fn settle(&mut self, end: AttemptEnd) -> Next {
        if let Some(failure) = end.failure() {
            self.upstream.metrics.failures.inc(failure);
        }
        let error = match end {
            AttemptEnd::Closed => return Next::Over(UpstreamEnd::OriginClosed),
            AttemptEnd::Moved => {
                debug!(last_event_id = ?self.last_id, "topic's source changed: moving its upstream");
                return Next::Move;
            }
            AttemptEnd::Ended { up } => {
                self.streamed(up);
                debug!("upstream stream ended");
                self.topic.answer_with_stream();
                return Next::Retry { retry_after: None };
            }
            AttemptEnd::Broke { up, error } => {
                self.streamed(up);
                error
            }
            AttemptEnd::Failed(error) => error,
        };
        self.report(&error);
        self.failed(error)
    }

    /// An event stream was open for `up`: the origin has answered once, and a stream that
    /// stayed up for the backoff's ceiling restarts the backoff. A shorter one does not,
    /// whatever it delivered: an origin that answers, sends an event and closes is failing,
    /// and is asked no more often than the backoff's widening window says.
    fn streamed(&mut self, up: Duration) {
        if up >= self.backoff.max() {
            self.backoff.reset();
        }
        self.client_id = None;
        self.not_event_stream = 0;
    }

    /// What follows an attempt that failed with `error`. An id the origin cannot take is
    /// dropped (the next attempt subscribes without it); a refusal, a redirect not followed
    /// and [`MAX_NOT_EVENT_STREAM`] answers that are not an event stream end the topic.
    fn failed(&mut self, error: AttemptError) -> Next {
        if matches!(error, AttemptError::Request(RequestError::UnsendableId)) {
            warn!(last_event_id = ?self.last_id, "Last-Event-ID is not a valid header value: subscribing without it");
            self.last_id = None;
            return Next::Retry { retry_after: None };
        }
        if error.is_refusal() && self.client_id.is_some() && self.last_id == self.client_id {
            // An origin may refuse an id it does not know; a client's id must not keep
            // everyone else's topic from ever opening.
            warn!(last_event_id = ?self.client_id, "origin refused the client's Last-Event-ID: subscribing without it");
            self.last_id = None;
            self.client_id = None;
            return Next::Retry { retry_after: None };
        }
        let retry_after = match error {
            AttemptError::Refused(answer) => return Next::Over(self.refused(answer)),
            AttemptError::Request(RequestError::Redirect(reason)) => {
                let answer = OriginAnswer::bad_gateway(&format!(
                    "the origin's redirect was not followed: {reason}"
                ));
                return Next::Over(self.refused(Arc::new(answer)));
            }
            AttemptError::ContentType(_) => {
                self.not_event_stream += 1;
                if self.not_event_stream >= MAX_NOT_EVENT_STREAM {
                    let answer =
                        OriginAnswer::bad_gateway("the origin did not answer with an event stream");
                    return Next::Over(self.refused(Arc::new(answer)));
                }
                return Next::Retry { retry_after: None };
            }
            AttemptError::Status { retry_after, .. } => retry_after,
            _ => None,
        };
        self.topic.answer_with_stream();
        Next::Retry { retry_after }
    }

    /// Waits before the next attempt: the backoff's delay (never shorter than the origin's
    /// `retry:`, up to [`super::backoff::MAX_RETRY_FLOOR`]; a peer's is ignored), at least
    /// `retry_after`. In a cluster the wait ends early once the
    /// topic's source changes: the delay was earned by the source that failed (its owner died
    /// and the view dropped it), and the new one is tried at once.
    async fn back_off(&mut self, chosen: &ChosenSource<'_>, retry_after: Option<Duration>) {
        self.topic.set_upstream_state(UpstreamState::Backoff);
        let advice = match chosen.source {
            Source::Origin => self.retry,
            Source::Peer(_) => None,
        };
        let delay = self
            .backoff
            .next_delay(advice)
            .max(retry_after.unwrap_or_default());
        debug!(?delay, last_event_id = ?self.last_id, "reconnecting");
        match &self.upstream.cluster {
            None => tokio::time::sleep(delay).await,
            Some((cluster, _)) => tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = peer::source_changes(cluster, self.topic, chosen.expected_source) => {
                    debug!("topic's source changed during the backoff: moving now");
                }
            },
        }
    }

    /// Counts the origin's final refusal; the topic's supervisor passes it on.
    fn refused(&self, answer: Arc<OriginAnswer>) -> UpstreamEnd {
        self.upstream
            .metrics
            .refusals
            .inc(Refusal::of(answer.status));
        UpstreamEnd::Refused(answer)
    }

    /// Logs an attempt's failure, at most once per interval per topic (the metric counts all).
    fn report(&self, error: &AttemptError) {
        if let Some(suppressed) = self.warnings.failing.check() {
            warn!(suppressed, side = error.side().label(), "upstream {error}");
        }
    }
}
