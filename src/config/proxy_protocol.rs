//! `server.proxy_protocol`, `proxy_protocol_from` and `proxy_protocol_timeout_ms`, validated
//! into the server's [`ProxyProtocol`]: the CIDRs parsed, and the companions refused without
//! `proxy_protocol = true` (set alone, they would silently do nothing).
//!
//! It builds the server's settings only; it never reads a header.

use ipnet::IpNet;

use super::issue::{ms, positive, ConfigIssue};
use super::ServerConfig;
use crate::server::proxy_protocol::ProxyProtocol;

/// The PROXY protocol settings of `[server]` (`None`: not expected).
///
/// # Errors
/// A [`ConfigIssue`] naming `server.proxy_protocol_from[i]` for an entry that is neither a CIDR
/// nor an address, or `server.proxy_protocol_from` when it is set without `proxy_protocol`;
/// `server.proxy_protocol_timeout_ms` when it is 0.
pub(super) fn settings(s: &ServerConfig) -> Result<Option<ProxyProtocol>, ConfigIssue> {
    positive(
        "server.proxy_protocol_timeout_ms",
        s.proxy_protocol_timeout_ms,
    )?;
    if !s.proxy_protocol {
        if !s.proxy_protocol_from.is_empty() {
            return Err(ConfigIssue::new(
                "server.proxy_protocol_from",
                "set, but server.proxy_protocol is false",
            ));
        }
        return Ok(None);
    }
    let from = s
        .proxy_protocol_from
        .iter()
        .enumerate()
        .map(|(i, entry)| cidr(&format!("server.proxy_protocol_from[{i}]"), entry))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(ProxyProtocol::new(
        from,
        ms(s.proxy_protocol_timeout_ms),
    )))
}

/// A CIDR (`10.0.0.0/8`, `fd00::/8`) or a single address (as /32 or /128), for `key`. Host
/// bits set under the prefix (`10.0.0.1/8`) are refused: such an entry is usually a typo.
fn cidr(key: &str, entry: &str) -> Result<IpNet, ConfigIssue> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<std::net::IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    let net: IpNet = entry.parse().map_err(|_| {
        ConfigIssue::new(
            key,
            format!("{entry:?} is not a CIDR (e.g. \"10.0.0.0/8\") or an address"),
        )
    })?;
    if net.trunc() != net {
        return Err(ConfigIssue::new(
            key,
            format!(
                "{entry:?} has host bits set under its prefix; did you mean \"{}\"?",
                net.trunc()
            ),
        ));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Settings;

    const ROUTE: &str =
        "[[route]]\npath = \"/e/{topic}\"\nupstream = \"http://127.0.0.1:8081/{topic}\"\n";

    fn issue(server: &str) -> (String, String) {
        let text = format!("{ROUTE}[server]\n{server}\n");
        match Settings::parse(&text, Path::new("relay.toml")) {
            Ok(_) => panic!("accepted: {server}"),
            Err(e) => (e.key, e.reason),
        }
    }

    fn accepted(server: &str) -> Settings {
        let text = format!("{ROUTE}[server]\n{server}\n");
        Settings::parse(&text, Path::new("relay.toml")).expect("valid")
    }

    #[test]
    fn off_by_default() {
        assert!(accepted("").proxy_protocol.is_none());
    }

    #[test]
    fn cidrs_and_addresses_are_accepted() {
        let s = accepted(
            "proxy_protocol = true\nproxy_protocol_from = [\"10.0.0.0/8\", \"192.0.2.7\", \"fd00::/8\"]",
        );
        let pp = s.proxy_protocol.expect("enabled");
        assert!(pp.allows("10.1.2.3".parse().unwrap()));
        assert!(pp.allows("192.0.2.7".parse().unwrap()));
        assert!(pp.allows("::ffff:10.9.9.9".parse().unwrap()), "v4-mapped");
        assert!(pp.allows("fd12::1".parse().unwrap()));
        assert!(!pp.allows("192.0.2.8".parse().unwrap()));
        assert!(!pp.allows("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn an_invalid_cidr_is_named_by_index() {
        let (key, reason) =
            issue("proxy_protocol = true\nproxy_protocol_from = [\"10.0.0.0/8\", \"10.0.0/8\"]");
        assert_eq!(key, "server.proxy_protocol_from[1]");
        assert!(reason.contains("10.0.0/8"), "{reason}");
    }

    #[test]
    fn host_bits_under_the_prefix_are_refused() {
        let (key, reason) = issue("proxy_protocol = true\nproxy_protocol_from = [\"10.0.0.1/8\"]");
        assert_eq!(key, "server.proxy_protocol_from[0]");
        assert!(reason.contains("10.0.0.0/8"), "{reason}");
    }

    #[test]
    fn from_without_proxy_protocol_is_refused() {
        let (key, reason) = issue("proxy_protocol_from = [\"10.0.0.0/8\"]");
        assert_eq!(key, "server.proxy_protocol_from");
        assert!(reason.contains("proxy_protocol is false"), "{reason}");
    }

    #[test]
    fn zero_timeout_is_refused() {
        let (key, _) = issue("proxy_protocol = true\nproxy_protocol_timeout_ms = 0");
        assert_eq!(key, "server.proxy_protocol_timeout_ms");
    }
}
