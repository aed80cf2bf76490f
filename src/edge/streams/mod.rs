//! Request streams: streams a request starts (an LLM answer to a `POST`, MCP's Streamable
//! HTTP) kept as topics of their own, so they survive the client that started them. A `POST`
//! on a `[[stream_route]]` goes to its origin once, as the passthrough sends requests (the
//! client's own credentials and body: this request is the client's, not shared); a
//! `200 text/event-stream` answer becomes a stream in the request-stream hub, with an
//! unguessable id, its resume URL in `Content-Location`, and its events relayed as a topic's
//! are (parsed once, encoded once, [`crate::upstream::RelayIds`] for events without an id).
//! `GET <resume URL>` follows it from `Last-Event-ID` (a gap signal where its ring no longer
//! reaches; 204 once it ended and nothing is left; 404 for an unknown id or another identity,
//! so a stream's existence is not revealed); `DELETE` cancels it. With `protocol = "mcp"`, a
//! `GET` on the endpoint with `Mcp-Session-Id` and `Last-Event-ID` resumes the one stream of
//! that session the id names (MCP 2025-06-18, "Streamable HTTP", "Resumability and
//! Redelivery"); other requests pass through, and `DELETE` (the session's end) also cancels
//! the session's streams.
//!
//! This module decides per request only; the streams' state is the hub's, and a shared
//! topic's subscribers never see a request stream (they live in a hub of their own).

mod metrics;
mod remote;
mod settings;
mod start;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Either;

use super::answer::{self, last_event_id, plain, ResponseBody};
use super::auth::AuthRequest;
use super::passthrough::Passthrough;
use super::{Edge, Rejection};
use crate::cluster::Cluster;
use crate::downstream::{DownstreamFrames, EventStreamBody};
use crate::hub::{Hub, ResumeMiss};
use crate::server::{Peer, RequestBody};
use crate::upstream::RelayIds;
pub use metrics::{CancelledBy, ResumeOutcome, StartOutcome, StreamMetrics, StreamStates};
use remote::RemoteCall;
pub use settings::{OnDisconnect, StreamProtocol, StreamRoute, StreamSettings};

/// The MCP session header (MCP 2025-06-18, "Streamable HTTP", "Session Management").
const MCP_SESSION: &str = "mcp-session-id";

/// A stream route and its origin's client.
struct Served {
    route: StreamRoute,
    proxy: Passthrough,
}

/// The request streams the edge serves: the routes, their hub and metrics.
pub(super) struct RequestStreams {
    served: Vec<Served>,
    hub: Hub,
    frames: std::sync::Arc<DownstreamFrames>,
    retain: Duration,
    max_streams: usize,
    max_bytes: usize,
    metrics: std::sync::Arc<StreamMetrics>,
    /// Cluster mode: stream ids name their holder, and a stream another relay holds is
    /// followed from it over the peer link.
    cluster: Option<Cluster>,
    /// Streams started, count: a stream is shown (`/topics`, the logs) by its route and this
    /// number, never by its id.
    started: std::sync::atomic::AtomicU64,
}

/// What a request on a stream route asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// `POST` on the route's path.
    Start,
    /// `GET` on a resume URL.
    Resume,
    /// `DELETE` on a resume URL.
    Cancel,
    /// `GET` on an MCP endpoint with `Last-Event-ID`.
    McpResume,
    /// `DELETE` on an MCP endpoint: the session ends.
    McpEnd,
    /// Another method on the route's path: to the origin as it is.
    Pass,
    /// A CORS preflight.
    Preflight,
    /// Another method on a resume URL.
    Method,
}

