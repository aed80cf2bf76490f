//! The peer listener's handler (cluster mode): other relays of the cluster subscribe here to
//! the topics this relay owns. Every request must carry the cluster's bearer token (anything
//! else gets 401 and is counted; the listener is mutual TLS as well); `GET /_peer/v1/health`
//! answers 200 while this relay serves and 503 once it drains (so peers stop choosing it);
//! `GET /_peer/v1/subscribe?key=…&label=…` is a subscription to that topic, read from the
//! origin here (never passed on to a third relay), with `Last-Event-ID` as from any client;
//! `GET /_peer/v1/stream?key=…&scope=…` follows a request stream this relay holds for a viewer
//! that reconnected to another relay (and `DELETE` cancels it), kept through this relay's drain.
//! No client credential crosses this link: the topic is named by its key, not by a request.

use http::{Method, Request, Response, StatusCode};
use http_body_util::Either;

use super::answer::{self, plain, Rejection, ResponseBody};
use super::Edge;
use crate::cluster::{Cluster, HEALTH_PATH, STREAM_PATH, SUBSCRIBE_PATH};
use std::sync::Arc;

use crate::downstream::{DownstreamFrames, EventStreamBody};
use crate::hub::{Refused, Verdict};
use crate::server::{Handler, Peer, RequestBody};

/// Serves other relays on `cluster.peer_listen` (cheap to clone).
#[derive(Clone)]
pub struct PeerEdge {
    edge: Edge,
    cluster: Cluster,
    /// The subscribers' frames without the gap signal (a relay reading from here would take
    /// it for an event and pass it to all its clients) and without this relay's `retry:` hint:
    /// every `retry:` a peer reads here is the origin's, which it passes on to its browsers.
    frames: Arc<DownstreamFrames>,
}

impl PeerEdge {
    /// The peer listener's handler over the relay's `edge` (its routes, hub and upstream).
    pub fn new(edge: Edge, cluster: Cluster) -> Self {
        let mut frames = (*edge.inner.frames).clone();
        frames.gap_event = None;
        frames.hint = None;
        Self {
            edge,
            cluster,
            frames: Arc::new(frames),
        }
    }

    async fn subscribe(&self, request: &Request<RequestBody>) -> Response<ResponseBody> {
        let inner = &self.edge.inner;
        let query = request.uri().query().unwrap_or_default();
        let mut key = None;
        let mut label = None;
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*name {
                "key" => key = Some(value.into_owned()),
                "label" => label = Some(value.into_owned()),
                _ => {}
            }
        }
        let target = key
            .zip(label)
            .and_then(|(key, label)| inner.router.peer_target(&key, &label));
        let Some(target) = target else {
            return plain(
                StatusCode::NOT_FOUND,
                "no such topic on this relay's routes\n",
            )
            .map(Either::Right);
        };
        let hops = match self.edge.hops(request) {
            Ok(hops) => hops,
            Err(rejection) => return self.edge.reject(rejection, request),
        };
        let last_event_id = answer::last_event_id(request, &inner.metrics);
        let spec = self.edge.topic_spec(target, hops, None);
        let subscription = match inner.hub.subscribe_peer(spec, last_event_id.as_deref()) {
            Ok(subscription) => subscription,
            Err(refused) => return self.edge.reject(Rejection::from(refused), request),
        };
        let verdict = tokio::time::timeout(inner.origin_answer_wait, subscription.verdict());
        if let Ok(Verdict::Final(answer)) = verdict.await {
            return self
                .edge
                .reject(Rejection::from(Refused::Origin(answer)), request);
        }
        let body = EventStreamBody::live(
            subscription,
            self.frames.clone(),
            inner.lag_policy,
            inner.downstream_metrics.clone(),
        );
        self.edge.event_stream(body, request)
    }
}

impl Handler for PeerEdge {
    type Body = ResponseBody;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    async fn handle(self, request: Request<RequestBody>, _peer: Peer) -> Response<ResponseBody> {
        let presented = request.headers().get(http::header::AUTHORIZATION);
        if !self.cluster.token().accepts(presented) {
            self.cluster.metrics().peer_refused.inc();
            return plain(StatusCode::UNAUTHORIZED, "peer token required\n").map(Either::Right);
        }
        if request.uri().path() == STREAM_PATH {
            return self.edge.serve_peer_stream_call(&request);
        }
        if request.method() != Method::GET {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n").map(Either::Right);
        }
        match request.uri().path() {
            HEALTH_PATH if self.edge.inner.hub.is_draining() => {
                plain(StatusCode::SERVICE_UNAVAILABLE, "draining\n").map(Either::Right)
            }
            HEALTH_PATH => plain(StatusCode::OK, "ok\n").map(Either::Right),
            SUBSCRIBE_PATH => self.subscribe(&request).await,
            _ => plain(StatusCode::NOT_FOUND, "not a peer path\n").map(Either::Right),
        }
    }
}
