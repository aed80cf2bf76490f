//! The edge: the per-request decision. A request on an SSE route is routed to its topic
//! ([`routing`]), authorized ([`auth`]) and subscribed (through the hub, with the upstream
//! follower for a new topic); CORS preflights are answered ([`cors`]); anything else goes to
//! the passthrough origin ([`passthrough`]) or gets 404. Every answer that is not a live stream
//! is built in [`answer`].
//!
//! Requests on a `[[stream_route]]` are request streams ([`streams`]).
//!
//! This module ties routing, auth, hub and downstream together for one request; it holds no
//! state of its own beyond shared handles, and it never forwards a client header on a shared
//! subscription (only the passthrough and a request stream's own POST, which are the client's
//! requests, carry them).

pub mod answer;
pub mod auth;
pub mod cors;
mod metrics;
pub mod opener;
pub mod passthrough;
pub mod peer;
pub mod request_guard;
pub mod routing;
pub mod streams;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use http::header::STRICT_TRANSPORT_SECURITY;
use http::{HeaderValue, Method, Request, Response};
use http_body_util::Either;

use crate::downstream::{DownstreamFrames, DownstreamMetrics, EventStreamBody, LagPolicy};
use crate::http::HOPS_HEADER;
use crate::hub::{Hub, Opener, Refused, TopicSpec, Verdict};
use crate::server::{Handler, Peer, RequestBody};
use crate::upstream::Upstream;
use answer::{Rejection, ResponseBody};
use auth::{AuthRequest, AuthSettings, Authorizer};
use cors::Cors;
pub use metrics::{DenialKind, EdgeMetrics, Outcome, RejectReason, TunnelOutcome};
use passthrough::{Passthrough, PassthroughSettings};
use request_guard::Refusals;
use routing::{RouteMiss, Router, TopicTarget};
use streams::{RequestStreams, StreamMetrics, StreamSettings};

/// The edge's settings, validated (see [`crate::config::Settings`]).
pub struct EdgeSettings {
    /// The compiled routes.
    pub router: Router,
    /// `topics.always_on`, resolved against the routes.
    pub always_on: Vec<TopicTarget>,
    /// Authorization backends.
    pub auth: AuthSettings,
    /// The CORS policy.
    pub cors: Cors,
    /// The passthrough origin, if any.
    pub passthrough: Option<PassthroughSettings>,
    /// The `retry:` hint sent to subscribers, ms.
    pub retry_hint_ms: u64,
    /// Event type of the in-band gap signal (empty: not sent).
    pub gap_event: String,
    /// What happens to subscribers that fall out of the ring.
    pub lag_policy: LagPolicy,
    /// `Strict-Transport-Security` for TLS responses, if configured.
    pub hsts: Option<HeaderValue>,
    /// Relays a subscription may have passed through (`limits.max_hops`), count.
    pub max_hops: u32,
    /// How long a subscriber of a topic whose origin has not answered yet waits for that
    /// answer (so it can be given the origin's refusal) before it gets its stream anyway: the
    /// upstream's own deadline for response headers (twice `upstream.connect_timeout_ms`).
    pub origin_answer_wait: Duration,
    /// `[[stream_route]]` and `[streams]` (`None`: no stream route).
    pub streams: Option<StreamSettings>,
}

/// The request handler of the relay's listeners (cheap to clone).
#[derive(Clone)]
pub struct Edge {
    inner: Arc<Shared>,
}

/// What every clone of the [`Edge`] shares: the settings it decides by and the handles it
/// works with.
struct Shared {
    router: Router,
    hub: Hub,
    upstream: Arc<Upstream>,
    /// The opening comment, the relay's `retry:` hint and the heartbeat, shared by every
    /// subscriber.
    frames: Arc<DownstreamFrames>,
    lag_policy: LagPolicy,
    cors: Cors,
    /// Where requests that match no SSE route go (none: 404).
    passthrough: Option<Passthrough>,
    auth: Authorizer,
    hsts: Option<HeaderValue>,
    max_hops: u32,
    /// This relay's id in [`HOPS_HEADER`] lists: random per start.
    instance: String,
    origin_answer_wait: Duration,
    /// Request streams (`None`: no stream route).
    streams: Option<RequestStreams>,
    /// Counts and logs what the edge refuses.
    refusals: Refusals,
    metrics: Arc<EdgeMetrics>,
    downstream_metrics: Arc<DownstreamMetrics>,
}

/// The relays a request passed through, as its [`HOPS_HEADER`] lists them.
#[derive(Debug, Clone, Copy)]
struct Hops<'a> {
    /// The header's value, trimmed (empty without the header).
    list: &'a str,
    /// The relays it names, count.
    relays: usize,
}

impl Hops<'_> {
    /// No relay before this one: a topic this relay opens itself.
    const NONE: Hops<'static> = Hops {
        list: "",
        relays: 0,
    };
}

