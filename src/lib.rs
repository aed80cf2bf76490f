//! sse-relay: an edge relay for Server-Sent Events.
//!
//! For every topic the relay keeps exactly one upstream SSE subscription to the origin, parses
//! each event once, encodes it once into a shared buffer, and writes that buffer to every
//! subscriber's HTTP/2 (or HTTP/1.1) stream. Data flows one way: upstream → hub → subscribers.
//!
//! The modules, bottom to top: [`sse`] (wire format), [`ops`] (metrics primitives, warnings)
//! and [`http`](crate::http) (the HTTP client builder, hop-by-hop rules, the hops header) know
//! no other module; [`hub`] (topics, rings, subscribers, each topic's supervisor); [`cluster`]
//! (peers and topic owners, read by the upstream); [`upstream`] (following an origin) and
//! [`downstream`] (a subscriber's body); [`server`] (listeners and connections, generic over a
//! handler); [`edge`] (the per-request decision); [`config`] (raw model → validated settings);
//! [`admin`] and [`demo_origin`] on the server layer; [`app`], the composition root.
#![deny(missing_docs)]

pub mod admin;
pub mod app;
pub mod cluster;
pub mod compress;
pub mod config;
pub mod demo_origin;
pub mod downstream;
pub mod edge;
pub mod http;
pub mod hub;
pub mod ops;
pub mod server;
pub mod sse;
pub mod upstream;
