//! Starting a request stream: the POST goes to the route's origin once, and an event-stream
//! answer becomes a stream of the request-stream hub (docs/request-streams.md, "An LLM
//! answer"); any other answer passes through untouched. It never keeps an answer it cannot
//! bound (past `streams.max_streams` or `max_bytes` the answer passes unkept).

use http::header::{
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, CACHE_CONTROL, CONTENT_ENCODING,
    CONTENT_LENGTH, CONTENT_LOCATION, CONTENT_TYPE,
};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Either;

use super::{
    scope, session, OnDisconnect, RequestStreams, Served, StartOutcome, StreamProtocol, MCP_SESSION,
};
use crate::downstream::EventStreamBody;
use crate::edge::answer::{self, plain, ResponseBody};
use crate::edge::passthrough::relayed;
use crate::edge::{opener, Edge};
use crate::http::{strip_hop_by_hop, FORWARDING_HOP_BY_HOP};
use crate::hub::{RequestLife, TopicSpec};
use crate::server::{Peer, RequestBody};
use crate::upstream::{is_event_stream, RelayIds};

impl Edge {
    /// Starts a stream: sends the request to the route's origin and keeps its answer when it
    /// is an event stream (any other answer passes through untouched).
    pub(super) async fn start_stream(
        &self,
        streams: &RequestStreams,
        served: &Served,
        request: Request<RequestBody>,
        peer: Peer,
    ) -> Response<ResponseBody> {
        let route = &served.route;
        let identity = match self.stream_identity(route, &request, peer).await {
            Ok(identity) => identity,
            Err(rejection) => return self.reject(rejection, &request),
        };
        let request_session = session(route, &request);
        let origin_header = request.headers().get(http::header::ORIGIN).cloned();
        let coding = answer::stream_coding(request.headers(), streams.hub.compression());
        let opener = opener::opener(peer.addr.ip(), None);
        let response = match served
            .proxy
            .send(request, peer, Some(&route.upstream_path))
            .await
        {
            Ok(response) => response,
            Err(answer) => return answer.map(Either::Right),
        };
        let stream = response.status() == StatusCode::OK
            && is_event_stream(response.headers().get(CONTENT_TYPE));
        if !stream {
            streams.metrics.started.inc(StartOutcome::NotEventStream);
            return relayed(response).map(Either::Right);
        }
        let hub_bytes = streams.hub.metrics().buffered_bytes.get();
        if streams.hub.topic_count() >= streams.max_streams || hub_bytes > streams.max_bytes as i64
        {
            streams.metrics.started.inc(StartOutcome::NotKept);
            tracing::warn!(
                streams = streams.hub.topic_count(),
                bytes = hub_bytes,
                "request stream not kept: streams.max_streams or max_bytes reached"
            );
            return relayed(response).map(Either::Right);
        }
        // The session an initialize answer opens is in its answer (MCP "Session Management").
        let session = request_session.or_else(|| {
            (route.protocol == StreamProtocol::Mcp)
                .then(|| response.headers().get(MCP_SESSION)?.to_str().ok())
                .flatten()
                .map(str::to_string)
        });
        let id = streams.new_stream_id();
        let (mut parts, body) = response.into_parts();
        let follow = match self.inner.upstream.answer_follower(
            &parts.headers,
            body,
            RelayIds::new(&id),
            streams.metrics.answers.clone(),
        ) {
            Ok(follow) => follow,
            Err(unreadable) => {
                tracing::warn!(error = %unreadable, "request stream's answer cannot be read");
                return plain(
                    StatusCode::BAD_GATEWAY,
                    &format!("bad gateway: {unreadable}\n"),
                )
                .map(Either::Right);
            }
        };
        let spec = TopicSpec {
            key: id.clone(),
            shown: Some(format!(
                "{} stream {}",
                route.path,
                1 + streams
                    .started
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            )),
            label: route.path.clone(),
            follow,
            replay: None,
            opener: Some(opener),
        };
        let life = RequestLife {
            scope: scope(&identity, session.as_deref()),
            retain: streams.retain,
            detach: route.on_disconnect == OnDisconnect::Detach,
            personal: !identity.is_empty(),
        };
        let subscription = match streams.hub.start(spec, life) {
            Ok(mut subscription) => {
                if let Some(coding) = coding {
                    subscription.compress_in(coding);
                }
                subscription
            }
            Err(refused) => {
                streams.metrics.started.inc(StartOutcome::NotKept);
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("service unavailable: {refused}\n"),
                )
                .map(Either::Right);
            }
        };
        streams.metrics.started.inc(StartOutcome::Kept);
        let body = EventStreamBody::live(
            subscription,
            streams.frames.clone(),
            self.inner.lag_policy,
            self.inner.downstream_metrics.clone(),
        );
        strip_hop_by_hop(&mut parts.headers, &FORWARDING_HOP_BY_HOP);
        let headers = &mut parts.headers;
        // The body is the relay's encoding of the events, decoded and unframed.
        headers.remove(CONTENT_LENGTH);
        headers.remove(CONTENT_ENCODING);
        answer::mark_coding(headers, body.coding(), streams.hub.compression());
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        let location = route.resume.as_str().replace("{stream}", &id);
        if let Ok(location) = HeaderValue::from_str(&location) {
            headers.insert(CONTENT_LOCATION, location);
        }
        if let Some(origin) = origin_header {
            if !headers.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN) {
                let mut request_headers = http::HeaderMap::new();
                request_headers.insert(http::header::ORIGIN, origin);
                self.inner.cors.apply(&request_headers, headers);
            }
            headers.append(
                ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("content-location, mcp-session-id"),
            );
        }
        parts.version = http::Version::HTTP_11;
        Response::from_parts(parts, Either::Left(body))
    }
}