/// The shared handles the edge works with.
pub struct EdgeHandles {
    /// The topic registry.
    pub hub: Hub,
    /// Follows the origin of each new topic.
    pub upstream: Arc<Upstream>,
    /// For https passthrough origins and authorization servers.
    pub client_tls: rustls::ClientConfig,
    /// The edge's metrics.
    pub metrics: Arc<EdgeMetrics>,
    /// Subscribers' stream metrics.
    pub downstream_metrics: Arc<DownstreamMetrics>,
    /// The hub of request streams and their metrics (used when there are stream routes).
    pub streams: Option<(Hub, Arc<StreamMetrics>)>,
    /// Cluster mode: a request stream another relay holds is followed from it.
    pub cluster: Option<crate::cluster::Cluster>,
}

impl Edge {
    /// Builds the handler and opens the `topics.always_on` topics, so their replay buffers are
    /// warm when the first client comes.
    ///
    /// # Errors
    /// The first always-on topic the hub refused: its request path and why.
    pub fn new(settings: EdgeSettings, handles: EdgeHandles) -> Result<Self, (String, Refused)> {
        let EdgeHandles {
            hub,
            upstream,
            client_tls,
            metrics,
            downstream_metrics,
            streams: stream_handles,
            cluster,
        } = handles;
        let streams = settings.streams.zip(stream_handles).map(|(s, (hub, m))| {
            RequestStreams::new(s, hub, &client_tls, &metrics, m, &settings.gap_event)
                .with_cluster(cluster)
        });
        let passthrough = settings
            .passthrough
            .map(|p| Passthrough::new(p, client_tls.clone(), metrics.clone()));
        let edge = Self {
            inner: Arc::new(Shared {
                router: settings.router,
                hub,
                upstream,
                frames: Arc::new(
                    DownstreamFrames::new(settings.retry_hint_ms)
                        .with_gap_event(&settings.gap_event),
                ),
                lag_policy: settings.lag_policy,
                cors: settings.cors,
                passthrough,
                auth: Authorizer::new(settings.auth, client_tls, metrics.clone()),
                hsts: settings.hsts,
                max_hops: settings.max_hops,
                instance: format!("{:016x}", rand::random::<u64>()),
                origin_answer_wait: settings.origin_answer_wait,
                streams,
                refusals: Refusals::new(metrics.clone()),
                metrics,
                downstream_metrics,
            }),
        };
        edge.open_always_on(&settings.always_on)?;
        Ok(edge)
    }

    fn open_always_on(&self, targets: &[TopicTarget]) -> Result<(), (String, Refused)> {
        for target in targets {
            let spec = self.topic_spec(target.clone(), Hops::NONE, None);
            self.inner
                .hub
                .open_always_on(spec)
                .map_err(|refused| (target.path.clone(), refused))?;
        }
        Ok(())
    }

    /// The hub's view of a resolved target: its key, its label, how to follow its origin, and
    /// how to ask it for a catch-up. `hops`: the relays the subscription passed through before
    /// this one (see [`Self::hops`]); `opener`: the client a new topic is charged to.
    fn topic_spec(&self, target: TopicTarget, hops: Hops<'_>, opener: Option<Opener>) -> TopicSpec {
        let upstream = &self.inner.upstream;
        let hops: Arc<str> = match hops.list {
            "" => self.inner.instance.as_str().into(),
            before => format!("{before}, {}", self.inner.instance).into(),
        };
        let (uri, headers) = (target.upstream, target.upstream_headers);
        TopicSpec {
            key: target.key,
            shown: target.shown,
            label: target.path,
            replay: Some(upstream.replayer(uri.clone(), headers.clone(), hops.clone())),
            follow: upstream.follower(uri, headers, hops),
            opener,
        }
    }

