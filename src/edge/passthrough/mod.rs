//! Passthrough: requests that match no SSE route go to the default origin, one upstream request
//! per downstream request, as a reverse proxy. Bodies stream both ways and are never buffered
//! whole (a POST answered with its own `text/event-stream` flows event by event); the header
//! rules are in [`headers`] and [`crate::http::hop_by_hop`]; h1 or h2 to the origin by ALPN,
//! with connection pooling. A client that goes away drops the upstream request with it.
//! HTTP/1.1 WebSocket upgrades are tunnelled to the origin ([`websocket`]). A request body the
//! client framed wrongly is answered 400, not 502 ([`client_body`]).
//!
//! This module owns the passthrough path only; SSE topics never go through it.

mod client_body;
mod headers;
mod websocket;

use std::sync::Arc;
use std::time::Duration;

use http::header::HOST;
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tracing::warn;

use super::answer::{plain, BoxBody};
use super::metrics::{EdgeMetrics, Outcome, RejectReason};
use crate::http::{http1_client, http_client, strip_hop_by_hop, HttpClient, FORWARDING_HOP_BY_HOP};
use crate::ops::WarnLimit;
use crate::server::{Peer, RequestBody, TunnelLease};
use client_body::{BodyFailed, ClientBody};
use headers::{add_forwarding, append_via, header_str, join_cookie_crumbs};
use websocket::{Tunnels, Upgrade};

/// `[passthrough]`, validated: the origin (`scheme://authority`) and its deadlines.
#[derive(Debug, Clone)]
pub struct PassthroughSettings {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Host and port of the origin.
    pub authority: Authority,
    /// TCP (and TLS) connect timeout; a failure answers 502.
    pub connect_timeout: Duration,
    /// Deadline for the origin's response headers; past it the answer is 504.
    pub response_timeout: Duration,
}

/// The passthrough reverse proxy to one origin.
pub struct Passthrough {
    client: HttpClient<ClientBody>,
    /// HTTP/1.1 only, for WebSocket upgrades (h2 has no `Upgrade`, RFC 9113 §8.2.2).
    upgrade_client: HttpClient<ClientBody>,
    tunnels: Tunnels,
    settings: PassthroughSettings,
    metrics: Arc<EdgeMetrics>,
    unreachable: WarnLimit,
    bad_body: WarnLimit,
}

impl Passthrough {
    /// Creates the proxy; `tls` is for an https origin.
    pub fn new(
        settings: PassthroughSettings,
        tls: rustls::ClientConfig,
        metrics: Arc<EdgeMetrics>,
    ) -> Self {
        Self {
            client: http_client(tls.clone(), settings.connect_timeout),
            upgrade_client: http1_client(tls, settings.connect_timeout),
            tunnels: Tunnels::new(metrics.clone()),
            settings,
            metrics,
            unreachable: WarnLimit::default(),
            bad_body: WarnLimit::default(),
        }
    }

    /// Forwards one request and streams the answer back; 400 when the client's body could not
    /// be read (RFC 9112 §7.1: a malformed chunked encoding is the client's fault), 502 when
    /// the origin cannot be reached, 504 when its response headers do not come within the
    /// response timeout (the body says which). A WebSocket upgrade the origin accepts (101)
    /// becomes a tunnel.
    pub async fn forward(
        &self,
        mut request: Request<RequestBody>,
        peer: Peer,
    ) -> Response<BoxBody> {
        let upgrade = Upgrade::take(&mut request);
        let tunnel = upgrade.is_some();
        match self.exchange(request, peer, None, tunnel).await {
            Ok(response) => match upgrade {
                Some(upgrade) => self.tunnels.answer(upgrade, response),
                None => relayed(response),
            },
            Err(answer) => {
                self.tunnels.not_opened(tunnel);
                answer
            }
        }
    }

    /// Sends one request to the origin (at `path`, e.g. a request stream route's upstream
    /// path, instead of the request's own when given) and returns its answer unread, for the
    /// caller to relay or keep.
    ///
    /// # Errors
    /// The relay's own answer when there is no origin answer: 400 for a target or body the
    /// client got wrong, 502 when the origin cannot be reached, 504 past the response timeout.
    pub async fn send(
        &self,
        request: Request<RequestBody>,
        peer: Peer,
        path: Option<&str>,
    ) -> Result<Response<Incoming>, Response<BoxBody>> {
        self.exchange(request, peer, path, false).await
    }

