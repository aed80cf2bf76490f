//! Following one origin stream for a topic: attempt after attempt, resuming with the last event
//! id seen (WHATWG HTML §9.2.4: the `Last-Event-ID` request header), backing off with full
//! jitter and honouring the origin's `retry:`, until the origin closes the topic with 204.
//!
//! It returns only when the topic is over; its supervisor drops it on retire or drain.

use std::time::Duration;

use http::Uri;
use tracing::{debug, warn};

use super::attempt::{Answer, Attempt, AttemptError, TopicWarnings};
use super::metrics::Defect;
use super::Upstream;
use crate::hub::{Topic, UpstreamEnd, UpstreamState};
use crate::ops::metrics::Label;
use crate::sse::Parser;

impl Upstream {
    /// Subscribes to `uri` for `topic` until the origin closes the topic with 204.
    pub(super) async fn follow(&self, uri: Uri, topic: &Topic) -> UpstreamEnd {
        let warnings = TopicWarnings::default();
        let mut parser = Parser::new(self.settings.max_event_bytes);
        // The first subscriber's resume point, until the origin has opened a stream once.
        let mut client_id = topic.initial_last_event_id().map(str::to_string);
        let mut last_id = client_id.clone();
        let mut retry: Option<Duration> = None;
        let mut backoff = self.settings.backoff.clone();
        for attempt in 0u64.. {
            if attempt > 0 {
                self.metrics.reconnects.inc();
            }
            topic.set_upstream_state(UpstreamState::Connecting);
            let outcome = Attempt {
                upstream: self,
                uri: &uri,
                topic,
                parser: &mut parser,
                retry: &mut retry,
                warnings: &warnings,
            }
            .run(last_id.as_deref())
            .await;
            if parser.finish() {
                self.metrics.malformed.inc(Defect::Truncated);
            }
            if let Some(id) = parser.last_event_id() {
                last_id = (!id.is_empty()).then(|| id.to_string());
            }
            let error = match outcome {
                Ok(Answer::NoContent) => return UpstreamEnd::OriginClosed,
                Ok(Answer::Streamed { delivered, end }) => {
                    if delivered {
                        backoff.reset();
                    }
                    client_id = None;
                    end
                }
                Err(error) => error,
            };
            self.metrics.failures.inc(error.label());
            self.report(&error, &warnings);
            if matches!(error, AttemptError::UnsendableId) {
                warn!(last_event_id = ?last_id, "Last-Event-ID is not a valid header value: subscribing without it");
                last_id = None;
            } else if error.is_refusal() && client_id.is_some() && last_id == client_id {
                // An origin may refuse an id it does not know; a client's id must not keep
                // everyone else's topic from ever opening.
                warn!(last_event_id = ?client_id, "origin refused the client's Last-Event-ID: subscribing without it");
                last_id = None;
            }
            topic.set_upstream_state(UpstreamState::Backoff);
            let delay = backoff.next_delay(retry);
            debug!(?delay, last_event_id = ?last_id, "reconnecting");
            tokio::time::sleep(delay).await;
        }
        unreachable!("the attempt counter does not run out")
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
