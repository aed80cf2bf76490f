//! Who a new topic is charged to, against the per-client topic budget
//! (`limits.max_topics_per_client_percent`): on a route with JWT auth the token's subject,
//! elsewhere the client's address (with PROXY protocol, the address it declares), an IPv6
//! address by its /64 prefix, as one host is usually handed a whole /64 (RFC 4291 §2.5.4) and
//! could otherwise take a budget per address.
//!
//! It only names the client; the hub keeps the budget.

use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::hub::Opener;

/// The opener of a topic a client at `addr` with verified JWT `claims` (if any) opens.
pub fn opener(addr: IpAddr, claims: Option<&Map<String, Value>>) -> Opener {
    // RFC 7519 §4.1.2: `sub` is unique in the issuer's context; the route's key set is one
    // issuer's.
    if let Some(subject) = claims.and_then(|c| c.get("sub")).and_then(Value::as_str) {
        return Opener::new(format!("jwt {subject}"));
    }
    match addr {
        IpAddr::V4(v4) => Opener::new(format!("ip {v4}")),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Opener::new(format!("ip {v4}")),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                Opener::new(format!("ip {a:x}:{b:x}:{c:x}:{d:x}::/64"))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(addr: &str, claims: Option<Value>) -> String {
        let claims = claims.map(|c| c.as_object().unwrap().clone());
        opener(addr.parse().unwrap(), claims.as_ref())
            .as_str()
            .to_string()
    }

    #[test]
    fn a_client_is_its_subject_or_its_address() {
        assert_eq!(named("192.0.2.7", None), "ip 192.0.2.7");
        assert_eq!(named("::ffff:192.0.2.7", None), "ip 192.0.2.7");
        assert_eq!(
            named("2001:db8:1:2:aaaa::1", None),
            named("2001:db8:1:2:bbbb::2", None),
            "one /64 is one client"
        );
        assert_ne!(
            named("2001:db8:1:2::1", None),
            named("2001:db8:1:3::1", None)
        );
        let alice = serde_json::json!({"sub": "alice", "exp": 1});
        assert_eq!(named("192.0.2.7", Some(alice.clone())), "jwt alice");
        assert_eq!(
            named("192.0.2.8", Some(alice)),
            "jwt alice",
            "a subject is one client wherever it connects from"
        );
        let no_sub = serde_json::json!({"exp": 1});
        assert_eq!(named("192.0.2.7", Some(no_sub)), "ip 192.0.2.7");
    }
}
