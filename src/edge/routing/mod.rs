//! Routing: maps a request's path and query to an SSE topic subscription (topic key and
//! upstream URL), using the route templates from the config.
//!
//! This module owns template parsing and matching only; it does no I/O and knows nothing of
//! topics' state or of HTTP bodies.

mod shown;
mod template;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use http::Uri;

pub use shown::{ClaimHasher, SHOWN_HASH_HEX};
pub use template::{MissingClaim, PathTemplate, TemplateError, UpstreamTemplate, CLAIM_PREFIX};

use super::auth::AuthMode;
use crate::upstream::UpstreamHeaders;

/// A request resolved to a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTarget {
    /// The topic key: route index, rendered upstream URL and the significant query parameters.
    /// Two requests share an upstream subscription exactly when their keys are equal.
    pub key: String,
    /// How the key is shown in `/topics`, `/stats`, the status page and the logs, when that
    /// differs from the key: on a route whose upstream takes `{jwt.*}` claims, the key with
    /// each claim's value replaced by a short keyed hash ([`ClaimHasher::shown`]). `None`:
    /// the key is shown as it is.
    pub shown: Option<String>,
    /// The upstream URL to subscribe to.
    pub upstream: Uri,
    /// The canonical request path (decoded variables rendered into the route's template):
    /// what authorization checks and what labels the topic.
    pub path: String,
    /// The canonical query: the route's declared parameters, sorted, first value each,
    /// re-encoded (`application/x-www-form-urlencoded`); empty when none.
    pub query: String,
    /// How subscriptions on this route are authorized.
    pub auth: AuthMode,
    /// The route's headers toward its origin (`[route.upstream_headers]`).
    pub upstream_headers: Arc<UpstreamHeaders>,
}

/// The compiled route table.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<Route>,
    /// Hashes the claims of per-user topic keys for display, under this router's own key.
    hasher: ClaimHasher,
    /// Longest decoded value a path variable may take, bytes.
    max_variable_bytes: usize,
}

/// A route variable's longest decoded value unless [`Router::with_max_variable_bytes`] says
/// otherwise, bytes (`limits.max_topic_variable_bytes`'s default).
pub const MAX_VARIABLE_BYTES: usize = 1024;

impl Router {
    /// The topic another relay of the cluster subscribes to by its key (`<route index>
    /// <upstream URL>`, as [`Matched::target`] makes it), labelled `label`; `None` unless the
    /// route exists and the URL is on its upstream's origin (a peer cannot point this relay at
    /// another host, token or not).
    pub fn peer_target(&self, key: &str, label: &str) -> Option<TopicTarget> {
        let (index, rest) = key.split_once(' ')?;
        // A URI has no space: what follows one is the key's relay count (`hops=N`).
        let url = rest.split_once(' ').map_or(rest, |(url, _)| url);
        let route = self.routes.get(index.parse::<usize>().ok()?)?;
        let upstream: Uri = url.parse().ok()?;
        if !route.upstream.admits(&upstream) || !route.admits_host(&upstream) || upstream != url {
            return None;
        }
        // The claims are not known here, only the URL they were rendered into: the label (the
        // requester's canonical path) gives the path variables, the rest is read off the URL.
        let shown = route.uses_claims().then(|| {
            let bound = route.path.matches(label).unwrap_or_default();
            let url_shown = self.hasher.shown(&route.upstream.render_paths(&bound), url);
            format!("{index} {url_shown}{}", &rest[url.len()..])
        });
        Some(TopicTarget {
            key: key.to_string(),
            shown,
            upstream,
            path: label.to_string(),
            query: String::new(),
            auth: route.auth,
            upstream_headers: route.upstream_headers.clone(),
        })
    }
}

/// One compiled `[[route]]`.
#[derive(Debug, Clone)]
pub struct Route {
    path: PathTemplate,
    upstream: UpstreamTemplate,
    query_params: Vec<String>,
    auth: AuthMode,
    upstream_headers: Arc<UpstreamHeaders>,
    /// The hosts a varying upstream host may take, lowercase; empty when the host is fixed.
    upstream_hosts: Vec<String>,
}

