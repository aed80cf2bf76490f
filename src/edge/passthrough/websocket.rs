//! WebSocket passthrough. An HTTP/1.1 opening handshake (RFC 6455 §4.1: `GET` with `Upgrade:
//! websocket` and `Connection: upgrade`, tokens case-insensitive) goes to the origin over
//! HTTP/1.1 with its upgrade headers kept (the `Sec-WebSocket-*` fields are end-to-end and pass
//! as any other). When the origin switches protocols (101, RFC 9110 §15.2.2), the client gets
//! that 101 with the origin's headers, and the two upgraded connections are joined byte for
//! byte: each side's end of stream is passed on as a half-close, so a close handshake and the
//! TCP close that follows it reach the other side. Any other answer reaches the client as an
//! ordinary response. At the drain's end, open tunnels are shut down. WebSockets over h2
//! (extended CONNECT, RFC 8441) are not served: the server does not announce
//! `SETTINGS_ENABLE_CONNECT_PROTOCOL`, so clients use HTTP/1.1 for them.
//!
//! This module owns the upgrade decision, the tunnel tasks and their metrics; it never reads or
//! writes WebSocket frames.

use std::sync::Arc;
use std::time::Duration;

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use prometheus::IntGauge;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tracing::debug;

use super::super::answer::BoxBody;
use super::super::metrics::{EdgeMetrics, TunnelOutcome};
use super::headers::append_via;
use super::relayed;
use crate::http::{strip_hop_by_hop, FORWARDING_HOP_BY_HOP};
use crate::server::TunnelLease;

/// How long a tunnel closed by the drain may take to shut both connections down cleanly (TLS
/// `close_notify`, then FIN) before they are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// A client's WebSocket opening handshake, taken from its request: the upgrade to await once
/// the client has its 101, and the connection's lease (so the connection stays counted while
/// the tunnel runs).
pub(super) struct Upgrade {
    client: OnUpgrade,
    lease: Option<TunnelLease>,
}

impl Upgrade {
    /// `Some` when `request` is a WebSocket opening handshake over HTTP/1.1 (RFC 6455 §4.1).
    pub(super) fn take<B>(request: &mut Request<B>) -> Option<Self> {
        if !is_websocket_upgrade(request) {
            return None;
        }
        Some(Self {
            client: hyper::upgrade::on(&mut *request),
            lease: request.extensions_mut().remove::<TunnelLease>(),
        })
    }
}

/// True for `GET` over HTTP/1.1 with `Connection: upgrade` and `Upgrade: websocket` (tokens
/// compared case-insensitively, RFC 9110 §7.6.1 and §7.8).
fn is_websocket_upgrade<B>(request: &Request<B>) -> bool {
    request.method() == Method::GET
        && request.version() == Version::HTTP_11
        && has_token(request.headers(), CONNECTION, "upgrade")
        && has_token(request.headers(), UPGRADE, "websocket")
}

/// True when a comma-separated field `name` lists `token` (a protocol's version after `/`
/// ignored).
fn has_token(headers: &HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| t.trim().split('/').next())
        .any(|t| t.eq_ignore_ascii_case(token))
}

/// Puts back the upgrade fields that the hop-by-hop rules removed (RFC 6455 §4.1).
pub(super) fn keep_upgrade_headers(headers: &mut HeaderMap) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
}

/// The tunnels of one passthrough origin: the drain's close signal and the metrics.
pub(super) struct Tunnels {
    close: watch::Sender<bool>,
    metrics: Arc<EdgeMetrics>,
}

impl Tunnels {
    /// No tunnel open yet.
    pub(super) fn new(metrics: Arc<EdgeMetrics>) -> Self {
        Self {
            close: watch::channel(false).0,
            metrics,
        }
    }

    /// Closes every open tunnel, and any opened from now on.
    pub(super) fn close_all(&self) {
        self.close.send_replace(true);
    }

