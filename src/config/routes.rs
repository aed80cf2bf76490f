//! Building the edge's settings from the raw config: the route table, the `always_on` topics,
//! the authorization backends (the JWT key file is read here, once), CORS and passthrough.
//! Each rejection names its key.
//!
//! It builds and checks; it never serves a request or contacts an origin or an authorization
//! server.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::issue::{positive, ConfigIssue};
use super::{Config, CorsConfig, HeaderSetting, JwtConfig, PassthroughConfig, RouteConfig};
use crate::edge::auth::{AuthMode, AuthSettings, ForwardAuthSettings, JwtVerifier};
use crate::edge::cors::Cors;
use crate::edge::passthrough::PassthroughSettings;
use crate::edge::routing::{
    split_target, PathTemplate, Route, Router, TopicTarget, UpstreamTemplate, CLAIM_PREFIX,
};
use crate::upstream::{CredentialError, UpstreamHeaders};

/// Compiles `[[route]]`: templates parsed, query parameters checked against the upstream's
/// fixed query, paths unique; path variables capped at `max_variable_bytes`
/// (`limits.max_topic_variable_bytes`, at least 1). Without `stream_routes`, at least one
/// route is required (a relay with no route serves nothing).
pub(super) fn router(
    routes: &[RouteConfig],
    max_variable_bytes: usize,
    stream_routes: bool,
) -> Result<Router, ConfigIssue> {
    positive("limits.max_topic_variable_bytes", max_variable_bytes as u64)?;
    if routes.is_empty() && !stream_routes {
        return Err(ConfigIssue::new(
            "route",
            "at least one [[route]] or [[stream_route]] is required",
        ));
    }
    let mut compiled = Vec::with_capacity(routes.len());
    for (i, route) in routes.iter().enumerate() {
        let issue =
            |field: &str, reason: String| ConfigIssue::new(format!("route[{i}].{field}"), reason);
        let path = PathTemplate::parse(&route.path).map_err(|e| issue("path", e.to_string()))?;
        let upstream = UpstreamTemplate::parse(&route.upstream, &path)
            .map_err(|e| issue("upstream", e.to_string()))?;
        if !upstream.claims().is_empty() && route.auth != AuthMode::Jwt {
            return Err(issue(
                "upstream",
                format!(
                    "{{{CLAIM_PREFIX}{}}} takes a verified token's claim: it needs auth = \"jwt\"",
                    upstream.claims()[0]
                ),
            ));
        }
        let fixed_query = route.upstream.split_once('?').map_or("", |(_, q)| q);
        for name in &route.query_params {
            if form_urlencoded::parse(fixed_query.as_bytes()).any(|(k, _)| k == *name) {
                return Err(issue(
                    "query_params",
                    format!("{name:?} is already fixed in route[{i}].upstream's query"),
                ));
            }
        }
        if let Some(j) = routes[..i].iter().position(|r| r.path == route.path) {
            return Err(issue("path", format!("duplicates route[{j}].path")));
        }
        upstream_hosts(route, upstream.host_varies()).map_err(|(k, r)| issue(k, r))?;
        let headers = upstream_headers(&route.upstream_headers)
            .map_err(|(name, e)| issue(&format!("upstream_headers.{name}"), e.to_string()))?;
        compiled.push(
            Route::new(path, upstream, route.query_params.clone(), route.auth)
                .with_upstream_headers(headers)
                .with_upstream_hosts(&route.upstream_hosts),
        );
    }
    Ok(Router::new(compiled).with_max_variable_bytes(max_variable_bytes))
}