    /// Sends `request` (an upgrade when `upgrade`) and waits for the origin's response headers.
    async fn exchange(
        &self,
        request: Request<RequestBody>,
        peer: Peer,
        path: Option<&str>,
        upgrade: bool,
    ) -> Result<Response<Incoming>, Response<BoxBody>> {
        let Some((request, body_failed)) = self.origin_request(request, peer, path, upgrade) else {
            return Err(plain(StatusCode::BAD_REQUEST, "bad request target\n"));
        };
        let client = match upgrade {
            true => &self.upgrade_client,
            false => &self.client,
        };
        let response =
            tokio::time::timeout(self.settings.response_timeout, client.request(request));
        match response.await {
            Ok(Ok(response)) => {
                self.metrics.passthrough.inc(Outcome::Ok);
                Ok(response)
            }
            Ok(Err(e)) if body_failed.get() => Err(self.bad_body(&e)),
            Ok(Err(e)) => {
                if let Some(suppressed) = self.unreachable.check() {
                    warn!(error = %e, suppressed, "passthrough: origin unreachable");
                }
                self.metrics.passthrough.inc(Outcome::ConnectError);
                Err(plain(
                    StatusCode::BAD_GATEWAY,
                    "bad gateway: the origin could not be reached\n",
                ))
            }
            Err(_) => {
                self.metrics.passthrough.inc(Outcome::Timeout);
                Err(plain(
                    StatusCode::GATEWAY_TIMEOUT,
                    "gateway timeout: the origin's response headers did not come in time\n",
                ))
            }
        }
    }

    /// The answer to a request whose body the client framed wrongly: 400, counted and logged
    /// (rate-limited) as the client's fault.
    fn bad_body(&self, error: &dyn std::error::Error) -> Response<BoxBody> {
        self.metrics.rejected.inc(RejectReason::RequestBody);
        if let Some(suppressed) = self.bad_body.check() {
            warn!(%error, suppressed, "passthrough: malformed request body");
        }
        plain(
            StatusCode::BAD_REQUEST,
            "bad request: the request body is malformed\n",
        )
    }

    /// Ends every open WebSocket tunnel (the drain's last step), and any opened from now on.
    pub fn close_tunnels(&self) {
        self.tunnels.close_all();
    }

    /// The request as the origin gets it: its URI, version and headers rewritten (hop-by-hop
    /// removed, cookie crumbs joined, forwarding added; an upgrade keeps its upgrade headers),
    /// its body watched; at `path` when given, else at its own path and query. `None` when the
    /// request target cannot be put on the origin's URI.
    fn origin_request(
        &self,
        request: Request<RequestBody>,
        peer: Peer,
        path: Option<&str>,
        upgrade: bool,
    ) -> Option<(Request<ClientBody>, BodyFailed)> {
        let (mut parts, body) = request.into_parts();
        parts.extensions.remove::<TunnelLease>();
        let path = match path {
            Some(path) => path.to_string(),
            None => parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string(),
        };
        let original_host = parts
            .uri
            .authority()
            .map(|a| a.to_string())
            .or_else(|| header_str(&parts.headers, HOST.as_str()));
        let version = parts.version;
        parts.uri = Uri::builder()
            .scheme(self.settings.scheme.clone())
            .authority(self.settings.authority.clone())
            .path_and_query(path)
            .build()
            .ok()?;
        // The client picks the upstream version by ALPN.
        parts.version = Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers, &FORWARDING_HOP_BY_HOP);
        if upgrade {
            websocket::keep_upgrade_headers(&mut parts.headers);
        }
        parts.headers.remove(HOST);
        join_cookie_crumbs(&mut parts.headers);
        add_forwarding(&mut parts.headers, peer, original_host.as_deref());
        append_via(&mut parts.headers, version);
        let (body, failed) = ClientBody::watch(body);
        Some((Request::from_parts(parts, body), failed))
    }
}

/// The origin's answer as the client gets it: hop-by-hop fields removed, `Via` added, the body
/// streamed.
pub fn relayed(response: Response<Incoming>) -> Response<BoxBody> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers, &FORWARDING_HOP_BY_HOP);
    append_via(&mut parts.headers, parts.version);
    parts.version = Version::HTTP_11;
    Response::from_parts(parts, body.boxed())
}