    /// Counts a failed tunnel when an upgrade got no answer from the origin.
    pub(super) fn not_opened(&self, upgrade: bool) {
        if upgrade {
            self.metrics.websocket_tunnels.inc(TunnelOutcome::Failed);
        }
    }

    /// The client's answer to its opening handshake, given the origin's: on 101, that 101 (the
    /// tunnel starts once both sides have switched); else the origin's answer as it is.
    pub(super) fn answer(
        &self,
        upgrade: Upgrade,
        mut response: Response<Incoming>,
    ) -> Response<BoxBody> {
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            self.metrics.websocket_tunnels.inc(TunnelOutcome::Refused);
            return relayed(response);
        }
        let origin = hyper::upgrade::on(&mut response);
        let tunnel = Tunnel {
            client: upgrade.client,
            origin,
            _lease: upgrade.lease,
            closing: self.close.subscribe(),
            metrics: self.metrics.clone(),
        };
        tokio::spawn(tunnel.run());
        let (mut parts, _) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers, &FORWARDING_HOP_BY_HOP);
        keep_upgrade_headers(&mut parts.headers);
        append_via(&mut parts.headers, parts.version);
        parts.version = Version::HTTP_11;
        let body = Empty::new().map_err(|never| match never {}).boxed();
        Response::from_parts(parts, body)
    }
}

/// One tunnel, before both sides have switched protocols.
struct Tunnel {
    client: OnUpgrade,
    origin: OnUpgrade,
    _lease: Option<TunnelLease>,
    closing: watch::Receiver<bool>,
    metrics: Arc<EdgeMetrics>,
}

impl Tunnel {
    /// Waits for both upgrades, then copies bytes both ways until both sides have closed
    /// (counted `opened`), or the drain ends it; an upgrade that fails is counted `failed`.
    async fn run(mut self) {
        let (client, origin) = match tokio::try_join!(self.client, self.origin) {
            Ok(both) => both,
            Err(e) => {
                debug!(error = %e, "websocket: an upgrade did not complete");
                self.metrics.websocket_tunnels.inc(TunnelOutcome::Failed);
                return;
            }
        };
        self.metrics.websocket_tunnels.inc(TunnelOutcome::Opened);
        let _open = OpenTunnel::new(&self.metrics.websocket_tunnels_open);
        let (mut client, mut origin) = (TokioIo::new(client), TokioIo::new(origin));
        let closing = &mut self.closing;
        let drain_closes = async move {
            let _ = closing.wait_for(|close| *close).await;
        };
        tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut client, &mut origin) => match copied {
                Ok((up, down)) => debug!(up, down, "websocket: tunnel closed"),
                Err(e) => debug!(error = %e, "websocket: tunnel broken"),
            },
            () = drain_closes => {
                debug!("websocket: drain closes the tunnel");
                let shutdown = async {
                    let _ = tokio::join!(client.shutdown(), origin.shutdown());
                };
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, shutdown).await;
            }
        }
    }
}

/// Counts one tunnel in `sse_relay_websocket_tunnels_open` while it lives.
struct OpenTunnel(IntGauge);

impl OpenTunnel {
    fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for OpenTunnel {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::get("/ws");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn an_opening_handshake_is_recognised_by_its_tokens_in_any_case() {
        let firefox = request(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
        ]);
        assert!(is_websocket_upgrade(&firefox));
        let plain = request(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        assert!(is_websocket_upgrade(&plain));
    }

    #[test]
    fn other_upgrades_and_methods_are_not_websocket_handshakes() {
        let h2c = request(&[("connection", "upgrade"), ("upgrade", "h2c")]);
        assert!(!is_websocket_upgrade(&h2c));
        let no_connection = request(&[("upgrade", "websocket")]);
        assert!(!is_websocket_upgrade(&no_connection));
        let mut post = request(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        *post.method_mut() = Method::POST;
        assert!(!is_websocket_upgrade(&post));
        let mut h2 = request(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        *h2.version_mut() = Version::HTTP_2;
        assert!(!is_websocket_upgrade(&h2));
    }
}