impl RequestStreams {
    /// The request streams of `settings`, kept in `hub`; their origins reached with `tls`.
    pub(super) fn new(
        settings: StreamSettings,
        hub: Hub,
        tls: &rustls::ClientConfig,
        edge_metrics: &std::sync::Arc<super::EdgeMetrics>,
        metrics: std::sync::Arc<StreamMetrics>,
        gap_event: &str,
    ) -> Self {
        let served = settings
            .routes
            .into_iter()
            .map(|route| Served {
                proxy: Passthrough::new(route.origin.clone(), tls.clone(), edge_metrics.clone()),
                route,
            })
            .collect();
        Self {
            served,
            hub,
            // The relay's own `retry:` hint is not sent: a request stream ends by itself, and
            // the bytes a client gets are the origin's (and comments).
            frames: std::sync::Arc::new(DownstreamFrames {
                hint: None,
                ..DownstreamFrames::new(0).with_gap_event(gap_event)
            }),
            retain: settings.retain,
            max_streams: settings.max_streams,
            max_bytes: settings.max_bytes,
            metrics,
            cluster: None,
            started: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// In cluster mode, names this relay in its stream ids and follows other relays' streams
    /// from them.
    pub(super) fn with_cluster(mut self, cluster: Option<Cluster>) -> Self {
        self.cluster = cluster;
        self
    }

    /// A fresh stream id: 128 random bits, URL-safe base64 without padding (22 characters);
    /// in a cluster, `~` and this relay's peer address (URL-safe base64), so any relay knows
    /// where the stream is held. Neither part has a `.`, so [`RelayIds`] can split an event
    /// id back into stream and position.
    fn new_stream_id(&self) -> String {
        let random = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
        match &self.cluster {
            Some(cluster) => {
                let holder = URL_SAFE_NO_PAD.encode(cluster.self_addr().to_string());
                format!("{random}~{holder}")
            }
            None => random,
        }
    }

    /// The hub holding the streams (for the drain and the admin pages).
    pub(super) fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The route and call a request is, if it is on a stream route or a resume URL.
    fn recognize<B>(&self, request: &Request<B>) -> Option<(usize, Call, Option<String>)> {
        let path = request.uri().path();
        let method = request.method();
        for (i, served) in self.served.iter().enumerate() {
            let route = &served.route;
            if path == route.path {
                let mcp = route.protocol == StreamProtocol::Mcp;
                let call = match *method {
                    Method::POST => Call::Start,
                    Method::OPTIONS => Call::Preflight,
                    Method::GET if mcp && request.headers().contains_key("last-event-id") => {
                        Call::McpResume
                    }
                    Method::DELETE if mcp => Call::McpEnd,
                    _ => Call::Pass,
                };
                return Some((i, call, None));
            }
            if let Some(vars) = route.resume.matches(path) {
                let id = vars.into_iter().next().map(|(_, v)| v);
                let call = match *method {
                    Method::GET => Call::Resume,
                    Method::DELETE => Call::Cancel,
                    Method::OPTIONS => Call::Preflight,
                    _ => Call::Method,
                };
                return Some((i, call, id));
            }
        }
        None
    }
}

/// Who may follow a stream: the starter's identity and, on an MCP route, its session.
fn scope(identity: &str, session: Option<&str>) -> String {
    format!("{identity}\n{}", session.unwrap_or_default())
}

/// The request's MCP session, on an MCP route.
fn session<B>(route: &StreamRoute, request: &Request<B>) -> Option<String> {
    (route.protocol == StreamProtocol::Mcp)
        .then(|| request.headers().get(MCP_SESSION)?.to_str().ok())
        .flatten()
        .map(str::to_string)
}

impl Edge {
    /// True when `request` is on a stream route or a resume URL ([`Self::serve_stream_call`]
    /// serves it).
    pub(super) fn is_stream_call<B>(&self, request: &Request<B>) -> bool {
        let streams = self.inner.streams.as_ref();
        streams.is_some_and(|streams| streams.recognize(request).is_some())
    }

    /// Serves a request on a stream route or a resume URL (404 for any other).
    pub(super) async fn serve_stream_call(
        &self,
        request: Request<RequestBody>,
        peer: Peer,
    ) -> Response<ResponseBody> {
        let recognized = self.inner.streams.as_ref().and_then(|streams| {
            let (i, call, id) = streams.recognize(&request)?;
            Some((streams, i, call, id))
        });
        let Some((streams, i, call, id)) = recognized else {
            return self.reject(Rejection::NotFound, &request);
        };
        let served = &streams.served[i];
        let response = match call {
            Call::Preflight => self.stream_preflight(&request),
            Call::Method => {
                let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET or DELETE\n");
                r.headers_mut().insert(
                    http::header::ALLOW,
                    HeaderValue::from_static("GET, DELETE, OPTIONS"),
                );
                r.map(Either::Right)
            }
            Call::Pass => served.proxy.forward(request, peer).await.map(Either::Right),
            Call::Start => self.start_stream(streams, served, request, peer).await,
            Call::Resume | Call::Cancel | Call::McpResume | Call::McpEnd => {
                let identity = match self.stream_identity(&served.route, &request, peer).await {
                    Ok(identity) => identity,
                    Err(rejection) => return self.reject(rejection, &request),
                };
                let scope = scope(&identity, session(&served.route, &request).as_deref());
                let key = match call {
                    Call::McpResume => last_event_id(&request, &self.inner.metrics)
                        .and_then(|id| RelayIds::stream_of(&id).map(str::to_string)),
                    _ => id,
                };
                if let Some((cluster, holder)) =
                    key.as_deref().and_then(|key| streams.remote_holder(key))
                {
                    let key = key.as_deref().unwrap_or_default();
                    let remote = RemoteCall {
                        key,
                        scope: &scope,
                        cancel: call == Call::Cancel,
                    };
                    return self.call_holder(cluster, holder, remote, &request).await;
                }
                match call {
                    Call::Resume => {
                        let key = key.unwrap_or_default();
                        self.follow_stream(streams, &key, &scope, &request)
                    }
                    Call::Cancel => {
                        let key = key.unwrap_or_default();
                        if streams.hub.cancel(&key, &scope) {
                            streams.metrics.cancelled.inc(CancelledBy::Delete);
                            self.with_cors(plain(StatusCode::NO_CONTENT, ""), &request)
                        } else {
                            streams.metrics.resumed.inc(ResumeOutcome::NotFound);
                            self.with_cors(
                                plain(StatusCode::NOT_FOUND, "no such stream\n"),
                                &request,
                            )
                        }
                    }
                    Call::McpResume => {
                        let wanted = last_event_id(&request, &self.inner.metrics);
                        let key = wanted
                            .as_deref()
                            .and_then(|id| mcp_stream(streams, &scope, id));
                        match key {
                            Some(key) => self.follow_stream(streams, &key, &scope, &request),
                            // Not one of the streams the relay keeps (the server's own GET
                            // stream, or an event store of its own): the origin's to answer.
                            None => served.proxy.forward(request, peer).await.map(Either::Right),
                        }
                    }
                    _ => {
                        let ended = streams.hub.cancel_scope(&scope);
                        for _ in 0..ended {
                            streams.metrics.cancelled.inc(CancelledBy::SessionEnd);
                        }
                        served.proxy.forward(request, peer).await.map(Either::Right)
                    }
                }
            }
        };
        response
    }

    /// The identity a stream is bound to: the JWT `sub` on a route with `auth = "jwt"`, else
    /// none (the unguessable id is then the capability).
    ///
    /// # Errors
    /// The authorization's [`Rejection`] (401, 403).
    async fn stream_identity<B>(
        &self,
        route: &StreamRoute,
        request: &Request<B>,
        peer: Peer,
    ) -> Result<String, Rejection> {
        let auth_request = AuthRequest {
            headers: request.headers(),
            raw_query: request.uri().query(),
            path: &route.path,
            query: "",
            client: peer.addr.ip(),
        };
        let grant = Box::pin(self.inner.auth.authorize(route.auth, &auth_request)).await?;
        let subject = grant
            .claims
            .as_ref()
            .and_then(|c| c.get("sub"))
            .and_then(|s| s.as_str())
            .unwrap_or_default();
        Ok(subject.to_string())
    }

    /// Follows stream `key` in `scope` from the request's `Last-Event-ID`: the stream, 204 when
    /// it ended with nothing left to send, 404 when there is no such stream for this viewer.
    fn follow_stream<B>(
        &self,
        streams: &RequestStreams,
        key: &str,
        scope: &str,
        request: &Request<B>,
    ) -> Response<ResponseBody> {
        let wanted = last_event_id(request, &self.inner.metrics);
        let resumed = streams.hub.resume(key, scope, wanted.as_deref());
        self.resumed(streams, resumed, request)
    }

    /// The answer to a resume: the stream (`Followed`), 204 when nothing is left after the
    /// viewer's last event of a finished stream (`Ended`), 404 (`NotFound`), with the CORS
    /// headers an allowed page needs to read it (none on the peer link, which sends no
    /// `Origin`); counted.
    fn resumed<B>(
        &self,
        streams: &RequestStreams,
        resumed: Result<crate::hub::Subscription, ResumeMiss>,
        request: &Request<B>,
    ) -> Response<ResponseBody> {
        let (outcome, response) = match resumed {
            Ok(mut subscription) => {
                let compression = streams.hub.compression();
                if let Some(coding) = answer::stream_coding(request.headers(), compression) {
                    subscription.compress_in(coding);
                }
                let body = EventStreamBody::live(
                    subscription,
                    streams.frames.clone(),
                    self.inner.lag_policy,
                    self.inner.downstream_metrics.clone(),
                );
                (ResumeOutcome::Followed, self.event_stream(body, request))
            }
            Err(ResumeMiss::Spent) => (
                ResumeOutcome::Ended,
                self.with_cors(plain(StatusCode::NO_CONTENT, ""), request),
            ),
            Err(ResumeMiss::Unknown) => (
                ResumeOutcome::NotFound,
                self.with_cors(plain(StatusCode::NOT_FOUND, "no such stream\n"), request),
            ),
        };
        streams.metrics.resumed.inc(outcome);
        response
    }

    /// A small answer with the CORS headers an allowed page needs to read it.
    fn with_cors<B>(
        &self,
        mut response: Response<super::answer::BoxBody>,
        request: &Request<B>,
    ) -> Response<ResponseBody> {
        self.inner
            .cors
            .apply(request.headers(), response.headers_mut());
        response.map(Either::Right)
    }

    /// A CORS preflight on a stream route or resume URL: allowed origins may `POST`, `GET` and
    /// `DELETE` with the headers a chat client or an MCP client sends.
    fn stream_preflight<B>(&self, request: &Request<B>) -> Response<ResponseBody> {
        let mut response = plain(StatusCode::NO_CONTENT, "");
        self.inner
            .cors
            .preflight_streams(request.headers(), response.headers_mut());
        response.map(Either::Right)
    }
}

/// The stream of `scope` an MCP resume's `Last-Event-ID` names: the one a relay id names, else
/// the one whose ring holds an origin id.
fn mcp_stream(streams: &RequestStreams, scope: &str, id: &str) -> Option<String> {
    if let Some(stream) = RelayIds::stream_of(id) {
        if streams.hub.holds_stream(stream, scope) {
            return Some(stream.to_string());
        }
    }
    streams.hub.find_event(scope, id)
}