/// Checks a route's `upstream_hosts` against its upstream: required (and then exact host
/// names) when a variable stands for the upstream's host, which a client would otherwise choose
/// (a server-side request forgery: `127.1`, `localhost`, an internal service); refused
/// otherwise, where it would mislead. Errors are `(key, reason)`.
fn upstream_hosts(route: &RouteConfig, host_varies: bool) -> Result<(), (&str, String)> {
    match (host_varies, route.upstream_hosts.is_empty()) {
        (true, true) => Err((
            "upstream",
            "a variable in the upstream's host lets a client choose the host the relay connects \
             to: list the hosts it may take in upstream_hosts = [\"a.example\", …]"
                .into(),
        )),
        (false, false) => Err((
            "upstream_hosts",
            "only for an upstream with a variable in its host; this one's host is fixed".into(),
        )),
        _ => match route.upstream_hosts.iter().find(|h| !is_host_name(h)) {
            Some(bad) => Err((
                "upstream_hosts",
                format!("{bad:?} is not a host name (exact names, no port or wildcard)"),
            )),
            None => Ok(()),
        },
    }
}

/// A host a topic variable can render (RFC 3986 §2.3 unreserved characters; a path variable
/// can render no other), not empty.
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Builds a route's `[route.upstream_headers]`, reading each file once now.
fn upstream_headers(
    settings: &BTreeMap<String, HeaderSetting>,
) -> Result<UpstreamHeaders, (String, CredentialError)> {
    let mut headers = UpstreamHeaders::none();
    for (name, setting) in settings {
        let added = match setting {
            HeaderSetting::Literal(value) => headers.literal(name, value),
            HeaderSetting::File { file } => headers.file(name, file),
        };
        added.map_err(|e| (name.clone(), e))?;
    }
    Ok(headers)
}

/// Resolves `topics.always_on` request paths to their topics.
pub(super) fn always_on(
    entries: &[String],
    router: &Router,
) -> Result<Vec<TopicTarget>, ConfigIssue> {
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let (path, query) = split_target(entry);
            router.resolve(path, query).map_err(|_| {
                ConfigIssue::new(
                    format!("topics.always_on[{i}]"),
                    format!("{entry:?} matches no [[route]] (give a request path, e.g. \"/events/clock\")"),
                )
            })
        })
        .collect()
}

/// Builds `[auth]`: each route's mode has its section; the JWT key is read and checked.
pub(super) fn auth(config: &Config) -> Result<AuthSettings, ConfigIssue> {
    for (i, route) in config.routes.iter().enumerate() {
        let missing = match route.auth {
            AuthMode::Jwt if config.auth.jwt.is_none() => Some("[auth.jwt]"),
            AuthMode::Forward if config.auth.forward.is_none() => Some("[auth.forward]"),
            _ => None,
        };
        if let Some(section) = missing {
            return Err(ConfigIssue::new(
                format!("route[{i}].auth"),
                format!("needs a {section} section"),
            ));
        }
    }
    let jwt = match &config.auth.jwt {
        Some(jwt) => Some(jwt_verifier(jwt)?),
        None => None,
    };
    let forward = match &config.auth.forward {
        Some(f) => {
            let url = f
                .url
                .parse::<http::Uri>()
                .ok()
                .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
                .ok_or_else(|| ConfigIssue::new("auth.forward.url", "must be an http(s) URL"))?;
            positive("auth.forward.timeout_ms", f.timeout_ms)?;
            if (1..1000).contains(&f.reauthorize_after_ms) {
                return Err(ConfigIssue::new(
                    "auth.forward.reauthorize_after_ms",
                    "must be 0 (off) or at least 1000: every stream reconnects this often",
                ));
            }
            Some(ForwardAuthSettings {
                url,
                allow_ttl: Duration::from_millis(f.cache_ttl_ms),
                deny_ttl: Duration::from_millis(f.negative_cache_ttl_ms),
                timeout: Duration::from_millis(f.timeout_ms),
                unavailable: f.unavailable,
                reauthorize_after: (f.reauthorize_after_ms > 0)
                    .then(|| Duration::from_millis(f.reauthorize_after_ms)),
            })
        }
        None => None,
    };
    Ok(AuthSettings { jwt, forward })
}

