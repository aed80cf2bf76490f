//! The checks every request passes before it is routed, whatever its route: the method is one
//! the edge serves (not CONNECT, not TRACE), the request target and scheme are ones an origin
//! server takes (RFC 9113 §8.3.1), and the request names exactly one valid authority (RFC 9112
//! §3.2, RFC 9113 §8.3.1). Also [`Refusals`], which counts and logs (rate-limited) whatever the
//! edge refuses.
//!
//! This module only inspects a request's head; it never rewrites a request and never decides
//! where one goes.

use http::header::HOST;
use http::{HeaderValue, Method, Request, Version};
use tracing::warn;

use super::metrics::{EdgeMetrics, RejectReason};
use crate::ops::metrics::Label;
use crate::ops::WarnLimit;

/// Why a request was refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `Host` on HTTP/1.1 (nor an authority on h2), more than one, a value that is not
    /// `uri-host [":" port]` (RFC 9112 §3.2, RFC 3986 §3.2.2), or an h2 `host` that names
    /// another authority than `:authority` (RFC 9113 §8.3.1): 400.
    #[error("bad request: {0}")]
    Host(&'static str),
    /// `*` as the target of anything but OPTIONS (RFC 9112 §3.2.4, RFC 9113 §8.3.1), or a
    /// scheme other than http or https: 400.
    #[error("bad request: {0}")]
    Target(&'static str),
    /// CONNECT (the relay is no tunnel, RFC 9110 §9.3.6) or TRACE (it would reflect the
    /// client's credentials, RFC 9110 §9.3.8): 405 with `Allow`, as nginx answers.
    #[error("method not allowed")]
    Method,
}

impl Refusal {
    /// The reason it is counted under.
    pub fn reason(self) -> RejectReason {
        match self {
            Self::Host(_) => RejectReason::Host,
            Self::Target(_) => RejectReason::RequestTarget,
            Self::Method => RejectReason::Method,
        }
    }
}

/// Checks `request`'s method, target and authority, in that order.
///
/// # Errors
/// The first [`Refusal`] that applies.
pub fn check<B>(request: &Request<B>) -> Result<(), Refusal> {
    let method = request.method();
    if method == Method::CONNECT || method == Method::TRACE {
        return Err(Refusal::Method);
    }
    let uri = request.uri();
    if uri.path() == "*" && method != Method::OPTIONS {
        return Err(Refusal::Target("'*' is a target for OPTIONS only"));
    }
    if uri
        .scheme_str()
        .is_some_and(|s| s != "http" && s != "https")
    {
        return Err(Refusal::Target("the scheme must be http or https"));
    }
    check_authority(request)
}

/// RFC 9112 §3.2: one `Host`, valid, and required on HTTP/1.1 (an absolute-form target's
/// authority wins over it, §3.2.2; it must be valid too, without userinfo, RFC 9110 §4.2.4). RFC 9113 §8.3.1: on h2 `:authority` wins, and a `host`
/// beside it must name the same authority; this relay refuses one that does not (the RFC
/// allows treating it as malformed) rather than ignore it, so a request never names two.
fn check_authority<B>(request: &Request<B>) -> Result<(), Refusal> {
    let mut hosts = request.headers().get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Refusal::Host("more than one Host"));
    }
    if host.is_some_and(|h| !is_host_value(h.as_bytes())) {
        return Err(Refusal::Host("Host is not uri-host [\":\" port]"));
    }
    let authority = request.uri().authority();
    if authority.is_some_and(|a| !is_host_value(a.as_str().as_bytes())) {
        return Err(Refusal::Host("the authority is not uri-host [\":\" port]"));
    }
    match (request.version(), host, authority) {
        (Version::HTTP_2 | Version::HTTP_3, Some(host), Some(authority))
            if !eq_authority(host, authority.as_str()) =>
        {
            Err(Refusal::Host("host differs from :authority"))
        }
        (Version::HTTP_2 | Version::HTTP_3, None, None) => Err(Refusal::Host("no authority")),
        (Version::HTTP_11, None, _) => Err(Refusal::Host("no Host on HTTP/1.1")),
        _ => Ok(()),
    }
}

fn eq_authority(host: &HeaderValue, authority: &str) -> bool {
    host.as_bytes().eq_ignore_ascii_case(authority.as_bytes())
}