impl Route {
    /// A route from its templates; `query_params` are sorted and deduplicated (they join the
    /// topic key in that order). It sends no headers of its own upstream until
    /// [`Route::with_upstream_headers`].
    pub fn new(
        path: PathTemplate,
        upstream: UpstreamTemplate,
        mut query_params: Vec<String>,
        auth: AuthMode,
    ) -> Self {
        query_params.sort();
        query_params.dedup();
        Self {
            path,
            upstream,
            query_params,
            auth,
            upstream_headers: Arc::default(),
            upstream_hosts: Vec::new(),
        }
    }

    /// The route with its upstream's rendered host limited to `hosts` (exact names, compared
    /// without ASCII case, RFC 3986 §3.2.2); a route whose upstream host varies needs them.
    pub fn with_upstream_hosts(mut self, hosts: &[String]) -> Self {
        self.upstream_hosts = hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
        self
    }

    /// True when `uri`'s host is one the route may connect to: any, for a fixed upstream host
    /// (the template decides it); one of the listed hosts, for a varying one.
    fn admits_host(&self, uri: &Uri) -> bool {
        if !self.upstream.host_varies() {
            return true;
        }
        let host = uri.host().unwrap_or_default().to_ascii_lowercase();
        self.upstream_hosts.contains(&host)
    }

    /// The route with `headers` sent on its upstream requests.
    pub fn with_upstream_headers(mut self, headers: UpstreamHeaders) -> Self {
        self.upstream_headers = Arc::new(headers);
        self
    }

    /// The path template.
    pub fn path(&self) -> &PathTemplate {
        &self.path
    }

    /// How subscriptions on this route are authorized.
    pub fn auth(&self) -> AuthMode {
        self.auth
    }

    /// True when its upstream URL takes `{jwt.*}` claims (a per-user topic).
    pub fn uses_claims(&self) -> bool {
        !self.upstream.claims().is_empty()
    }
}

/// A request matched to a route, before authorization: what authorization checks, and what
/// [`Matched::target`] turns into the topic once the token's claims are known.
#[derive(Debug)]
pub struct Matched<'r> {
    index: usize,
    route: &'r Route,
    hasher: &'r ClaimHasher,
    bound: Vec<(&'r str, String)>,
    /// The canonical request path.
    pub path: String,
    /// The canonical query (see [`TopicTarget::query`]).
    pub query: String,
    /// How subscriptions on the route are authorized.
    pub auth: AuthMode,
}

impl Matched<'_> {
    /// The topic, with the subscriber's verified JWT `claims` filled into `{jwt.*}` upstream
    /// variables: each user's claim value becomes part of the upstream URL and so of the topic
    /// key, and one user can never share another's subscription.
    ///
    /// # Errors
    /// [`RouteMiss::MissingClaim`] when the route needs a claim the token lacks;
    /// [`RouteMiss::BadQuery`] when the URL does not parse.
    pub fn target(
        self,
        claims: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Result<TopicTarget, RouteMiss> {
        let mut url = self
            .route
            .upstream
            .render(&self.bound, claims)
            .map_err(|_| RouteMiss::MissingClaim)?;
        if !self.query.is_empty() {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&self.query);
        }
        let upstream: Uri = url.parse().map_err(|_| RouteMiss::BadQuery)?;
        if !self.route.admits_host(&upstream) {
            return Err(RouteMiss::HostNotListed);
        }
        let shown = self.route.uses_claims().then(|| {
            let template = self.route.upstream.render_paths(&self.bound);
            let url_shown = self.hasher.shown(&template, &upstream.to_string());
            format!("{} {url_shown}", self.index)
        });
        Ok(TopicTarget {
            key: format!("{} {upstream}", self.index),
            shown,
            upstream,
            path: self.path,
            query: self.query,
            auth: self.auth,
            upstream_headers: self.route.upstream_headers.clone(),
        })
    }
}

