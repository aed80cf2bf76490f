//! Authorization of every subscribe and every resume: JSON Web Tokens (RFC 7519) whose
//! `subscribe` claim lists path patterns, or forward auth (as nginx `auth_request`) with a
//! cache per (credential hash, topic) and coalesced concurrent checks.
//!
//! Decisions are made on the canonical request path from [`crate::routing`], so no encoding
//! trick reaches a topic a token does not grant. This module decides; it never touches topics,
//! and credentials it reads never go upstream.

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::Empty;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::sync::OnceCell;
use tokio::time::Instant;
use tracing::warn;

use crate::config::{AuthConfig, AuthMode, AuthUnavailable, ForwardAuthConfig, JwtConfig};
use crate::metrics::Metrics;
use crate::warn_limit::WarnLimit;

/// Query parameters that commonly carry tokens; their presence is refused (tokens in URLs leak
/// into logs and `Referer`).
const TOKEN_QUERY_PARAMS: [&str; 4] = ["access_token", "token", "jwt", "auth"];

/// Forward-auth cache entries kept at most, count.
const MAX_CACHE_ENTRIES: usize = 65_536;

/// An allowed subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// When the credential expires: the stream must end by then (JWT `exp`).
    pub expires: Option<SystemTime>,
}

/// A refused subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// 401: no credential, or an invalid one.
    Unauthorized(String),
    /// 403: a valid credential that does not grant this topic.
    Forbidden(String),
    /// The authorization server could not decide (timeout, error, other status).
    Unavailable(String),
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

/// The authorization backends.
pub struct Authorizer {
    jwt: Option<JwtVerifier>,
    forward: Option<ForwardAuth>,
    metrics: Arc<Metrics>,
}

impl Authorizer {
    /// Builds the configured backends.
    ///
    /// # Errors
    /// A reason when a key file cannot be read or an algorithm is unknown (the config
    /// validation reports the same earlier, naming the key).
    pub fn new(
        config: &AuthConfig,
        tls: rustls::ClientConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let jwt = match &config.jwt {
            Some(c) => Some(jwt_validation(c).map_err(|(k, r)| format!("auth.jwt.{k}: {r}"))?),
            None => None,
        };
        let forward = config.forward.as_ref().map(|c| ForwardAuth::new(c, tls));
        Ok(Self {
            jwt,
            forward,
            metrics,
        })
    }

    /// What to do when the forward-auth server fails for an EventSource request.
    pub fn unavailable_policy(&self) -> AuthUnavailable {
        self.forward
            .as_ref()
            .map_or(AuthUnavailable::Retry, |f| f.unavailable)
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
            AuthMode::None => return Ok(Grant { expires: None }),
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
            let d = &self.metrics.auth_denied;
            match denial {
                Denial::Unauthorized(_) => d.unauthorized.inc(),
                Denial::Forbidden(_) => d.forbidden.inc(),
                Denial::Unavailable(_) => d.unavailable.inc(),
            }
        }
        decision
    }
}

/// Verifies JWTs: pinned algorithms, required `exp`, optional `iss`/`aud`, and the
/// `subscribe` claim matched against the canonical path.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    cookie: String,
}

#[derive(serde::Deserialize)]
struct Claims {
    exp: u64,
    #[serde(default)]
    subscribe: Vec<String>,
}

