//! Passthrough: requests that match no SSE route go to the default origin, one upstream request
//! per downstream request, as a reverse proxy. Bodies stream both ways and are never buffered
//! whole (a POST answered with its own `text/event-stream` flows event by event); hop-by-hop
//! headers are removed (RFC 9110 §7.6.1) and `Forwarded` (RFC 7239), `X-Forwarded-For`,
//! `-Proto`, `-Host` and `Via` (RFC 9110 §7.6.3) added; h1 or h2 to the origin by ALPN, with
//! connection pooling. A client that goes away drops the upstream request with it.
//!
//! This module owns the passthrough path only; SSE topics never go through it.

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, CONNECTION, HOST, VIA};
use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tracing::warn;

use super::answer::{plain, BoxBody};
use super::metrics::{EdgeMetrics, Outcome};
use crate::ops::WarnLimit;
use crate::server::Peer;
use crate::upstream::{http_client, HttpClient};

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
    client: HttpClient<Incoming>,
    settings: PassthroughSettings,
    metrics: Arc<EdgeMetrics>,
    unreachable: WarnLimit,
}

/// Hop-by-hop fields that are never forwarded (RFC 9110 §7.6.1), besides those `Connection`
/// names.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
];

impl Passthrough {
    /// Creates the proxy; `tls` is for an https origin.
    pub fn new(
        settings: PassthroughSettings,
        tls: rustls::ClientConfig,
        metrics: Arc<EdgeMetrics>,
    ) -> Self {
        Self {
            client: http_client(tls, settings.connect_timeout),
            settings,
            metrics,
            unreachable: WarnLimit::default(),
        }
    }

    /// Forwards one request and streams the answer back; 502 when the origin cannot be
    /// reached, 504 when its response headers do not come within the response timeout (the
    /// body says which).
    pub async fn forward(&self, request: Request<Incoming>, peer: Peer) -> Response<BoxBody> {
        let (mut parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let original_host = parts
            .uri
            .authority()
            .map(|a| a.to_string())
            .or_else(|| header_str(&parts.headers, HOST.as_str()));
        let version = parts.version;
        let mut uri = Uri::builder()
            .scheme(self.settings.scheme.clone())
            .authority(self.settings.authority.clone());
        uri = uri.path_and_query(path);
        let Ok(uri) = uri.build() else {
            return plain(StatusCode::BAD_REQUEST, "bad request target\n");
        };
        parts.uri = uri;
        // The client picks the upstream version by ALPN.
        parts.version = Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(HOST);
        add_forwarding(&mut parts.headers, peer, original_host.as_deref());
        append_via(&mut parts.headers, version);
        let request = Request::from_parts(parts, body);
        let response =
            tokio::time::timeout(self.settings.response_timeout, self.client.request(request));
        match response.await {
            Ok(Ok(response)) => {
                self.metrics.passthrough.inc(Outcome::Ok);
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                append_via(&mut parts.headers, parts.version);
                parts.version = Version::HTTP_11;
                Response::from_parts(parts, body.boxed())
            }
            Ok(Err(e)) => {
                if let Some(suppressed) = self.unreachable.check() {
                    warn!(error = %e, suppressed, "passthrough: origin unreachable");
                }
                self.metrics.passthrough.inc(Outcome::ConnectError);
                plain(
                    StatusCode::BAD_GATEWAY,
                    "bad gateway: the origin could not be reached\n",
                )
            }
            Err(_) => {
                self.metrics.passthrough.inc(Outcome::Timeout);
                plain(
                    StatusCode::GATEWAY_TIMEOUT,
                    "gateway timeout: the origin's response headers did not come in time\n",
                )
            }
        }
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_string)
}

/// Removes the hop-by-hop fields and those named in `Connection` (RFC 9110 §7.6.1).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Adds `Forwarded`, `X-Forwarded-For` (appended to any earlier hops), `X-Forwarded-Proto` and
/// `X-Forwarded-Host`.
fn add_forwarding(headers: &mut HeaderMap, peer: Peer, host: Option<&str>) {
    let proto = if peer.tls { "https" } else { "http" };
    let ip = peer.addr.ip();
    let for_value = if ip.is_ipv6() {
        format!("\"[{ip}]\"")
    } else {
        ip.to_string()
    };
    let mut forwarded = format!("for={for_value};proto={proto}");
    if let Some(host) = host {
        forwarded.push_str(&format!(";host=\"{host}\""));
    }
    let xff = match header_str(headers, "x-forwarded-for") {
        Some(earlier) => format!("{earlier}, {ip}"),
        None => ip.to_string(),
    };
    let set = |headers: &mut HeaderMap, name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded) {
        headers.append("forwarded", v);
    }
    set(headers, "x-forwarded-for", &xff);
    set(headers, "x-forwarded-proto", proto);
    if let Some(host) = host {
        set(headers, "x-forwarded-host", host);
    }
}

/// Appends this hop to `Via` (RFC 9110 §7.6.3).
fn append_via(headers: &mut HeaderMap, version: Version) {
    let protocol = match version {
        Version::HTTP_2 => "2",
        Version::HTTP_10 => "1.0",
        _ => "1.1",
    };
    if let Ok(v) = HeaderValue::from_str(&format!("{protocol} sse-relay")) {
        headers.append(VIA, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_named_and_hop_by_hop_fields_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn forwarding_headers_append_to_earlier_hops() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
        let peer = Peer {
            addr: "[::1]:5000".parse().unwrap(),
            tls: true,
        };
        add_forwarding(&mut h, peer, Some("app.example"));
        assert_eq!(h["x-forwarded-for"], "203.0.113.7, ::1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "app.example");
        assert_eq!(
            h["forwarded"],
            "for=\"[::1]\";proto=https;host=\"app.example\""
        );
    }
}
