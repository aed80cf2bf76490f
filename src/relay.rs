//! The request handler: decides what a downstream request is (an SSE subscription, a CORS
//! preflight, or something this relay does not serve) and answers it.
//!
//! This module ties routing, hub and downstream together for one request; it holds no state of
//! its own beyond shared handles, and it never forwards a client header upstream.

use std::sync::Arc;

use http::header::{
    ACCEPT, ALLOW, CACHE_CONTROL, CONTENT_TYPE, STRICT_TRANSPORT_SECURITY, WWW_AUTHENTICATE,
};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Either;
use hyper::body::Incoming;

use crate::auth::{self, AuthRequest, Authorizer, Denial};
use crate::config::{AuthUnavailable, LagPolicy};
use crate::cors::Cors;
use crate::downstream::{DownstreamFrames, EventStreamBody};
use crate::hub::{Hub, Refused};
use crate::metrics::Metrics;
use crate::proxy::{self, BoxBody, Passthrough, Peer};
use crate::routing::{RouteMiss, Router};

/// The body of every response the relay sends: an event stream, or a boxed body (passthrough
/// responses and small plain answers).
pub type ResponseBody = Either<EventStreamBody, BoxBody>;

/// The shared request handler (cheap to clone).
#[derive(Clone)]
pub struct Relay {
    inner: Arc<RelayParts>,
}

/// What the handler is made of.
pub struct RelayParts {
    /// The compiled routes.
    pub router: Router,
    /// The topic registry.
    pub hub: Hub,
    /// Preamble, heartbeat and farewell frames, shared by every subscriber.
    pub frames: Arc<DownstreamFrames>,
    /// What to do with subscribers that fall out of the replay ring.
    pub lag_policy: LagPolicy,
    /// The CORS policy.
    pub cors: Cors,
    /// The relay's metrics.
    pub metrics: Arc<Metrics>,
    /// Where requests that match no SSE route go (none: 404).
    pub passthrough: Option<Passthrough>,
    /// Who may subscribe.
    pub auth: Authorizer,
    /// The `Strict-Transport-Security` value for TLS responses, if configured.
    pub hsts: Option<HeaderValue>,
}

impl Relay {
    /// Creates the handler.
    pub fn new(parts: RelayParts) -> Self {
        Self {
            inner: Arc::new(parts),
        }
    }

