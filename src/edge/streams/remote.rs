//! Request streams across a cluster (docs/request-streams.md, "Any relay"): which relay holds
//! a stream (its id names it), a resume or a cancel at another relay sent to the holder over
//! the peer link, and the holder's side of that link. It never follows a stream it does not
//! hold from anywhere but its holder.

use std::net::SocketAddr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Either;

use super::{CancelledBy, RequestStreams};
use crate::cluster::{Cluster, STREAM_PATH};
use crate::edge::answer::{last_event_id, plain, ResponseBody};
use crate::edge::passthrough::relayed;
use crate::edge::Edge;

impl RequestStreams {
    /// The other relay holding stream `key`, if its id names one (cluster mode only).
    pub(super) fn remote_holder(&self, key: &str) -> Option<(&Cluster, SocketAddr)> {
        let cluster = self.cluster.as_ref()?;
        let (_, holder) = key.split_once('~')?;
        let holder = URL_SAFE_NO_PAD.decode(holder).ok()?;
        let holder: SocketAddr = std::str::from_utf8(&holder).ok()?.parse().ok()?;
        (holder != cluster.self_addr()).then_some((cluster, holder))
    }
}

/// A call on a stream another relay holds.
pub(super) struct RemoteCall<'a> {
    pub key: &'a str,
    pub scope: &'a str,
    /// `DELETE` rather than `GET`.
    pub cancel: bool,
}

impl Edge {
    /// Follows (or cancels) a stream another relay of the cluster holds, over the peer link:
    /// the holder's answer (the stream, 204, 404) reaches the client as it is.
    pub(super) async fn call_holder<B>(
        &self,
        cluster: &Cluster,
        holder: SocketAddr,
        call: RemoteCall<'_>,
        request: &Request<B>,
    ) -> Response<ResponseBody> {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("key", call.key)
            .append_pair("scope", call.scope)
            .finish();
        let method = if call.cancel {
            Method::DELETE
        } else {
            Method::GET
        };
        let mut peer_request = Request::builder()
            .method(method)
            .uri(format!("https://{holder}{STREAM_PATH}?{query}"))
            .header(
                http::header::AUTHORIZATION,
                cluster.token().header().clone(),
            );
        if let Some(id) = last_event_id(request, &self.inner.metrics) {
            peer_request = peer_request.header("last-event-id", id);
        }
        let Ok(peer_request) = peer_request.body(http_body_util::Empty::new()) else {
            return plain(StatusCode::BAD_REQUEST, "bad stream id\n").map(Either::Right);
        };
        match cluster.client().request(peer_request).await {
            Ok(response) => {
                let mut response = relayed(response);
                self.inner
                    .cors
                    .apply(request.headers(), response.headers_mut());
                response.map(Either::Right)
            }
            Err(error) => {
                tracing::warn!(%holder, %error, "the relay holding a request stream cannot be reached");
                let text = "bad gateway: the relay holding this stream cannot be reached\n";
                self.with_cors(plain(StatusCode::BAD_GATEWAY, text), request)
            }
        }
    }

    /// Serves another relay's call on the peer listener's [`STREAM_PATH`]: `GET` follows a
    /// stream this relay holds (kept through its drain), `DELETE` cancels it.
    pub(in crate::edge) fn serve_peer_stream_call<B>(
        &self,
        request: &Request<B>,
    ) -> Response<ResponseBody> {
        let Some(streams) = &self.inner.streams else {
            return plain(StatusCode::NOT_FOUND, "no stream routes\n").map(Either::Right);
        };
        let query = request.uri().query().unwrap_or_default();
        let (mut key, mut scope) = (String::new(), String::new());
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*name {
                "key" => key = value.into_owned(),
                "scope" => scope = value.into_owned(),
                _ => {}
            }
        }
        match *request.method() {
            Method::DELETE if streams.hub.cancel(&key, &scope) => {
                streams.metrics.cancelled.inc(CancelledBy::Delete);
                plain(StatusCode::NO_CONTENT, "").map(Either::Right)
            }
            Method::DELETE => plain(StatusCode::NOT_FOUND, "no such stream\n").map(Either::Right),
            Method::GET => {
                let wanted = last_event_id(request, &self.inner.metrics);
                let resumed = streams.hub.resume_for_peer(&key, &scope, wanted.as_deref());
                self.resumed(streams, resumed, request)
            }
            _ => plain(StatusCode::METHOD_NOT_ALLOWED, "GET or DELETE\n").map(Either::Right),
        }
    }
}
