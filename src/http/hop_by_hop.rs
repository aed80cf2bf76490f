//! Hop-by-hop header fields: those that describe one connection rather than the message, and so
//! are never passed from one connection to the next (RFC 9110 §7.6.1) and are malformed in an
//! h2 message (RFC 9113 §8.2.2). One list and one function serve both the h2 response path and
//! the passthrough proxy; the few fields only a forwarding proxy drops are a second list.
//!
//! This module only removes fields from a header map; it never adds one.

use http::header::{self, HeaderMap, HeaderName};

/// The connection-specific fields (RFC 9110 §7.6.1 names `Connection`, `Proxy-Connection`,
/// `Keep-Alive`, `TE`, `Transfer-Encoding` and `Upgrade`; RFC 9113 §8.2.2 makes the same ones
/// malformed in h2, `TE` allowed only in a request and only as `trailers`). Removed from every
/// message that crosses from one connection to another, and from every h2 response.
const CONNECTION_SPECIFIC: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Fields a forwarding proxy removes besides [`CONNECTION_SPECIFIC`] (RFC 2616 §13.5.1 listed
/// them as hop-by-hop): `Trailer`, since the proxy may frame the body differently on its other
/// side, and `Proxy-Authorization`, credentials for the next inbound proxy, which is this relay
/// (RFC 9110 §11.7.2). An h2 response the relay writes itself keeps them.
pub const FORWARDING_HOP_BY_HOP: [HeaderName; 2] = [header::TRAILER, header::PROXY_AUTHORIZATION];

/// Removes from `headers` the fields every `Connection` line names (RFC 9110 §7.6.1; each line
/// counts, RFC 9110 §5.3), the [`CONNECTION_SPECIFIC`] fields, and the fields in `also` (pass
/// [`FORWARDING_HOP_BY_HOP`] when forwarding a message, nothing for an h2 response).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, also: &[HeaderName]) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(&CONNECTION_SPECIFIC).chain(also) {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_hop_by_hop_fields() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("x-hop, close"));
        headers.append(header::CONNECTION, HeaderValue::from_static("x-second"));
        for (name, value) in [
            ("x-hop", "1"),
            ("x-second", "2"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("proxy-authorization", "Basic eA=="),
            ("cache-control", "no-cache"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        headers
    }

    /// The names left, sorted (removing a field may reorder a `HeaderMap`).
    fn left(headers: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn connection_specific_fields_and_those_connection_names_are_removed() {
        let mut headers = with_hop_by_hop_fields();
        strip_hop_by_hop(&mut headers, &[]);
        assert_eq!(
            left(&headers),
            ["cache-control", "proxy-authorization", "trailer"]
        );
    }

    #[test]
    fn a_forwarding_proxy_also_removes_trailer_and_proxy_authorization() {
        let mut headers = with_hop_by_hop_fields();
        strip_hop_by_hop(&mut headers, &FORWARDING_HOP_BY_HOP);
        assert_eq!(left(&headers), ["cache-control"]);
    }
}