/// Why a request did not resolve to a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteMiss {
    /// No route's path matches.
    #[error("no route")]
    NoRoute,
    /// A route matched but the request's query could not be used in the upstream URL.
    #[error("query parameter not usable")]
    BadQuery,
    /// The route's upstream takes a `{jwt.*}` claim the subscriber's token does not carry, or
    /// carries as an empty string, `.` or `..` (RFC 3986 §3.3 dot-segments).
    #[error("the token lacks a claim this route needs")]
    MissingClaim,
    /// The route's upstream host is a variable and the request renders it to a host not in the
    /// route's `upstream_hosts`: answered 404, as for a path no route has (the relay does not
    /// say which hosts exist), and no host is contacted.
    #[error("no route")]
    HostNotListed,
    /// A path variable's decoded value is longer than the router's cap: 414 URI Too Long
    /// (RFC 9110 §15.5.15), before authorization and without a topic.
    #[error("a route variable is longer than the relay takes")]
    VariableTooLong,
}

impl Router {
    /// The route table, first match wins.
    pub fn new(routes: Vec<Route>) -> Self {
        Self {
            routes,
            hasher: ClaimHasher::random(),
            max_variable_bytes: MAX_VARIABLE_BYTES,
        }
    }

    /// The table with path variables capped at `bytes` each, decoded.
    pub fn with_max_variable_bytes(mut self, bytes: usize) -> Self {
        self.max_variable_bytes = bytes;
        self
    }

    /// The routes, in order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// True when some route's path template matches `path`.
    pub fn is_sse_path(&self, path: &str) -> bool {
        self.routes.iter().any(|r| r.path.matches(path).is_some())
    }

    /// True when `path` is not an SSE route's canonical spelling but matches one leniently (see
    /// [`PathTemplate::matches_leniently`]): the relay answers 404 rather than pass it through.
    pub fn shadows_sse_path(&self, path: &str) -> bool {
        !self.is_sse_path(path) && self.routes.iter().any(|r| r.path.matches_leniently(path))
    }

    /// Matches a request path and query to a route, in canonical form (see
    /// [`PathTemplate::matches`]). Only the route's declared query parameters are kept (sorted
    /// by name, first value of each, decoded and re-encoded), so parameter order, duplicates,
    /// encodings and unknown parameters do not split a topic or dodge an access check.
    ///
    /// # Errors
    /// [`RouteMiss::NoRoute`]; [`RouteMiss::VariableTooLong`] when the matching route binds a
    /// value longer than the cap.
    pub fn matched(&self, path: &str, query: Option<&str>) -> Result<Matched<'_>, RouteMiss> {
        for (index, route) in self.routes.iter().enumerate() {
            let Some(bound) = route.path.matches(path) else {
                continue;
            };
            if bound.iter().any(|(_, v)| v.len() > self.max_variable_bytes) {
                return Err(RouteMiss::VariableTooLong);
            }
            let mut canonical_query = form_urlencoded::Serializer::new(String::new());
            for name in &route.query_params {
                if let Some(value) = query_value(query, name) {
                    canonical_query.append_pair(name, &value);
                }
            }
            return Ok(Matched {
                index,
                route,
                hasher: &self.hasher,
                path: route.path.render(&bound),
                bound,
                query: canonical_query.finish(),
                auth: route.auth,
            });
        }
        Err(RouteMiss::NoRoute)
    }

    /// Resolves a request path and query to a topic without token claims ([`Router::matched`]
    /// then [`Matched::target`]).
    ///
    /// # Errors
    /// [`RouteMiss`] saying why.
    pub fn resolve(&self, path: &str, query: Option<&str>) -> Result<TopicTarget, RouteMiss> {
        self.matched(path, query)?.target(None)
    }
}

/// Splits a request target such as `/events/clock?lang=en` into path and query, the shape
/// [`Router::resolve`] takes.
pub fn split_target(target: &str) -> (&str, Option<&str>) {
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

/// The first value of query parameter `name`, decoded (`application/x-www-form-urlencoded`).
pub fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
