//! sse-relay: an edge relay for Server-Sent Events.
//!
//! For every topic the relay keeps exactly one upstream SSE subscription to the origin, parses
//! each event once, encodes it once into a shared buffer, and writes that buffer to every
//! subscriber's HTTP/2 (or HTTP/1.1) stream. Data flows one way: upstream → hub → subscribers.
#![deny(missing_docs)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod backoff;
pub mod config;
pub mod connection;
pub mod cors;
pub mod demo_origin;
pub mod downstream;
pub mod hub;
pub mod metrics;
pub mod proxy;
pub mod relay;
pub mod routing;
pub mod server;
pub mod sse;
pub mod tls;
pub mod topic;
pub mod upstream;
pub mod warn_limit;
