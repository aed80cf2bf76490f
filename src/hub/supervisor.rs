//! The one owner of a topic's life. Each topic gets one supervisor task when it opens; it runs
//! the topic's upstream follower and ends the topic for exactly one reason: the origin closed it
//! (204) or refused it (its answer is remembered for new subscribers), the drain ended it, or
//! it had no subscriber for the idle grace period; a request stream's also when its answer
//! ended (it is then kept, closed and resumable, for its retention) or it was cancelled. It
//! alone closes the topic and removes it from the registry.

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
                UpstreamEnd::Finished => {
                    (Arc::new(OriginAnswer::no_content()), std::time::Duration::ZERO, CloseReason::Finished)
                }
            };
            if reason != CloseReason::Finished {
                topic.conclude(answer.clone());
                registry.remember(topic.key(), answer, ttl);
            }
            reason
        }
        _ = stop.wait_for(|stop| *stop) => CloseReason::Draining,
        () = retired(&registry, &topic, grace) => CloseReason::Retired,
        () = topic.cancel_asked() => CloseReason::Cancelled,
    };
    if reason == CloseReason::Finished {
        return retain(&registry, &topic).await;
    }
    if reason == CloseReason::Retired {
        info!("last subscriber gone: upstream subscription closed");
    } else {
        registry.unregister(&topic);
    }
    debug!(?reason, "topic closed");
    topic.close(reason);
}

/// A request stream whose answer ended: its subscribers get the rest of the ring, then the
/// end; new ones may still resume from it for its retention (until the drain ends it, or a
/// `DELETE`), then it is removed.
async fn retain(registry: &Registry, topic: &Topic) {
    debug!("answer complete: kept for its retention");
    topic.close(CloseReason::Finished);
    let retention = topic.life().map_or(std::time::Duration::ZERO, |l| l.retain);
    let mut stop = registry.stop.subscribe();
    tokio::select! {
        () = tokio::time::sleep(retention) => {}
        _ = stop.wait_for(|stop| *stop) => {}
        () = topic.cancel_asked() => {}
    }
    registry.unregister(topic);
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
