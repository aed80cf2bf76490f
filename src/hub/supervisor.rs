//! The one owner of a topic's life. Each topic gets one supervisor task when it opens; it runs
//! the topic's upstream follower and ends the topic for exactly one reason: the origin closed it
//! (204) or refused it (its answer is remembered for new subscribers), the drain ended it, or
//! it had no subscriber for the idle grace period. It alone closes the topic and removes it from the registry.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tracing::{debug, info};

use super::registry::Registry;
use super::ring::CloseReason;
use super::topic::Topic;
use super::verdict::OriginAnswer;
use super::UpstreamEnd;

/// Runs `follow` (the topic's upstream) until the topic ends, then closes it.
pub(super) async fn supervise(
    registry: Arc<Registry>,
    topic: Arc<Topic>,
    follow: BoxFuture<'static, UpstreamEnd>,
) {
    let mut stop = registry.stop.subscribe();
    let grace = registry.settings.idle_grace;
    let reason = tokio::select! {
        end = follow => {
            let (answer, ttl, reason) = match end {
                UpstreamEnd::OriginClosed => {
                    info!("origin answered 204: topic closed");
                    let ttl = registry.settings.origin_closed_ttl;
                    (Arc::new(OriginAnswer::no_content()), ttl, CloseReason::OriginClosed)
                }
                UpstreamEnd::Refused(answer) => {
                    info!(status = %answer.status, "origin refused the topic: closed");
                    (answer, registry.settings.origin_error_ttl, CloseReason::OriginRefused)
                }
            };
            topic.conclude(answer.clone());
            registry.remember(topic.key(), answer, ttl);
            reason
        }
        _ = stop.wait_for(|stop| *stop) => CloseReason::Draining,
        () = retired(&registry, &topic, grace) => CloseReason::Retired,
    };
    if reason == CloseReason::Retired {
        info!("last subscriber gone: upstream subscription closed");
    } else {
        registry.unregister(&topic);
    }
    debug!(?reason, "topic closed");
    topic.close(reason);
}

/// Resolves once the topic was idle for `grace` and has been removed from the registry
/// (atomically with the check, so a subscriber arriving meanwhile keeps it).
async fn retired(registry: &Registry, topic: &Topic, grace: std::time::Duration) {
    loop {
        topic.idle_for(grace).await;
        if registry.retire_if_unused(topic) {
            return;
        }
    }
}
