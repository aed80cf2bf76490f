//! The one HTTP client builder: http or https (rustls, ALPN `h2` then `http/1.1`), TCP_NODELAY,
//! a connect timeout, connection pooling. Used for origin subscriptions, peer links and probes,
//! passthrough requests and forward-auth checks alike; its HTTP/1.1-only variant carries
//! passthrough upgrades.
//!
//! This module only builds clients; it never sends a request or sets a header itself.

use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A pooled client over http and https, sending request bodies of type `B`.
pub type HttpClient<B> = Client<HttpsConnector<HttpConnector>, B>;

/// Builds a client: `tls` for https URLs (ALPN is set here), `connect_timeout` for TCP and the
/// TLS handshake.
pub fn http_client<B>(tls: rustls::ClientConfig, connect_timeout: Duration) -> HttpClient<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    build(tls, connect_timeout, true)
}

/// Builds a client like [`http_client`] that speaks HTTP/1.1 only (ALPN `http/1.1`), for
/// requests that upgrade the connection (RFC 9110 §7.8), which h2 cannot carry.
pub fn http1_client<B>(tls: rustls::ClientConfig, connect_timeout: Duration) -> HttpClient<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    build(tls, connect_timeout, false)
}

fn build<B>(tls: rustls::ClientConfig, connect_timeout: Duration, h2: bool) -> HttpClient<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1();
    let https = if h2 {
        https.enable_http2().wrap_connector(http)
    } else {
        https.wrap_connector(http)
    };
    Client::builder(TokioExecutor::new()).build(https)
}
