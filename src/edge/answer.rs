//! Every answer of the edge that is not a live stream, in one vocabulary: a [`Rejection`] says
//! why (whichever step decided it: routing, method, authorization, the hub), and
//! [`Edge::reject`] turns it into the response a browser's EventSource reacts to as it should
//! (WHATWG HTML §9.2.3: any status but 200 is final, 204 means "stop"). Also the event-stream
//! response headers, the small plain-text body, and the client's resume point.

use bytes::Bytes;
use http::header::{
    ACCEPT, ACCEPT_ENCODING, ALLOW, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, VARY,
    WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Either;

use super::auth::{www_authenticate, AuthUnavailable, Denial};
use super::metrics::{EdgeMetrics, RejectReason};
use super::request_guard::Refusal;
use super::routing::RouteMiss;
use super::Edge;
use crate::compress::{self, Coding, CompressionSettings};
use crate::downstream::EventStreamBody;
use crate::hub::{OriginAnswer, Refused};
use crate::ops::metrics::Label;
use crate::ops::Side;

/// The body type of passthrough responses and of the relay's small plain answers. The error
/// is hyper's (a concrete type: a boxed `dyn Error` here defeats the compiler's `Send` proof
/// of the connection task, rust-lang/rust#102211).
pub type BoxBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

/// The body of every response the edge sends: an event stream, or a boxed body (passthrough
/// responses and small plain answers).
pub type ResponseBody = Either<EventStreamBody, BoxBody>;

/// Why a request is not answered with a live event stream.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// A path that is an SSE route's only in another spelling: 404, never passed through.
    #[error("no route for this path (SSE routes answer only their canonical spelling)")]
    NoncanonicalPath,
    /// Refused before routing, whatever the route (see [`Refusal`] for the answers).
    #[error(transparent)]
    Refused(Refusal),
    /// No SSE route and no passthrough origin: 404.
    #[error("no route for this path")]
    NotFound,
    /// A CORS preflight (`OPTIONS`): 204 with the CORS headers.
    #[error("preflight")]
    Preflight,
    /// A method other than GET or OPTIONS on an SSE route: 405.
    #[error("use GET")]
    Method,
    /// The subscription has passed through `limits.max_hops` relays (its `sse-relay-hops`):
    /// 508 Loop Detected (RFC 5842 §7.2), as relays whose routes lead back to each other would.
    #[error("too many relays on the way (sse-relay-hops)")]
    HopLimit,
    /// The SSE route did not resolve to a topic: 404 or 400.
    #[error(transparent)]
    Route(#[from] RouteMiss),
    /// Authorization refused: 401, 403, or (server down) per `[auth.forward] unavailable`.
    #[error(transparent)]
    Auth(#[from] Denial),
    /// The hub refused: the origin's own answer when it closed (204) or refused (e.g. 404) the
    /// topic, else a 200 stream that says "retry later" and ends.
    #[error(transparent)]
    Hub(#[from] Refused),
}

impl Rejection {
    /// Whose doing the rejection is: the request's, the origin's or authorization server's, or
    /// the relay's own state.
    pub fn side(&self) -> Side {
        match self {
            Self::Auth(Denial::Unavailable(_)) | Self::Hub(Refused::Origin(_)) => Side::Upstream,
            Self::Hub(_) => Side::Internal,
            _ => Side::Downstream,
        }
    }
}

impl Edge {
    /// The answer to `rejection`. Denials and the hub's answers carry CORS headers, so a page
    /// on an allowed origin can see them.
    pub(super) fn reject<B>(
        &self,
        rejection: Rejection,
        request: &Request<B>,
    ) -> Response<ResponseBody> {
        let cors = &self.inner.cors;
        tracing::debug!(side = rejection.side().label(), %rejection, "not subscribed");
        let mut response = match rejection {
            Rejection::NoncanonicalPath
            | Rejection::NotFound
            | Rejection::Route(RouteMiss::NoRoute | RouteMiss::HostNotListed) => {
                return plain(StatusCode::NOT_FOUND, &format!("{rejection}\n")).map(Either::Right)
            }
            Rejection::Route(RouteMiss::MissingClaim) => {
                return plain(StatusCode::FORBIDDEN, &format!("{rejection}\n")).map(Either::Right)
            }
            Rejection::HopLimit => {
                return plain(StatusCode::LOOP_DETECTED, &format!("{rejection}\n"))
                    .map(Either::Right)
            }
            Rejection::Route(RouteMiss::VariableTooLong) => {
                return plain(StatusCode::URI_TOO_LONG, &format!("{rejection}\n"))
                    .map(Either::Right)
            }
            Rejection::Route(RouteMiss::BadQuery) => {
                return plain(StatusCode::BAD_REQUEST, &format!("{rejection}\n")).map(Either::Right)
            }
            Rejection::Method => {
                let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
                r.headers_mut()
                    .insert(ALLOW, HeaderValue::from_static("GET, OPTIONS"));
                return r.map(Either::Right);
            }
            Rejection::Refused(Refusal::Method) => {
                return self.method_not_allowed(request).map(Either::Right)
            }
            Rejection::Refused(refusal) => {
                return plain(StatusCode::BAD_REQUEST, &format!("{refusal}\n")).map(Either::Right)
            }
            Rejection::Preflight => {
                let mut r = plain(StatusCode::NO_CONTENT, "");
                cors.preflight(request.headers(), r.headers_mut());
                return r.map(Either::Right);
            }
            Rejection::Auth(denial) => match self.denied(denial, request) {
                Some(response) => response,
                None => return self.event_stream(self.retry_later(), request),
            },
            // As the origin said: 204 or an error makes a browser's EventSource stop.
            Rejection::Hub(Refused::Origin(answer)) => origin_answer(&answer),
            Rejection::Hub(_) => return self.event_stream(self.retry_later(), request),
        };
        // Denials and the origin's answers are answers the page should see.
        cors.apply(request.headers(), response.headers_mut());
        response.map(Either::Right)
    }

    /// 405 for CONNECT or TRACE, with `Allow` naming what the path is served with (RFC 9110
    /// §15.5.6): `GET, OPTIONS` on an SSE route, [`PASSTHROUGH_METHODS`] elsewhere when there is
    /// a passthrough origin.
    fn method_not_allowed<B>(&self, request: &Request<B>) -> Response<BoxBody> {
        let sse = self.inner.router.is_sse_path(request.uri().path());
        let allow = match self.inner.passthrough {
            Some(_) if !sse => PASSTHROUGH_METHODS,
            _ => "GET, OPTIONS",
        };
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        let headers = response.headers_mut();
        headers.insert(ALLOW, HeaderValue::from_static(allow));
        response
    }

    /// A refused subscription: 401 (with `WWW-Authenticate`) or 403, which make a browser's
    /// EventSource stop; an authorization server outage is answered, for EventSource requests
    /// (`Accept: text/event-stream`), per `[auth.forward] unavailable`: by default (`None`
    /// here) a 200 stream with a `retry:` hint that ends at once, so browsers recover by
    /// themselves once the server is back; other requests get 503.
    fn denied<B>(&self, denial: Denial, request: &Request<B>) -> Option<Response<BoxBody>> {
        let event_source = request
            .headers()
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"));
        Some(match &denial {
            Denial::Unauthorized(reason) => {
                let mut r = plain(StatusCode::UNAUTHORIZED, "unauthorized\n");
                r.headers_mut()
                    .insert(WWW_AUTHENTICATE, www_authenticate(reason));
                r
            }
            Denial::Forbidden(_) => plain(StatusCode::FORBIDDEN, "forbidden\n"),
            Denial::Unavailable(_) if !event_source => plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "authorization unavailable, retry later\n",
            ),
            Denial::Unavailable(_) => match self.inner.auth.unavailable_policy() {
                AuthUnavailable::Retry => return None,
                AuthUnavailable::Deny => {
                    plain(StatusCode::UNAUTHORIZED, "authorization unavailable\n")
                }
            },
        })
    }

    fn retry_later(&self) -> EventStreamBody {
        EventStreamBody::retry_later(
            self.inner.frames.clone(),
            self.inner.downstream_metrics.clone(),
        )
    }

    /// A `200 text/event-stream` response with `body`, uncacheable, unbuffered by nginx-style
    /// intermediaries (`X-Accel-Buffering: no`), in the body's content coding, with CORS
    /// headers for allowed origins.
    pub(super) fn event_stream<B>(
        &self,
        body: EventStreamBody,
        request: &Request<B>,
    ) -> Response<ResponseBody> {
        let coding = body.coding();
        let mut response = Response::new(Either::Left(body));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        mark_coding(headers, coding, self.inner.hub.compression());
        self.inner.cors.apply(request.headers(), headers);
        response
    }
}

/// The content coding a stream to a request with `headers` is sent in: the best its
/// `Accept-Encoding` accepts of those `compression` offers (RFC 9110 §12.5.3); `None`:
/// identity.
pub(super) fn stream_coding(
    headers: &HeaderMap,
    compression: &CompressionSettings,
) -> Option<Coding> {
    let accept = headers.get(ACCEPT_ENCODING).and_then(|v| v.to_str().ok());
    compress::negotiate(accept, compression.offered())
}

/// A stream's `Content-Encoding` (RFC 9110 §8.4) and, where the relay compresses at all,
/// `Vary: Accept-Encoding` (RFC 9110 §12.5.5: the answer depends on that header, for
/// identity answers too).
pub(super) fn mark_coding(
    headers: &mut HeaderMap,
    coding: Option<Coding>,
    compression: &CompressionSettings,
) {
    if let Some(coding) = coding {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(coding.token()));
    }
    if compression.enabled() {
        headers.append(VARY, HeaderValue::from_static("accept-encoding"));
    }
}

/// The methods a passthrough path is served with (RFC 9110 §9.3): every method but CONNECT
/// and TRACE, which the edge refuses (`Allow` of its 405, RFC 9110 §10.2.1).
const PASSTHROUGH_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

pub use crate::upstream::MAX_LAST_EVENT_ID_BYTES;

/// The client's resume point: the `Last-Event-ID` header, else the `lastEventId` query
/// parameter (as EventSource polyfills send it), percent-decoded. Empty means none. An id no
/// SSE stream can have carried (NUL, CR or LF, WHATWG HTML §9.2.6), one that is not a valid
/// header value, or one over [`MAX_LAST_EVENT_ID_BYTES`] is ignored and counted.
pub(super) fn last_event_id<B>(request: &Request<B>, metrics: &EdgeMetrics) -> Option<String> {
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
        metrics.rejected.inc(RejectReason::LastEventId);
        return None;
    }
    (!id.is_empty()).then_some(id)
}

/// The origin's final answer for a topic, as the origin gave it (status, and its body and
/// `Content-Type` when small enough to have been kept), uncacheable.
fn origin_answer(answer: &OriginAnswer) -> Response<BoxBody> {
    use http_body_util::{BodyExt, Full};
    let body = Full::new(answer.body.clone()).map_err(|never| match never {});
    let mut response = Response::new(body.boxed());
    *response.status_mut() = answer.status;
    let headers = response.headers_mut();
    if let Some(content_type) = &answer.content_type {
        headers.insert(CONTENT_TYPE, content_type.clone());
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A small plain-text answer.
pub fn plain(status: StatusCode, text: &str) -> Response<BoxBody> {
    crate::server::plain_text(status, text)
}
