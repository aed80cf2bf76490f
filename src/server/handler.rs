//! What the server layer asks of whoever answers requests: a [`Handler`], and the [`Peer`] a
//! request came from. The server knows nothing else about what is served.

use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

use super::request_body::RequestBody;

/// Who sent a request.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// Whether it came over TLS.
    pub tls: bool,
}

/// Answers the requests of every connection of a [`super::Server`].
pub trait Handler: Clone + Send + Sync + 'static {
    /// The response body type.
    type Body: http_body::Body<Data = Bytes, Error = Self::Error> + Send + Unpin + 'static;
    /// The body's error type.
    type Error: Into<Box<dyn std::error::Error + Send + Sync>>;

    /// Answers one request from `peer` (HTTP/1.1 or h2 alike). Takes the handler by value (the
    /// server passes a clone, for a handler an `Arc` or two): the future then owns what it
    /// needs and the server makes it before boxing it, so a request that waits (e.g. for the
    /// origin's first answer) holds one copy of its state, not one per async layer.
    fn handle(
        self,
        request: Request<RequestBody>,
        peer: Peer,
    ) -> impl Future<Output = Response<Self::Body>> + Send;
}

/// A small `text/plain; charset=utf-8` answer, for any handler's boxed body type (the error
/// type `E` is never produced).
pub fn plain_text<E>(status: StatusCode, text: &str) -> Response<BoxBody<Bytes, E>> {
    let body = Full::new(Bytes::copy_from_slice(text.as_bytes()))
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Answers every request with an empty 200: for the server layer's own tests.
#[cfg(test)]
#[derive(Clone)]
pub(crate) struct EmptyAnswer;

#[cfg(test)]
impl Handler for EmptyAnswer {
    type Body = http_body_util::Empty<Bytes>;
    type Error = std::convert::Infallible;

    async fn handle(self, _request: Request<RequestBody>, _peer: Peer) -> Response<Self::Body> {
        Response::new(http_body_util::Empty::new())
    }
}
