//! HTTP plumbing the relay's other modules share: the one HTTP client builder ([`client`]),
//! the hop-by-hop header rules ([`hop_by_hop`]) and the header that lists the relays a
//! subscription passed through ([`HOPS_HEADER`]). The edge, the upstream and the cluster all
//! use it, so none of them needs to import another for it.
//!
//! This module is low: it knows nothing of SSE, topics, routes or peers, and it never imports
//! another module of the relay.

pub mod client;
pub mod hop_by_hop;

pub use client::{http1_client, http_client, HttpClient};
pub use hop_by_hop::{strip_hop_by_hop, FORWARDING_HOP_BY_HOP};

/// The request header that lists the relays a subscription passed through (each relay's
/// random instance id, comma-separated, as `Via` lists proxies, RFC 9110 §7.6.3): each relay
/// adds its own to what it received, and refuses a request that lists it already or lists
/// `limits.max_hops` relays (508), so relays whose routes lead back to each other stop instead
/// of subscribing in a circle.
pub const HOPS_HEADER: &str = "sse-relay-hops";
