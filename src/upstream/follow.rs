//! Following one origin stream for a topic: attempt after attempt, resuming with the last event
//! id seen (WHATWG HTML §9.2.4: the `Last-Event-ID` request header), backing off with full
//! jitter and honouring the origin's `retry:` and `Retry-After`, until the origin closes the
//! topic with 204 or refuses it for good. It also decides the topic's [`crate::hub::Verdict`]:
//! a stream, or an outage the relay retries, gives subscribers their 200 stream; a refusal
//! (4xx but 408/429, a redirect not followed, [`MAX_NOT_EVENT_STREAM`] answers in a row that
//! are not an event stream) is passed on to them.
//!
//! In a cluster an attempt ends as soon as the topic's source changes (a new owner), and so does
//! a backoff wait: the delay was earned by the source that failed, not by the new one, whose
//! backoff starts afresh. A peer's `retry:` (its advice to browsers) never seeds the backoff.
//!
//! It returns only when the topic is over; its supervisor drops it on retire or drain.

use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use tracing::{debug, warn};

use super::attempt::{Answer, Attempt, AttemptError, TopicWarnings};
use super::metrics::{Defect, Refusal};
use super::peer;
use super::request::OriginRequest;
use super::{Upstream, UpstreamHeaders};
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
        let warnings = TopicWarnings::default();
        let mut parser = Parser::new(self.settings.max_event_bytes);
        // The first subscriber's resume point, until the origin has opened a stream once.
        let mut client_id = topic.initial_last_event_id().map(str::to_string);
        let mut last_id = client_id.clone();
        let mut retry: Option<Duration> = None;
        let mut peer_retry: Option<Duration> = None;
        let mut backoff = self.settings.backoff.clone();
        let mut not_event_stream = 0;
        let mut last_source = None;
        for attempt in 0u64.. {
            if attempt > 0 {
                self.metrics.reconnects.inc();
            }
            topic.set_upstream_state(UpstreamState::Connecting);
            let leg = self
                .cluster
                .as_ref()
                .and_then(|(cluster, token)| peer::leg(cluster, token, topic));
            let source = leg
                .as_ref()
                .map_or(Source::Origin, |leg| Source::Peer(leg.addr));
            topic.set_source(leg.as_ref().map(|leg| leg.addr));
            // What the view says the source is: a peer whose URL could not be made for this
            // key is read from the origin, and the watches below wait for the view to change,
            // not for `source` to match it.
            let planned = self
                .cluster
                .as_ref()
                .map_or(source, |(cluster, _)| peer::source_of(cluster, topic));
            if last_source
                .replace(source)
                .is_some_and(|last| last != source)
            {
                // However the last source ended (moved away from, or failed), the new one may
                // start further back than asked; and its backoff starts afresh.
                topic.expect_overlap();
                backoff.reset();
                if let Some((cluster, _)) = &self.cluster {
                    cluster.metrics().ownership_moves.inc();
                }
            }
            let (target, target_headers, client) = match leg {
                Some(leg) => (leg.uri, leg.headers, leg.client),
                None => (uri.clone(), headers, &self.client),
            };
            let _counted = self
                .cluster
                .as_ref()
                .map(|(cluster, _)| peer::SourceGauge::new(cluster, source));
            let attempt = Attempt {
                request: OriginRequest {
                    upstream: self,
                    client,
                    uri: &target,
                    headers: target_headers,
                    credential_warnings: &warnings.credentials,
                    hops,
                },
                topic,
                parser: &mut parser,
                // A peer's `retry:` is its advice to browsers; this relay's backoff toward a
                // peer starts at its own minimum.
                retry: match source {
                    Source::Origin => &mut retry,
                    Source::Peer(_) => &mut peer_retry,
                },
                warnings: &warnings,
            }
            .run(last_id.as_deref());
            let outcome = match &self.cluster {
                None => attempt.await,
                Some((cluster, _)) => tokio::select! {
                    outcome = attempt => outcome,
                    () = peer::source_changes(cluster, topic, planned) => Err(AttemptError::Moved),
                },
            };
            if parser.finish() {
                self.metrics.malformed.inc(Defect::Truncated);
            }
            if let Some(id) = parser.last_event_id() {
                last_id = (!id.is_empty()).then(|| id.to_string());
            }
            if matches!(outcome, Err(AttemptError::Moved)) {
                debug!(last_event_id = ?last_id, "topic's source changed: moving its upstream");
                continue;
            }
            let error = match outcome {
                Ok(Answer::NoContent) => return UpstreamEnd::OriginClosed,
                Ok(Answer::Streamed { delivered, end }) => {
                    if delivered {
                        backoff.reset();
                    }
                    client_id = None;
                    not_event_stream = 0;
                    end
                }
                Err(error) => error,
            };
            self.metrics.failures.inc(error.label());
            self.report(&error, &warnings);
            let mut retry_after = None;
            if matches!(error, AttemptError::UnsendableId) {
                warn!(last_event_id = ?last_id, "Last-Event-ID is not a valid header value: subscribing without it");
                last_id = None;
            } else if error.is_refusal() && client_id.is_some() && last_id == client_id {
                // An origin may refuse an id it does not know; a client's id must not keep
                // everyone else's topic from ever opening.
                warn!(last_event_id = ?client_id, "origin refused the client's Last-Event-ID: subscribing without it");
                last_id = None;
                client_id = None;
            } else {
                match error {
                    AttemptError::Refused(answer) => return self.refused(answer),
                    AttemptError::Redirect(reason) => {
                        let answer = OriginAnswer::bad_gateway(&format!(
                            "the origin's redirect was not followed: {reason}"
                        ));
                        return self.refused(Arc::new(answer));
                    }
                    AttemptError::ContentType(_) => {
                        not_event_stream += 1;
                        if not_event_stream >= MAX_NOT_EVENT_STREAM {
                            let answer = OriginAnswer::bad_gateway(
                                "the origin did not answer with an event stream",
                            );
                            return self.refused(Arc::new(answer));
                        }
                    }
                    AttemptError::Status {
                        retry_after: asked, ..
                    } => {
                        retry_after = asked;
                        topic.answer_with_stream();
                    }
                    _ => topic.answer_with_stream(),
                }
            }
            topic.set_upstream_state(UpstreamState::Backoff);
            let delay = backoff
                .next_delay(if source == Source::Origin {
                    retry
                } else {
                    None
                })
                .max(retry_after.unwrap_or_default());
            debug!(?delay, last_event_id = ?last_id, "reconnecting");
            match &self.cluster {
                None => tokio::time::sleep(delay).await,
                // The backoff is for the source that failed; once the topic's source is another
                // (its owner died and the view dropped it), the new one is tried at once.
                Some((cluster, _)) => tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = peer::source_changes(cluster, topic, planned) => {
                        debug!("topic's source changed during the backoff: moving now");
                    }
                },
            }
        }
        unreachable!("the attempt counter does not run out")
    }

    /// Counts the origin's final refusal; the topic's supervisor passes it on.
    fn refused(&self, answer: Arc<OriginAnswer>) -> UpstreamEnd {
        self.metrics.refusals.inc(Refusal::of(answer.status));
        UpstreamEnd::Refused(answer)
    }

    /// Logs an attempt's failure, at most once per interval per topic (the metric counts all).
    fn report(&self, error: &AttemptError, warnings: &TopicWarnings) {
        if matches!(error, AttemptError::Ended) {
            debug!("upstream stream ended");
            return;
        }
        if let Some(suppressed) = warnings.failing.check() {
            warn!(suppressed, side = error.side().label(), "upstream {error}");
        }
    }
}
