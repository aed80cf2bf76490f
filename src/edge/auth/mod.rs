//! Authorization of every subscribe and every resume: JSON Web Tokens (RFC 7519) whose
//! `subscribe` claim lists path patterns ([`jwt`], [`pattern`]), or forward auth (as nginx
//! `auth_request`) with a cache per (credential hash, topic) and coalesced concurrent checks
//! ([`forward`]).
//!
//! Decisions are made on the canonical request path from [`super::routing`], so no encoding
//! trick reaches a topic a token does not grant. This module decides; it never touches topics,
//! and credentials it reads never go upstream.

pub mod forward;
pub mod jwt;
pub mod pattern;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderValue};

pub use forward::{ForwardAuth, ForwardAuthSettings};
pub use jwt::JwtVerifier;

use super::metrics::{DenialKind, EdgeMetrics};

/// Query parameters that commonly carry tokens; their presence is refused (tokens in URLs leak
/// into logs and `Referer`).
const TOKEN_QUERY_PARAMS: [&str; 4] = ["access_token", "token", "jwt", "auth"];

/// How a route's subscriptions are authorized.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Anyone may subscribe.
    #[default]
    None,
    /// A JWT (bearer header or cookie) whose `subscribe` claim matches the path.
    Jwt,
    /// An authorization server decides (as nginx `auth_request`).
    Forward,
}

/// What a forward-auth failure (timeout, error, 5xx) means for an EventSource request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthUnavailable {
    /// A 200 stream with a `retry:` hint that ends at once: the browser retries later and
    /// recovers by itself when the authorization server is back (default).
    Retry,
    /// 401: the browser gives up for good.
    Deny,
}

/// An allowed subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// When the credential expires: the stream must end by then (JWT `exp`).
    pub expires: Option<SystemTime>,
    /// The verified JWT's claims, for routes whose upstream takes `{jwt.*}` variables (none
    /// for other modes).
    pub claims: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A refused subscription, with the reason (for the client's `WWW-Authenticate` and logs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// 401: no credential, or an invalid one.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 403: a valid credential that does not grant this topic.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The authorization server could not decide (timeout, error, other status).
    #[error("authorization unavailable: {0}")]
    Unavailable(String),
}

impl Denial {
    /// The metric label (`sse_relay_auth_denied_total{status}`).
    pub fn label(&self) -> DenialKind {
        match self {
            Self::Unauthorized(_) => DenialKind::Unauthorized,
            Self::Forbidden(_) => DenialKind::Forbidden,
            Self::Unavailable(_) => DenialKind::Unavailable,
        }
    }
}

/// What the request handler needs to know about the request being authorized.
pub struct AuthRequest<'a> {
    /// The request headers (credentials are read from here).
    pub headers: &'a HeaderMap,
    /// The raw query (checked for tokens, which are refused there).
    pub raw_query: Option<&'a str>,
    /// The canonical path.
    pub path: &'a str,
    /// The canonical query (may be empty).
    pub query: &'a str,
    /// The client's address.
    pub client: IpAddr,
}

/// The configured authorization backends, built once from the config.
pub struct AuthSettings {
    /// `[auth.jwt]`, verified at load (key file read, algorithms pinned).
    pub jwt: Option<JwtVerifier>,
    /// `[auth.forward]`.
    pub forward: Option<ForwardAuthSettings>,
}

/// The authorization backends.
pub struct Authorizer {
    jwt: Option<JwtVerifier>,
    forward: Option<ForwardAuth>,
    metrics: Arc<EdgeMetrics>,
}

impl Authorizer {
    /// Builds the configured backends; `tls` is for an https authorization server.
    pub fn new(
        settings: AuthSettings,
        tls: rustls::ClientConfig,
        metrics: Arc<EdgeMetrics>,
    ) -> Self {
        Self {
            jwt: settings.jwt,
            forward: settings.forward.map(|f| ForwardAuth::new(f, tls)),
            metrics,
        }
    }

    /// What to do when the forward-auth server fails for an EventSource request.
    pub fn unavailable_policy(&self) -> AuthUnavailable {
        self.forward
            .as_ref()
            .map_or(AuthUnavailable::Retry, ForwardAuth::unavailable)
    }

    /// Decides one subscription under `mode`.
    ///
    /// # Errors
    /// The [`Denial`], counted in `sse_relay_auth_denied_total`.
    pub async fn authorize(
        &self,
        mode: AuthMode,
        request: &AuthRequest<'_>,
    ) -> Result<Grant, Denial> {
        let decision = match mode {
            AuthMode::None => {
                return Ok(Grant {
                    expires: None,
                    claims: None,
                })
            }
            AuthMode::Jwt => match &self.jwt {
                Some(jwt) => jwt.authorize(request),
                None => Err(Denial::Unavailable("no [auth.jwt] configured".into())),
            },
            AuthMode::Forward => match &self.forward {
                Some(forward) => forward.authorize(request).await,
                None => Err(Denial::Unavailable("no [auth.forward] configured".into())),
            },
        };
        if let Err(denial) = &decision {
            self.metrics.auth_denied.inc(denial.label());
        }
        decision
    }
}

pub(crate) fn refuse_query_tokens(raw_query: Option<&str>) -> Result<(), Denial> {
    let Some(query) = raw_query else {
        return Ok(());
    };
    let found = form_urlencoded::parse(query.as_bytes())
        .any(|(k, _)| TOKEN_QUERY_PARAMS.contains(&k.as_ref()));
    if found {
        return Err(Denial::Unauthorized(
            "tokens in the query string are not accepted (they leak into logs); \
             use a cookie or the Authorization header"
                .into(),
        ));
    }
    Ok(())
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

/// The `WWW-Authenticate` value of a 401 (RFC 6750 §3).
pub fn www_authenticate(reason: &str) -> HeaderValue {
    let clean: String = reason
        .chars()
        .filter(|c| *c != '"' && !c.is_control())
        .collect();
    HeaderValue::from_str(&format!(
        "Bearer error=\"invalid_token\", error_description=\"{clean}\""
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_in_the_query_are_refused() {
        assert!(refuse_query_tokens(Some("lastEventId=4")).is_ok());
        assert!(matches!(
            refuse_query_tokens(Some("a=1&access_token=x")),
            Err(Denial::Unauthorized(_))
        ));
    }

    #[test]
    fn bearer_and_cookie_are_read() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("bearer abc"));
        h.insert(COOKIE, HeaderValue::from_static("a=1; sse_token=xyz"));
        assert_eq!(bearer(&h).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "sse_token").as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "other"), None);
    }
}