/// `uri-host [":" port]` (RFC 9110 §7.2, RFC 3986 §3.2.2-3): an IP-literal in brackets (IPv6;
/// IPvFuture is not served), or a reg-name / IPv4 of unreserved, sub-delims and
/// percent-encoded octets; a port of at most five digits, no more than 65535. No userinfo.
pub fn is_host_value(value: &[u8]) -> bool {
    let (host, port) = if value.first() == Some(&b'[') {
        let Some(close) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = std::str::from_utf8(&value[1..close]).unwrap_or_default();
        if literal.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match &value[close + 1..] {
            [] => (&[][..], None),
            [b':', port @ ..] => (&[][..], Some(port)),
            _ => return false,
        }
    } else {
        match value.iter().rposition(|&b| b == b':') {
            Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
            None => (value, None),
        }
    };
    is_reg_name(host) && port.is_none_or(is_port)
}

fn is_reg_name(name: &[u8]) -> bool {
    let mut bytes = name.iter();
    while let Some(&b) = bytes.next() {
        let ok = match b {
            b'%' => {
                bytes.next().is_some_and(u8::is_ascii_hexdigit)
                    && bytes.next().is_some_and(u8::is_ascii_hexdigit)
            }
            b'-' | b'.' | b'_' | b'~' => true,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => true,
            _ => b.is_ascii_alphanumeric(),
        };
        if !ok {
            return false;
        }
    }
    true
}

fn is_port(port: &[u8]) -> bool {
    port.len() <= 5
        && port.iter().all(u8::is_ascii_digit)
        && std::str::from_utf8(port)
            .ok()
            .and_then(|p| {
                if p.is_empty() {
                    Some(0)
                } else {
                    p.parse::<u32>().ok()
                }
            })
            .is_some_and(|p| p <= 65_535)
}

/// Counts each refusal in `sse_relay_requests_rejected_total{reason}` and logs it, at most
/// once a minute per reason (with how many were not logged), so a flood of bad requests
/// cannot flood the logs.
pub struct Refusals {
    metrics: std::sync::Arc<EdgeMetrics>,
    /// One limiter per [`RejectReason`], in the order of `RejectReason::ALL`.
    limits: Vec<WarnLimit>,
}

impl Refusals {
    /// Refusals counted in `metrics`.
    pub fn new(metrics: std::sync::Arc<EdgeMetrics>) -> Self {
        let limits = RejectReason::ALL
            .iter()
            .map(|_| WarnLimit::default())
            .collect();
        Self { metrics, limits }
    }

    /// Counts one refusal for `reason` and logs it unless one was logged recently.
    pub fn refuse(&self, reason: RejectReason, detail: &dyn std::fmt::Display) {
        self.metrics.rejected.inc(reason);
        let index = RejectReason::ALL.iter().position(|r| *r == reason);
        let limit = index.and_then(|i| self.limits.get(i));
        if let Some(suppressed) = limit.and_then(WarnLimit::check) {
            warn!(reason = reason.label(), %detail, suppressed, "request refused");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_values_are_uri_host_and_an_optional_port() {
        for ok in [
            "a.example",
            "a.example:443",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:8443",
            "x%41y",
            "a.example:",
            "",
        ] {
            assert!(is_host_value(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "a b",
            "x\", for=6.6.6.6",
            "a\\b",
            "user@a.example",
            "a.example:80x",
            "a.example:65536",
            "a.example:000443",
            "[not-an-ip]",
            "[::1]x",
            "x%4",
            "a/b",
        ] {
            assert!(!is_host_value(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn h2_takes_authority_and_refuses_a_host_naming_another() {
        let h2 = |host: Option<&str>, uri: &str| {
            let mut b = Request::get(uri).version(Version::HTTP_2);
            if let Some(host) = host {
                b = b.header(HOST, host);
            }
            check(&b.body(()).unwrap())
        };
        assert_eq!(h2(None, "https://a.example/x"), Ok(()));
        assert_eq!(h2(Some("A.example"), "https://a.example/x"), Ok(()));
        assert!(h2(Some("b.example"), "https://a.example/x").is_err());
        assert_eq!(h2(Some("a.example"), "/x"), Ok(()));
        assert!(h2(None, "/x").is_err());
        assert!(h2(None, "https://user@a.example/x").is_err());
    }

    fn checked(method: Method, uri: &str) -> Result<(), Refusal> {
        let r = Request::builder().method(method).uri(uri);
        check(&r.header(HOST, "a").body(()).unwrap())
    }

    #[test]
    fn asterisk_is_for_options_and_schemes_are_http() {
        assert!(checked(Method::GET, "*").is_err());
        assert_eq!(checked(Method::OPTIONS, "*"), Ok(()));
        assert!(checked(Method::GET, "ftp://a/x").is_err());
        assert_eq!(checked(Method::GET, "https://a/x"), Ok(()));
    }

    #[test]
    fn connect_and_trace_are_refused() {
        assert_eq!(checked(Method::CONNECT, "a:443"), Err(Refusal::Method));
        assert_eq!(checked(Method::TRACE, "/"), Err(Refusal::Method));
    }
}
