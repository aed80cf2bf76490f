//! Sending one request to a route's origin: `Accept: text/event-stream`, the content codings
//! the relay decodes in `Accept-Encoding` ([`super::decode`]; a peer relay is offered them
//! too: it answers identity today, and its answer is read the same way), `Last-Event-ID` when
//! resuming, the route's own headers (re-read files, a stale one counted and warned), a
//! deadline for the response headers, and redirects followed within the route's origin. Both
//! the topic's subscription ([`super::attempt`]) and catch-ups ([`super::replay`]) send with
//! it; what the answer means is theirs to sort.
//!
//! This module sends and follows redirects only: it never reads a response body and never
//! judges a status but a redirect's.

use bytes::Bytes;
use http::header::{ACCEPT, ACCEPT_ENCODING, CACHE_CONTROL, LOCATION};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::Empty;
use hyper::body::Incoming;
use tracing::{debug, warn};

use super::{decode, Upstream, UpstreamHeaders};
use crate::http::{HttpClient, HOPS_HEADER};
use crate::ops::{error_chain, WarnLimit};

/// Redirects followed per attempt, at most (as many as a browser's fetch would follow for
/// EventSource is 20, WHATWG Fetch §4.4; an origin that needs more than 5 is misconfigured).
pub const MAX_REDIRECTS: usize = 5;

/// One request toward a route's origin.
pub(super) struct OriginRequest<'a> {
    pub upstream: &'a Upstream,
    /// The client that sends it (the origin's, or the cluster's peer client).
    pub client: &'a HttpClient<Empty<Bytes>>,
    /// The route's upstream URL for this topic.
    pub uri: &'a Uri,
    /// The route's headers toward the origin.
    pub headers: &'a UpstreamHeaders,
    /// Rate-limits the warning for a header file that could not be re-read.
    pub credential_warnings: &'a WarnLimit,
    /// The relays the subscription has passed through, this one last ([`HOPS_HEADER`]).
    pub hops: &'a str,
}

/// Why a request got no response to sort.
#[derive(Debug, thiserror::Error)]
pub(super) enum RequestError {
    /// Could not connect or send the request.
    #[error("connect failed: {0}")]
    Connect(String),
    /// The response headers did not come in time.
    #[error("response headers timed out")]
    HeadersTimeout,
    /// A redirect the relay does not follow (past [`MAX_REDIRECTS`], to another origin, no
    /// usable `Location`).
    #[error("redirect not followed: {0}")]
    Redirect(String),
    /// The `Last-Event-ID` cannot be sent in a header (an origin's id with control bytes).
    #[error("Last-Event-ID is not a valid header value")]
    UnsendableId,
}

impl OriginRequest<'_> {
    /// Sends the request (resuming after `last_id`), following redirects (at most
    /// [`MAX_REDIRECTS`], within the route's origin: same scheme, host and port), as
    /// EventSource's fetch follows them.
    ///
    /// # Errors
    /// [`RequestError::Connect`], [`RequestError::HeadersTimeout`] (no answer within twice
    /// the connect timeout), [`RequestError::Redirect`] or [`RequestError::UnsendableId`].
    pub async fn send(&self, last_id: Option<&str>) -> Result<Response<Incoming>, RequestError> {
        let mut uri = self.uri.clone();
        for _hop in 0..=MAX_REDIRECTS {
            let response = self.send_once(&uri, last_id).await?;
            if !response.status().is_redirection() || response.status() == StatusCode::NOT_MODIFIED
            {
                return Ok(response);
            }
            uri = redirect_target(self.uri, &uri, response.headers().get(LOCATION))?;
            debug!(%uri, "following the origin's redirect");
        }
        Err(RequestError::Redirect(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }

    async fn send_once(
        &self,
        uri: &Uri,
        last_id: Option<&str>,
    ) -> Result<Response<Incoming>, RequestError> {
        let mut request = Request::get(uri.clone())
            .header(ACCEPT, "text/event-stream")
            .header(ACCEPT_ENCODING, decode::ACCEPT_ENCODING)
            .header(CACHE_CONTROL, "no-cache");
        if let Some(id) = last_id {
            request = request.header("last-event-id", id);
        }
        request = request.header(HOPS_HEADER, self.hops);
        let mut request = request
            .body(Empty::<Bytes>::new())
            .map_err(|_| RequestError::UnsendableId)?;
        for stale in self.headers.apply(request.headers_mut()).await {
            self.upstream.metrics.credential_errors.inc();
            if let Some(suppressed) = self.credential_warnings.check() {
                warn!(
                    header = %stale.name,
                    error = %stale.error,
                    suppressed,
                    "upstream header file unusable: sending its previous value"
                );
            }
        }
        self.upstream.metrics.connects.inc();
        let deadline = self.upstream.settings.connect_timeout * 2;
        match tokio::time::timeout(deadline, self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(RequestError::Connect(error_chain(&e))),
            Err(_) => Err(RequestError::HeadersTimeout),
        }
    }
}

/// Where a redirect from `current` leads (`Location` resolved against it, RFC 9110 §10.2.2),
/// if it stays within the route's origin `route` (scheme, host and port).
///
/// # Errors
/// [`RequestError::Redirect`] without a usable `Location` or for another origin.
fn redirect_target(
    route: &Uri,
    current: &Uri,
    location: Option<&http::HeaderValue>,
) -> Result<Uri, RequestError> {
    let location = location
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| RequestError::Redirect("no Location".into()))?;
    let base = url::Url::parse(&current.to_string())
        .map_err(|e| RequestError::Redirect(format!("{current}: {e}")))?;
    let next = base
        .join(location)
        .map_err(|e| RequestError::Redirect(format!("Location {location:?}: {e}")))?;
    let next: Uri = next
        .as_str()
        .parse()
        .map_err(|e| RequestError::Redirect(format!("Location {location:?}: {e}")))?;
    let same_origin = next.scheme() == route.scheme()
        && next.host().map(str::to_ascii_lowercase) == route.host().map(str::to_ascii_lowercase)
        && next.port_u16() == route.port_u16();
    if !same_origin {
        return Err(RequestError::Redirect(format!("to another origin: {next}")));
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_resolve_against_the_current_uri_and_stay_within_the_origin() {
        let route: Uri = "http://origin:8080/sub/a".parse().unwrap();
        let current: Uri = "http://origin:8080/sub/b/c".parse().unwrap();
        let target = |location: &str| {
            let location = http::HeaderValue::from_str(location).unwrap();
            redirect_target(&route, &current, Some(&location)).map(|u| u.to_string())
        };
        assert_eq!(target("/other").unwrap(), "http://origin:8080/other");
        assert_eq!(target("d?x=1").unwrap(), "http://origin:8080/sub/b/d?x=1");
        assert_eq!(
            target("http://ORIGIN:8080/e").unwrap(),
            "http://origin:8080/e"
        );
        for elsewhere in [
            "https://origin:8080/e",
            "http://origin:9090/e",
            "http://evil/e",
        ] {
            assert!(target(elsewhere).is_err(), "{elsewhere}");
        }
        assert!(redirect_target(&route, &current, None).is_err());
    }
}