    /// The relays `request` passed through ([`HOPS_HEADER`], as received; empty without).
    ///
    /// # Errors
    /// [`Rejection::HopLimit`] (counted) when this relay is among them (a loop) or they are
    /// `limits.max_hops` or more.
    fn hops<'r, B>(&self, request: &'r Request<B>) -> Result<Hops<'r>, Rejection> {
        let list = request
            .headers()
            .get(HOPS_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .trim();
        let mut relays = 0;
        let mut looped = false;
        for relay in list.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            relays += 1;
            looped |= relay == self.inner.instance;
        }
        if looped || relays >= self.inner.max_hops as usize {
            self.inner.metrics.rejected.inc(RejectReason::HopLimit);
            return Err(Rejection::HopLimit);
        }
        Ok(Hops { list, relays })
    }

    /// The hub of request streams, if there are stream routes (for the drain and the admin
    /// pages).
    pub fn stream_hub(&self) -> Option<&Hub> {
        self.inner.streams.as_ref().map(RequestStreams::hub)
    }

    /// Ends every open passthrough WebSocket tunnel, and any opened from now on: the drain's
    /// last step (a tunnel never ends by itself, as an SSE stream does not).
    pub fn close_tunnels(&self) {
        if let Some(passthrough) = &self.inner.passthrough {
            passthrough.close_tunnels();
        }
    }

    async fn route(self, request: Request<RequestBody>, peer: Peer) -> Response<ResponseBody> {
        let refusals = &self.inner.refusals;
        if let Err(refusal) = request_guard::check(&request) {
            refusals.refuse(refusal.reason(), &refusal);
            return self.reject(Rejection::Refused(refusal), &request);
        }
        if self.is_stream_call(&request) {
            // Boxed, as the passthrough's: large, and only stream calls pay for it.
            return Box::pin(self.serve_stream_call(request, peer)).await;
        }
        let path = request.uri().path();
        if self.inner.router.shadows_sse_path(path) {
            refusals.refuse(RejectReason::NoncanonicalPath, &path);
            return self.reject(Rejection::NoncanonicalPath, &request);
        }
        if !self.inner.router.is_sse_path(path) {
            return match &self.inner.passthrough {
                // Boxed: the proxy's future is large and every SSE request would pay for it.
                Some(proxy) => Box::pin(proxy.forward(request, peer))
                    .await
                    .map(Either::Right),
                None => self.reject(Rejection::NotFound, &request),
            };
        }
        match self.subscribe(&request, peer).await {
            Ok(response) => response,
            Err(rejection) => self.reject(rejection, &request),
        }
    }

    /// Subscribes a request on an SSE route. A live answer is always `200 text/event-stream`,
    /// even while the origin is down or failing in a way the relay retries (a browser's
    /// EventSource stops reconnecting for good after any other status, WHATWG HTML §9.2.3);
    /// when the origin refuses the topic (204, 4xx, no event stream), the subscriber gets that
    /// answer instead, as it would from the origin itself.
    async fn subscribe<B>(
        &self,
        request: &Request<B>,
        peer: Peer,
    ) -> Result<Response<ResponseBody>, Rejection> {
        let inner = &self.inner;
        // Everything up to the hub's subscription lives in this block, and the authorizer's
        // future is boxed (allocated only while it runs), so the wait for the origin's first
        // answer below, which every subscriber of a just-opened topic sits through, keeps
        // only the subscription in this future's state: that future is what each waiting
        // subscriber holds, so its size is memory per subscriber.
        let (subscription, expires) = {
            if request.method() == Method::OPTIONS {
                return Err(Rejection::Preflight);
            }
            if request.method() != Method::GET {
                return Err(Rejection::Method);
            }
            let hops = self.hops(request)?;
            let matched = inner
                .router
                .matched(request.uri().path(), request.uri().query())
                .inspect_err(|miss| {
                    if *miss == RouteMiss::VariableTooLong {
                        inner.refusals.refuse(RejectReason::VariableTooLong, miss);
                    }
                })?;
            let auth_request = AuthRequest {
                headers: request.headers(),
                raw_query: request.uri().query(),
                path: &matched.path,
                query: &matched.query,
                client: peer.addr.ip(),
            };
            let grant = Box::pin(inner.auth.authorize(matched.auth, &auth_request)).await?;
            let mut target = matched.target(grant.claims.as_ref()).inspect_err(|miss| {
                if *miss == RouteMiss::MissingClaim {
                    inner.refusals.refuse(RejectReason::Claim, miss);
                }
            })?;
            // A client's own relay list must not decide a shared topic's (one that nearly
            // fills `max_hops` would make every relay further on refuse it): requests that
            // passed a different number of relays get topics of their own.
            if hops.relays > 0 {
                let suffix = format!(" hops={}", hops.relays);
                target.key.push_str(&suffix);
                if let Some(shown) = &mut target.shown {
                    shown.push_str(&suffix);
                }
            }
            let last_event_id = answer::last_event_id(request, &inner.metrics);
            let opener = opener::opener(peer.addr.ip(), grant.claims.as_ref());
            let spec = self.topic_spec(target, hops, Some(opener));
            let subscription = inner.hub.subscribe(spec, last_event_id.as_deref())?;
            (subscription, grant.expires)
        };
        let verdict = tokio::time::timeout(inner.origin_answer_wait, subscription.verdict());
        if let Ok(Verdict::Final(answer)) = verdict.await {
            return Err(Refused::Origin(answer).into());
        }
        let mut subscription = subscription;
        if let Some(coding) = answer::stream_coding(request.headers(), inner.hub.compression()) {
            subscription.compress_in(coding);
        }
        let body = EventStreamBody::live(
            subscription,
            inner.frames.clone(),
            inner.lag_policy,
            inner.downstream_metrics.clone(),
        )
        .ending_by(expires);
        Ok(self.event_stream(body, request))
    }
}

impl Handler for Edge {
    type Body = ResponseBody;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    /// Answers one request: SSE routes are subscriptions (identical over HTTP/1.1 and h2),
    /// anything else goes to the passthrough origin (or gets 404 without one).
    fn handle(
        self,
        request: Request<RequestBody>,
        peer: Peer,
    ) -> impl Future<Output = Response<ResponseBody>> + Send {
        let hsts = self.inner.hsts.clone().filter(|_| peer.tls);
        // A combinator, not an async block: a block would keep the routing future twice (once
        // captured, once awaited; rustc stores both), and the future is what a request that
        // waits for the origin's first answer holds.
        self.route(request, peer).map(move |mut response| {
            if let Some(hsts) = hsts {
                response
                    .headers_mut()
                    .insert(STRICT_TRANSPORT_SECURITY, hsts);
            }
            response
        })
    }
}
