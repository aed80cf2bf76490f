//! Forward auth (as nginx `auth_request`): asks an authorization server, caches its answers
//! per (client IP, credential hash, topic), coalesces identical concurrent checks into one
//! request, and can end allowed streams after a while so they are authorized again.
//!
//! This module only asks and remembers: it never passes the authorization server's answer on
//! to the client, and its cache holds hashes, never a credential.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{AUTHORIZATION, COOKIE};
use http::{Request, StatusCode};
use http_body_util::Empty;
use tokio::sync::OnceCell;
use tokio::time::Instant;
use tracing::warn;

use super::{refuse_query_tokens, AuthRequest, AuthUnavailable, Denial, Grant};
use crate::http::{http_client, HttpClient};
use crate::ops::WarnLimit;

/// Forward-auth cache entries kept at most, count.
const MAX_CACHE_ENTRIES: usize = 65_536;

/// `[auth.forward]`, validated.
#[derive(Debug, Clone)]
pub struct ForwardAuthSettings {
    /// Where to ask (GET).
    pub url: http::Uri,
    /// How long an allow is cached.
    pub allow_ttl: Duration,
    /// How long a deny is cached.
    pub deny_ttl: Duration,
    /// Deadline for the answer (and the connect timeout).
    pub timeout: Duration,
    /// What an outage means for EventSource requests.
    pub unavailable: AuthUnavailable,
    /// How long an allowed stream may run before it must be authorized again (`None`: ever).
    pub reauthorize_after: Option<Duration>,
}

/// Forward auth: asks an authorization server, caches its answers, coalesces identical
/// concurrent checks into one request.
pub struct ForwardAuth {
    client: HttpClient<Empty<Bytes>>,
    settings: ForwardAuthSettings,
    cache: Mutex<HashMap<[u8; 32], Arc<OnceCell<Cached>>>>,
    failing: WarnLimit,
}

#[derive(Clone)]
struct Cached {
    decision: Result<Grant, Denial>,
    at: Instant,
}

impl ForwardAuth {
    /// A forward-auth client; `tls` is for an https authorization server.
    pub fn new(settings: ForwardAuthSettings, tls: rustls::ClientConfig) -> Self {
        Self {
            client: http_client(tls, settings.timeout),
            settings,
            cache: Mutex::new(HashMap::new()),
            failing: WarnLimit::default(),
        }
    }

    /// What an outage means for EventSource requests.
    pub fn unavailable(&self) -> AuthUnavailable {
        self.settings.unavailable
    }

    /// Decides one subscription: a fresh cached answer, or the authorization server's.
    ///
    /// # Errors
    /// The [`Denial`].
    pub async fn authorize(&self, request: &AuthRequest<'_>) -> Result<Grant, Denial> {
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
                        .settings
                        .reauthorize_after
                        .map(|after| SystemTime::now() + after),
                    claims: None,
                });
            }
            // A stale answer from before: start over with a fresh cell.
            self.evict(key, &cell);
        }
    }

    fn fresh(&self, cached: &Cached) -> bool {
        let ttl = match &cached.decision {
            Ok(_) => self.settings.allow_ttl,
            Err(Denial::Unavailable(_)) => Duration::ZERO,
            Err(_) => self.settings.deny_ttl,
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
        let mut builder = Request::get(self.settings.url.clone())
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
        let answer =
            tokio::time::timeout(self.settings.timeout, self.client.request(auth_request)).await;
        let status = match answer {
            Ok(Ok(response)) => response.status(),
            Ok(Err(e)) => return Err(self.failed(format!("authorization server: {e}"))),
            Err(_) => return Err(self.failed("authorization server timed out".into())),
        };
        match status {
            s if s.is_success() => Ok(Grant {
                expires: None,
                claims: None,
            }),
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
