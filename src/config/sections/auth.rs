//! The `[auth]` tables: who may subscribe (JWT verification, forward authorization), every
//! field documented with its unit and default. The raw model only: validated by
//! [`crate::config`]'s route builders, never used raw.

use std::path::PathBuf;

use serde::Deserialize;

use crate::edge::auth::AuthUnavailable;

/// `[auth]`: the authorization backends.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `[auth.jwt]`: JSON Web Tokens (RFC 7519).
    pub jwt: Option<JwtConfig>,
    /// `[auth.forward]`: an authorization server asked per subscription.
    pub forward: Option<ForwardAuthConfig>,
}

/// `[auth.jwt]`: how tokens are verified.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Accepted algorithms, pinned (e.g. `["HS256"]`, `["RS256"]`, `["ES256"]`); one key type.
    pub algorithms: Vec<String>,
    /// Raw secret bytes for HS256/HS384/HS512.
    pub secret_file: Option<PathBuf>,
    /// PEM public key for RS*/PS*/ES*/EdDSA.
    pub public_key_file: Option<PathBuf>,
    /// Required `iss`, checked when set.
    pub issuer: Option<String>,
    /// Required `aud`, checked when set.
    pub audience: Option<String>,
    /// Cookie that may carry the token (EventSource cannot set headers). Default `sse_token`.
    #[serde(default = "default_cookie")]
    pub cookie: String,
    /// Allowed clock skew for `exp`/`nbf`, ms. Default 30000.
    #[serde(default = "default_clock_skew")]
    pub clock_skew_ms: u64,
}

fn default_cookie() -> String {
    "sse_token".into()
}

fn default_clock_skew() -> u64 {
    30_000
}

/// `[auth.forward]`: nginx `auth_request`-style authorization.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuthConfig {
    /// GET here with the client's `Authorization` and `Cookie`, `X-Original-URI`,
    /// `X-Forwarded-For` and `X-SSE-Topic`; 2xx allows, 401/403 deny with that status.
    pub url: String,
    /// How long an allow is cached per (credential hash, topic), ms. Default 30000.
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl_ms: u64,
    /// How long a deny is cached, ms. Default 5000.
    #[serde(default = "default_negative_ttl")]
    pub negative_cache_ttl_ms: u64,
    /// Deadline for the authorization server's answer, ms. Default 2000.
    #[serde(default = "default_auth_timeout")]
    pub timeout_ms: u64,
    /// EventSource requests when the server fails: `"retry"` (default) or `"deny"` (401).
    /// Other requests get 503 either way.
    #[serde(default = "default_unavailable")]
    pub unavailable: AuthUnavailable,
    /// End a forward-authorized stream (after a `retry:` hint) this long after it was allowed,
    /// so the client reconnects, is authorized again and resumes by `Last-Event-ID`: a revoked
    /// credential then stops receiving within this plus `cache_ttl_ms`, ms. 0 (default): a
    /// stream is authorized once, at subscribe. Otherwise at least 1000.
    #[serde(default)]
    pub reauthorize_after_ms: u64,
}

fn default_cache_ttl() -> u64 {
    30_000
}

fn default_negative_ttl() -> u64 {
    5_000
}

fn default_auth_timeout() -> u64 {
    2_000
}

fn default_unavailable() -> AuthUnavailable {
    AuthUnavailable::Retry
}
