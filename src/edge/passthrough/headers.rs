//! The header rules of passthrough requests and responses that are the proxy's own:
//! `Forwarded` (RFC 7239), `X-Forwarded-For`, `-Proto`, `-Host` and `Via` (RFC 9110 §7.6.3)
//! added, and h2 cookie crumbs joined into one field (RFC 9113 §8.2.3). Hop-by-hop fields are removed before, by [`crate::http::strip_hop_by_hop`] with
//! [`crate::http::FORWARDING_HOP_BY_HOP`] (RFC 9110 §7.6.1).
//!
//! This module only rewrites header maps; it never decides where a request goes.

use http::header::{COOKIE, VIA};
use http::{HeaderMap, HeaderValue, Version};

use crate::server::Peer;

/// The value of `name`, if present and visible ASCII.
pub(super) fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_string)
}

/// `value` as an RFC 7239 §4 `quoted-string` (RFC 9110 §5.6.4): in double quotes, with `"` and
/// `\` escaped by a `\`, so no value can end its parameter and start another element.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Joins several `cookie` fields into one, separated by `"; "`, as RFC 9113 §8.2.3 requires
/// before an h2 request goes on over HTTP/1.1 (a client may split its cookies into crumbs on
/// h2; an HTTP/1.1 origin reads only one `Cookie` line, RFC 6265 §5.4).
pub(super) fn join_cookie_crumbs(headers: &mut HeaderMap) {
    if headers.get_all(COOKIE).iter().nth(1).is_none() {
        return;
    }
    let crumbs: Vec<&[u8]> = headers
        .get_all(COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let joined = crumbs.join(&b"; "[..]);
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, value);
    }
}

/// Adds `Forwarded` (RFC 7239 §4; `host` and an IPv6 `for` as quoted-strings),
/// `X-Forwarded-For` (appended to any earlier hops), `X-Forwarded-Proto` and
/// `X-Forwarded-Host`.
pub(super) fn add_forwarding(headers: &mut HeaderMap, peer: Peer, host: Option<&str>) {
    let proto = if peer.tls { "https" } else { "http" };
    let ip = peer.addr.ip();
    let for_value = if ip.is_ipv6() {
        quoted(&format!("[{ip}]"))
    } else {
        ip.to_string()
    };
    let mut forwarded = format!("for={for_value};proto={proto}");
    if let Some(host) = host {
        forwarded.push_str(&format!(";host={}", quoted(host)));
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
pub(super) fn append_via(headers: &mut HeaderMap, version: Version) {
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
    use crate::http::{strip_hop_by_hop, FORWARDING_HOP_BY_HOP};

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
        strip_hop_by_hop(&mut h, &FORWARDING_HOP_BY_HOP);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn a_host_stays_inside_its_quoted_string() {
        let mut h = HeaderMap::new();
        let peer = Peer {
            addr: "127.0.0.1:5000".parse().unwrap(),
            tls: false,
        };
        add_forwarding(
            &mut h,
            peer,
            Some(r#"x", for=6.6.6.6;proto=https;host="y\"#),
        );
        assert_eq!(
            h["forwarded"],
            r#"for=127.0.0.1;proto=http;host="x\", for=6.6.6.6;proto=https;host=\"y\\""#
        );
    }

    #[test]
    fn cookie_crumbs_are_joined_into_one_field() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1"));
        h.append(COOKIE, HeaderValue::from_static("b=2"));
        join_cookie_crumbs(&mut h);
        let cookies: Vec<_> = h.get_all(COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1; b=2"]);
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