/// Builds a [`JwtVerifier`] from `[auth.jwt]`.
///
/// # Errors
/// `(key, reason)` naming the `[auth.jwt]` key at fault.
pub fn jwt_validation(config: &JwtConfig) -> Result<JwtVerifier, (String, String)> {
    let err = |k: &str, r: String| (k.to_string(), r);
    let algorithms = config
        .algorithms
        .iter()
        .map(|a| Algorithm::from_str(a).map_err(|_| err("algorithms", format!("unknown {a:?}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = algorithms.first() else {
        return Err(err("algorithms", "at least one is required".into()));
    };
    let hmac = |a: &Algorithm| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
    if algorithms.iter().any(|a| hmac(a) != hmac(first)) {
        return Err(err(
            "algorithms",
            "mixes HMAC and public-key algorithms".into(),
        ));
    }
    let read = |k: &str, path: &Option<std::path::PathBuf>| -> Result<Vec<u8>, (String, String)> {
        let path = path
            .as_ref()
            .ok_or_else(|| err(k, format!("required for {first:?}")))?;
        std::fs::read(path).map_err(|e| err(k, format!("cannot read {}: {e}", path.display())))
    };
    let key = if hmac(first) {
        let secret = read("secret_file", &config.secret_file)?;
        if secret.len() < 32 {
            return Err(err(
                "secret_file",
                "an HMAC secret needs at least 32 bytes".into(),
            ));
        }
        DecodingKey::from_secret(&secret)
    } else {
        let pem = read("public_key_file", &config.public_key_file)?;
        let key = match first {
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
            Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
            _ => DecodingKey::from_rsa_pem(&pem),
        };
        key.map_err(|e| {
            err(
                "public_key_file",
                format!("not a usable PEM public key: {e}"),
            )
        })?
    };
    let mut validation = Validation::new(*first);
    validation.algorithms = algorithms;
    validation.leeway = config.clock_skew_ms.div_ceil(1000);
    validation.set_required_spec_claims(&["exp"]);
    validation.validate_nbf = true;
    if let Some(issuer) = &config.issuer {
        validation.set_issuer(&[issuer]);
    }
    match &config.audience {
        Some(audience) => validation.set_audience(&[audience]),
        None => validation.validate_aud = false,
    }
    Ok(JwtVerifier {
        key,
        validation,
        cookie: config.cookie.clone(),
    })
}

impl JwtVerifier {
    fn authorize(&self, request: &AuthRequest<'_>) -> Result<Grant, Denial> {
        refuse_query_tokens(request.raw_query)?;
        let token = bearer(request.headers)
            .or_else(|| cookie(request.headers, &self.cookie))
            .ok_or_else(|| {
                Denial::Unauthorized(format!(
                    "no token: send Authorization: Bearer or the {} cookie",
                    self.cookie
                ))
            })?;
        let data = jsonwebtoken::decode::<Claims>(&token, &self.key, &self.validation)
            .map_err(|e| Denial::Unauthorized(format!("invalid token: {e}")))?;
        let claims = data.claims;
        if !claims
            .subscribe
            .iter()
            .any(|p| grant_matches(p, request.path, request.query))
        {
            let mut what = request.path.to_string();
            if !request.query.is_empty() {
                what = format!("{what}?{}", request.query);
            }
            return Err(Denial::Forbidden(format!(
                "the token's subscribe claim does not grant {what}"
            )));
        }
        // An `exp` past what the clock can hold never ends the stream.
        let expires = UNIX_EPOCH.checked_add(Duration::from_secs(claims.exp));
        Ok(Grant { expires })
    }
}

/// True when a `subscribe` pattern grants the canonical `path` and `query` (see
/// [`crate::routing::TopicTarget`]). A pattern is `PATH[?QUERY]`: `PATH` as in
/// [`path_matches`]; on a request with a query (a route's `query_params`), the pattern must
/// name it, `*` matching within one parameter (never `&`), e.g. `/events/room?id=team-*`.
/// A pattern without `?` grants only query-less requests, so a token for `/events/x` cannot
/// open `/events/x?room=private`.
pub fn grant_matches(pattern: &str, path: &str, query: &str) -> bool {
    let (path_pattern, query_pattern) = match pattern.split_once('?') {
        Some((p, q)) => (p, q),
        None => (pattern, ""),
    };
    path_matches(path_pattern, path)
        && glob_matches(query_pattern.as_bytes(), query.as_bytes(), b'&')
}

/// True when `pattern` matches `path` segment by segment; `*` matches any run of characters
/// within one segment (never a `/`), e.g. `/events/stock-*` matches `/events/stock-ACME`.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let mut p = pattern.split('/');
    let mut s = path.split('/');
    loop {
        match (p.next(), s.next()) {
            (None, None) => return true,
            (Some(pat), Some(seg)) if segment_matches(pat.as_bytes(), seg.as_bytes()) => {}
            _ => return false,
        }
    }
}

fn segment_matches(pattern: &[u8], segment: &[u8]) -> bool {
    glob_matches(pattern, segment, b'/')
}

/// Wildcard match where `*` matches any run of bytes other than `stop`. Greedy with one
/// backtrack point, so it takes O(pattern × text) steps at worst, never exponential.
fn glob_matches(pattern: &[u8], text: &[u8], stop: u8) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star.filter(|&(_, st)| text[st] != stop) {
            // Let the last `*` swallow one more byte and retry after it.
            star = Some((sp, st + 1));
            p = sp + 1;
            t = st + 1;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

fn refuse_query_tokens(raw_query: Option<&str>) -> Result<(), Denial> {
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

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
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

/// Forward auth: asks an authorization server, caches its answers, coalesces identical
/// concurrent checks into one request.
struct ForwardAuth {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    url: String,
    allow_ttl: Duration,
    deny_ttl: Duration,
    timeout: Duration,
    unavailable: AuthUnavailable,
    /// How long an allowed stream may run before it must be authorized again.
    reauthorize_after: Option<Duration>,
    cache: Mutex<HashMap<[u8; 32], Arc<OnceCell<Cached>>>>,
    failing: WarnLimit,
}

#[derive(Clone)]
struct Cached {
    decision: Result<Grant, Denial>,
    at: Instant,
}

impl ForwardAuth {
    fn new(config: &ForwardAuthConfig, tls: rustls::ClientConfig) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_millis(config.timeout_ms)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            url: config.url.clone(),
            allow_ttl: Duration::from_millis(config.cache_ttl_ms),
            deny_ttl: Duration::from_millis(config.negative_cache_ttl_ms),
            timeout: Duration::from_millis(config.timeout_ms),
            unavailable: config.unavailable,
            reauthorize_after: (config.reauthorize_after_ms > 0)
                .then(|| Duration::from_millis(config.reauthorize_after_ms)),
            cache: Mutex::new(HashMap::new()),
            failing: WarnLimit::default(),
        }
    }

    async fn authorize(&self, request: &AuthRequest<'_>) -> Result<Grant, Denial> {
        refuse_query_tokens(request.raw_query)?;
        let key = cache_key(request);
        let asked = Instant::now();
        loop {
            let cell = self.cell(key);
            let cached = cell
                .get_or_init(|| async {
                    Cached {
                        decision: self.ask(request).await,
                        at: Instant::now(),
                    }
                })
                .await;
            // An answer given since we asked is ours (never cached or not: an outage answer
            // is not cached, but it still answers the requests that waited on it).
            if self.fresh(cached) || cached.at >= asked {
                // The stream's deadline counts from now, not from when the answer was cached.
                return cached.decision.clone().map(|_| Grant {
                    expires: self
                        .reauthorize_after
                        .map(|after| SystemTime::now() + after),
                });
            }
            // A stale answer from before: start over with a fresh cell.
            self.evict(key, &cell);
        }
    }

    fn fresh(&self, cached: &Cached) -> bool {
        let ttl = match &cached.decision {
            Ok(_) => self.allow_ttl,
            Err(Denial::Unavailable(_)) => Duration::ZERO,
            Err(_) => self.deny_ttl,
        };
        cached.at.elapsed() <= ttl
    }

    /// The cache cell for `key`: the existing one unless its answer is stale.
    fn cell(&self, key: [u8; 32]) -> Arc<OnceCell<Cached>> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cell) = cache.get(&key) {
            match cell.get() {
                Some(cached) if !self.fresh(cached) => {}
                _ => return cell.clone(),
            }
        }
        if cache.len() >= MAX_CACHE_ENTRIES {
            cache.retain(|_, c| c.get().is_none_or(|cached| self.fresh(cached)));
            if cache.len() >= MAX_CACHE_ENTRIES {
                cache.clear();
            }
        }
        let cell = Arc::new(OnceCell::new());
        cache.insert(key, cell.clone());
        cell
    }

    fn evict(&self, key: [u8; 32], stale: &Arc<OnceCell<Cached>>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.get(&key).is_some_and(|c| Arc::ptr_eq(c, stale)) {
            cache.remove(&key);
        }
    }

    async fn ask(&self, request: &AuthRequest<'_>) -> Result<Grant, Denial> {
        let mut original_uri = request.path.to_string();
        if !request.query.is_empty() {
            original_uri.push('?');
            original_uri.push_str(request.query);
        }
        let mut builder = Request::get(&self.url)
            .header("x-original-uri", &original_uri)
            .header("x-forwarded-for", request.client.to_string())
            .header("x-sse-topic", request.path);
        for name in [AUTHORIZATION, COOKIE] {
            for value in request.headers.get_all(&name) {
                builder = builder.header(&name, value);
            }
        }
        let Ok(auth_request) = builder.body(Empty::new()) else {
            return Err(Denial::Unauthorized(
                "credentials are not valid header values".into(),
            ));
        };
        let answer = tokio::time::timeout(self.timeout, self.client.request(auth_request)).await;
        let status = match answer {
            Ok(Ok(response)) => response.status(),
            Ok(Err(e)) => return Err(self.failed(format!("authorization server: {e}"))),
            Err(_) => return Err(self.failed("authorization server timed out".into())),
        };
        match status {
            s if s.is_success() => Ok(Grant { expires: None }),
            StatusCode::UNAUTHORIZED => Err(Denial::Unauthorized(
                "refused by the authorization server".into(),
            )),
            StatusCode::FORBIDDEN => Err(Denial::Forbidden(
                "refused by the authorization server".into(),
            )),
            other => Err(self.failed(format!("authorization server answered {other}"))),
        }
    }

    fn failed(&self, reason: String) -> Denial {
        if let Some(suppressed) = self.failing.check() {
            warn!(suppressed, %reason, "forward auth unavailable");
        }
        Denial::Unavailable(reason)
    }
}