/// Builds the JWT verifier of `[auth.jwt]`: algorithms pinned (one key type), the key file
/// read (an HMAC secret of at least 32 bytes, RFC 7518 §3.2), `exp` required, `nbf` honoured.
fn jwt_verifier(config: &JwtConfig) -> Result<JwtVerifier, ConfigIssue> {
    let issue = |k: &str, r: String| ConfigIssue::new(format!("auth.jwt.{k}"), r);
    let algorithms = config
        .algorithms
        .iter()
        .map(|a| Algorithm::from_str(a).map_err(|_| issue("algorithms", format!("unknown {a:?}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = algorithms.first() else {
        return Err(issue("algorithms", "at least one is required".into()));
    };
    let hmac = |a: &Algorithm| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
    if algorithms.iter().any(|a| hmac(a) != hmac(first)) {
        return Err(issue(
            "algorithms",
            "mixes HMAC and public-key algorithms".into(),
        ));
    }
    let read = |k: &str, path: &Option<std::path::PathBuf>| -> Result<Vec<u8>, ConfigIssue> {
        let path = path
            .as_ref()
            .ok_or_else(|| issue(k, format!("required for {first:?}")))?;
        std::fs::read(path).map_err(|e| issue(k, format!("cannot read {}: {e}", path.display())))
    };
    let key = if hmac(first) {
        let secret = read("secret_file", &config.secret_file)?;
        if secret.len() < 32 {
            return Err(issue(
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
            issue(
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
    Ok(JwtVerifier::new(key, validation, config.cookie.clone()))
}

/// Builds `[cors]`: origins like `https://app.example`, or `"*"` without credentials (Fetch
/// standard, CORS protocol).
pub(super) fn cors(config: &CorsConfig) -> Result<Cors, ConfigIssue> {
    for (i, origin) in config.allowed_origins.iter().enumerate() {
        if origin == "*" {
            if config.allow_credentials {
                return Err(ConfigIssue::new(
                    "cors.allow_credentials",
                    "not allowed with allowed_origins = [\"*\"] (Fetch standard)",
                ));
            }
        } else if !(origin.starts_with("http://") || origin.starts_with("https://"))
            || origin.trim_end_matches('/') != origin
        {
            return Err(ConfigIssue::new(
                format!("cors.allowed_origins[{i}]"),
                format!("{origin:?} is not an origin like \"https://app.example\""),
            ));
        }
    }
    Ok(Cors::new(
        config.allowed_origins.clone(),
        config.allow_credentials,
    ))
}

/// Builds `[passthrough]`: an origin `scheme://authority` (no path or query) and its deadlines.
pub(super) fn passthrough(
    config: &PassthroughConfig,
) -> Result<Option<PassthroughSettings>, ConfigIssue> {
    let origin = match &config.upstream {
        Some(url) => {
            let uri = url.parse::<http::Uri>().ok().filter(|u| {
                matches!(u.scheme_str(), Some("http" | "https"))
                    && u.host().is_some()
                    && u.path() == "/"
                    && u.query().is_none()
            });
            let parts = uri.map(http::Uri::into_parts);
            match parts.and_then(|p| Some((p.scheme?, p.authority?))) {
                Some(origin) => Some(origin),
                None => {
                    return Err(ConfigIssue::new(
                        "passthrough.upstream",
                        "must be an origin like \"http://127.0.0.1:8080\" (no path or query)",
                    ))
                }
            }
        }
        None => None,
    };
    positive("passthrough.connect_timeout_ms", config.connect_timeout_ms)?;
    positive(
        "passthrough.response_timeout_ms",
        config.response_timeout_ms,
    )?;
    Ok(origin.map(|(scheme, authority)| PassthroughSettings {
        scheme,
        authority,
        connect_timeout: Duration::from_millis(config.connect_timeout_ms),
        response_timeout: Duration::from_millis(config.response_timeout_ms),
    }))
}
