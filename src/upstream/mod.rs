//! Upstream: one origin subscription per topic. Connects (http or https, HTTP/1.1 or h2 by
//! ALPN, with the client of [`crate::http`]), reads the event stream (decoded by its
//! `Content-Encoding`, [`decode`]), parses it once, encodes
//! each event once and publishes it to the topic's ring ([`attempt`]); reconnects with `Last-Event-ID`, exponential
//! backoff with full jitter and the origin's `retry:` ([`follow`], [`backoff`]). A resuming
//! client the topic's ring cannot serve gets a one-off catch-up request ([`replay`]); both
//! send through [`request`]. A request stream's topic reads the one answer the edge received
//! instead ([`answer`]).
//!
//! This module owns the origin side only: it never writes to a subscriber and never forwards a
//! client's headers (cookies, authorization) on the shared subscription.

mod answer;
mod attempt;
pub mod backoff;
pub mod credentials;
mod decode;
mod follow;
mod metrics;
mod peer;
mod replay;
mod request;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::Empty;

pub use answer::{AnswerMetrics, RelayIds};
pub use attempt::is_event_stream;
pub use backoff::{Backoff, BackoffError};
pub use credentials::{CredentialError, UpstreamHeaders};
pub use decode::{Unreadable, ACCEPT_ENCODING, DECODED_PIECE, MAX_CODINGS};
pub use metrics::{Defect, Failure, Refusal, UpstreamMetrics};

use crate::cluster::Cluster;
use crate::http::{http_client, HttpClient};
use crate::hub::{Follow, Replay};

/// Longest `Last-Event-ID` the relay sends or accepts, bytes. A client's longer id is ignored
/// (counted in `sse_relay_requests_rejected_total{reason="last_event_id"}`); an origin's
/// longer `id:` still reaches subscribers with its event, but is never sent back upstream on a
/// reconnect (counted in `sse_relay_upstream_failures_total{reason="last_event_id"}`): no
/// origin we would resume against issues such ids, and each one would be held per topic and
/// sent with every request.
pub const MAX_LAST_EVENT_ID_BYTES: usize = 1024;

/// Settings of upstream subscriptions.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// TCP + TLS connect timeout, and half the deadline for the response headers.
    pub connect_timeout: Duration,
    /// Reconnect when nothing arrives for this long (`None`: never).
    pub read_idle_timeout: Option<Duration>,
    /// Reconnect delays (a fresh copy per topic).
    pub backoff: Backoff,
    /// Largest event accepted, bytes (see [`crate::sse::Parser::new`]).
    pub max_event_bytes: usize,
}

/// The upstream side: an HTTP client shared by every topic's subscription.
pub struct Upstream {
    client: HttpClient<Empty<Bytes>>,
    settings: UpstreamSettings,
    metrics: Arc<UpstreamMetrics>,
    /// In a cluster: where each topic reads from, and the token toward peers.
    cluster: Option<(Cluster, UpstreamHeaders)>,
}

impl Upstream {
    /// Creates the client. `tls` is used for https origins.
    pub fn new(
        settings: UpstreamSettings,
        tls: rustls::ClientConfig,
        metrics: Arc<UpstreamMetrics>,
    ) -> Self {
        Self {
            client: http_client(tls, settings.connect_timeout),
            settings,
            metrics,
            cluster: None,
        }
    }

    /// Reads each topic from its owner in `cluster` unless this relay owns it (see
    /// [`Cluster::source`]).
    pub fn with_cluster(mut self, cluster: Cluster) -> Self {
        let mut headers = UpstreamHeaders::none();
        let token = cluster
            .token()
            .header()
            .to_str()
            .unwrap_or_default()
            .to_string();
        // A token that is a valid header value (checked when it was read) is a valid literal.
        let _ = headers.literal("authorization", &token);
        self.cluster = Some((cluster, headers));
        self
    }

    /// How a new topic follows its origin at `uri`, sending `headers` on each request and
    /// `hops` (the relays passed, this one last) in
    /// [`HOPS_HEADER`](crate::http::HOPS_HEADER) (see
    /// [`crate::hub::TopicSpec`]).
    pub fn follower(
        self: &Arc<Self>,
        uri: Uri,
        headers: Arc<UpstreamHeaders>,
        hops: Arc<str>,
    ) -> Follow {
        let upstream = self.clone();
        Box::new(move |topic| {
            Box::pin(async move { upstream.follow(uri, &headers, &hops, &topic).await })
        })
    }

    /// How a topic at `uri` asks its origin to replay after an id its ring lacks, sending
    /// `headers` (see [`crate::hub::TopicSpec::replay`]).
    pub fn replayer(
        self: &Arc<Self>,
        uri: Uri,
        headers: Arc<UpstreamHeaders>,
        hops: Arc<str>,
    ) -> Replay {
        let upstream = self.clone();
        Arc::new(move |catch_up| {
            let (upstream, uri, headers) = (upstream.clone(), uri.clone(), headers.clone());
            let hops = hops.clone();
            Box::pin(async move { upstream.replay(&uri, &headers, &hops, &catch_up).await })
        })
    }
}