/// SHA-256 over the client's IP, the credentials (`Authorization`, `Cookie`) and the canonical
/// topic path and query, so the cache holds no credential and one client's answer never serves
/// another's (an authorization server may decide on `X-Forwarded-For`).
fn cache_key(request: &AuthRequest<'_>) -> [u8; 32] {
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    hash.update(request.client.to_string().as_bytes());
    hash.update(b"\0");
    for name in [AUTHORIZATION, COOKIE] {
        for value in request.headers.get_all(&name) {
            hash.update(value.as_bytes());
            hash.update(b"\0");
        }
        hash.update(b"\x01");
    }
    hash.update(request.path.as_bytes());
    hash.update(b"?");
    hash.update(request.query.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(hash.finish().as_ref());
    key
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
    fn star_matches_within_one_segment_only() {
        assert!(path_matches("/events/stock-*", "/events/stock-ACME"));
        assert!(path_matches("/events/*", "/events/a"));
        assert!(path_matches("/events/exact", "/events/exact"));
        assert!(!path_matches("/events/stock-*", "/events/bond-X"));
        assert!(!path_matches("/events/*", "/events/a/b"));
        assert!(!path_matches("/events/*", "/other/a"));
        assert!(!path_matches("/events/a", "/events/ab"));
        assert!(!path_matches("/*", "/events/a"));
    }

    #[test]
    fn a_query_is_granted_only_by_a_pattern_naming_it() {
        assert!(grant_matches("/events/x", "/events/x", ""));
        assert!(!grant_matches("/events/x", "/events/x", "room=private"));
        assert!(grant_matches(
            "/events/x?room=team-*",
            "/events/x",
            "room=team-a"
        ));
        assert!(!grant_matches(
            "/events/x?room=team-*",
            "/events/x",
            "room=team-a&x=1"
        ));
        assert!(!grant_matches(
            "/events/x?room=team-*",
            "/events/x",
            "room=other"
        ));
        assert!(grant_matches("/events/*?*", "/events/y", "lang=en"));
        assert!(grant_matches("/events/*?*", "/events/y", ""));
    }

    #[test]
    fn many_stars_do_not_backtrack_exponentially() {
        let text = "a".repeat(20_000);
        assert!(!path_matches(
            "/*a*a*a*a*a*a*a*a*a*a*b",
            &format!("/{text}")
        ));
        assert!(path_matches("/*a*a*a*a*a*a*a*a*a*a*", &format!("/{text}")));
    }

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