    /// The hub (for draining).
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// Answers one request: SSE routes are subscriptions (identical over HTTP/1.1 and h2),
    /// anything else goes to the passthrough origin (or gets 404 without one).
    pub async fn handle(&self, request: Request<Incoming>, peer: Peer) -> Response<ResponseBody> {
        let mut response = self.route(request, peer).await;
        if let (true, Some(hsts)) = (peer.tls, &self.inner.hsts) {
            response
                .headers_mut()
                .insert(STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
        response
    }

    async fn route(&self, request: Request<Incoming>, peer: Peer) -> Response<ResponseBody> {
        let path = request.uri().path();
        if self.inner.router.shadows_sse_path(path) {
            self.inner.metrics.rejected.noncanonical_path.inc();
            return plain(
                StatusCode::NOT_FOUND,
                "no route for this path (SSE routes answer only their canonical spelling)\n",
            );
        }
        if !self.inner.router.is_sse_path(path) {
            return match &self.inner.passthrough {
                Some(proxy) => proxy.forward(request, peer).await.map(Either::Right),
                None => plain(StatusCode::NOT_FOUND, "no route for this path\n"),
            };
        }
        self.subscribe(request, peer).await
    }

    /// Answers a request on an SSE route. SSE answers are always `200 text/event-stream`, even
    /// while the origin is down (a browser's EventSource stops reconnecting for good after any
    /// other status, WHATWG HTML §9.2.3).
    async fn subscribe<B>(&self, request: Request<B>, peer: Peer) -> Response<ResponseBody> {
        let inner = &self.inner;
        let path = request.uri().path();
        if request.method() == Method::OPTIONS {
            let mut response = plain(StatusCode::NO_CONTENT, "");
            inner
                .cors
                .preflight(request.headers(), response.headers_mut());
            return response;
        }
        if request.method() != Method::GET {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, OPTIONS"));
            return response;
        }
        let target = match inner.router.resolve(path, request.uri().query()) {
            Ok(target) => target,
            Err(RouteMiss::NoRoute) => return plain(StatusCode::NOT_FOUND, "no route\n"),
            Err(RouteMiss::BadQuery) => {
                return plain(StatusCode::BAD_REQUEST, "query parameter not usable\n")
            }
        };
        let auth_request = AuthRequest {
            headers: request.headers(),
            raw_query: request.uri().query(),
            path: &target.path,
            query: &target.query,
            client: peer.addr.ip(),
        };
        let grant = match inner.auth.authorize(target.auth, &auth_request).await {
            Ok(grant) => grant,
            Err(denial) => return self.denied(denial, &request),
        };
        let last_event_id = last_event_id(&request, &inner.metrics);
        let upstream = target.upstream.to_string();
        let subscribed = inner.hub.subscribe(
            &target.key,
            &target.path,
            &upstream,
            last_event_id.as_deref(),
        );
        let body = match subscribed {
            Ok(subscription) => EventStreamBody::live(
                subscription,
                inner.frames.clone(),
                inner.lag_policy,
                inner.metrics.clone(),
            )
            .ending_by(grant.expires),
            Err(Refused::OriginClosed) => {
                // As the origin said: 204 makes a browser's EventSource stop reconnecting.
                let mut response = plain(StatusCode::NO_CONTENT, "");
                inner.cors.apply(request.headers(), response.headers_mut());
                return response;
            }
            Err(_refused) => self.retry_later(),
        };
        self.event_stream(body, &request)
    }

    fn retry_later(&self) -> EventStreamBody {
        EventStreamBody::retry_later(self.inner.frames.clone(), self.inner.metrics.clone())
    }

    /// Answers a refused subscription: 401 (with `WWW-Authenticate`) or 403, which make a
    /// browser's EventSource stop; an authorization server outage is answered, for EventSource
    /// requests (`Accept: text/event-stream`), per `[auth.forward] unavailable`: by default a
    /// 200 stream with a `retry:` hint that ends at once, so browsers recover by themselves once
    /// the server is back; other requests get 503.
    fn denied<B>(&self, denial: Denial, request: &Request<B>) -> Response<ResponseBody> {
        let event_source = request
            .headers()
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"));
        let mut response = match &denial {
            Denial::Unauthorized(reason) => {
                let mut r = plain(StatusCode::UNAUTHORIZED, "unauthorized\n");
                r.headers_mut()
                    .insert(WWW_AUTHENTICATE, auth::www_authenticate(reason));
                r
            }
            Denial::Forbidden(_) => plain(StatusCode::FORBIDDEN, "forbidden\n"),
            Denial::Unavailable(_) if !event_source => plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "authorization unavailable, retry later\n",
            ),
            Denial::Unavailable(_) => match self.inner.auth.unavailable_policy() {
                AuthUnavailable::Retry => return self.event_stream(self.retry_later(), request),
                AuthUnavailable::Deny => {
                    plain(StatusCode::UNAUTHORIZED, "authorization unavailable\n")
                }
            },
        };
        self.inner
            .cors
            .apply(request.headers(), response.headers_mut());
        response
    }

    fn event_stream<B>(
        &self,
        body: EventStreamBody,
        request: &Request<B>,
    ) -> Response<ResponseBody> {
        let mut response = Response::new(Either::Left(body));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        self.inner.cors.apply(request.headers(), headers);
        response
    }
}

/// Longest `Last-Event-ID` accepted from a client, bytes. Longer ones are ignored (counted in
/// `sse_relay_requests_rejected_total{reason="last_event_id"}`): no origin we would resume
/// against issues such ids, and each one would be held per topic and sent upstream.
pub const MAX_LAST_EVENT_ID_BYTES: usize = 1024;

/// The client's resume point: the `Last-Event-ID` header, else the `lastEventId` query
/// parameter (as EventSource polyfills send it), percent-decoded. Empty means none. An id no
/// SSE stream can have carried (NUL, CR or LF, WHATWG HTML §9.2.6), one that is not a valid
/// header value, or one over [`MAX_LAST_EVENT_ID_BYTES`] is ignored and counted.
fn last_event_id<B>(request: &Request<B>, metrics: &Metrics) -> Option<String> {
    let from_header = request
        .headers()
        .get("last-event-id")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let id = from_header.or_else(|| {
        form_urlencoded::parse(request.uri().query()?.as_bytes())
            .find(|(k, _)| k == "lastEventId")
            .map(|(_, v)| v.into_owned())
    })?;
    let usable = id.len() <= MAX_LAST_EVENT_ID_BYTES
        && !id.contains(['\0', '\r', '\n'])
        && HeaderValue::from_str(&id).is_ok();
    if !usable {
        metrics.rejected.last_event_id.inc();
        return None;
    }
    (!id.is_empty()).then_some(id)
}

fn plain(status: StatusCode, text: &'static str) -> Response<ResponseBody> {
    proxy::error(status, text).map(Either::Right)
}
