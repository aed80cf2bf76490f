//! Routing: maps a request's path and query to an SSE topic subscription (topic key and
//! upstream URL), using the route templates from the config.
//!
//! This module owns template parsing and matching only; it does no I/O and knows nothing of
//! topics' state or of HTTP bodies.

use http::Uri;
use percent_encoding::percent_decode_str;

use crate::config::{AuthMode, RouteConfig};

/// A downstream path template such as `/events/{topic}`: literal segments and `{name}`
/// variables, each variable matching exactly one non-empty path segment.
#[derive(Debug, Clone)]
pub struct PathTemplate {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone)]
enum Segment {
    Literal(String),
    Variable(String),
}

impl PathTemplate {
    /// Parses a template.
    ///
    /// # Errors
    /// A reason when it does not start with `/`, has an empty or malformed `{}` variable, or
    /// names a variable twice.
    pub fn parse(template: &str) -> Result<Self, String> {
        let rest = template
            .strip_prefix('/')
            .ok_or_else(|| format!("{template:?} must start with '/'"))?;
        let mut segments = Vec::new();
        for part in rest.split('/') {
            if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if !is_variable_name(name) {
                    return Err(format!("bad variable {part:?} (use {{letters_digits_}})"));
                }
                if segments
                    .iter()
                    .any(|s| matches!(s, Segment::Variable(v) if v == name))
                {
                    return Err(format!("variable {{{name}}} appears twice"));
                }
                segments.push(Segment::Variable(name.to_string()));
            } else if part.contains(['{', '}']) {
                return Err(format!(
                    "segment {part:?}: a variable must be a whole segment"
                ));
            } else {
                segments.push(Segment::Literal(part.to_string()));
            }
        }
        Ok(Self { segments })
    }

    /// The variable names, in order.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Variable(v) => Some(v.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Matches a request path; returns `(name, value)` pairs with each value percent-decoded
    /// (its canonical form). A value must be a non-empty segment that decodes to RFC 3986
    /// unreserved characters (`A-Z a-z 0-9 - . _ ~`) other than `.` and `..`; literal segments
    /// compare exactly (paths are case-sensitive). So `%2e%2e`, `%2F`, `//`, `/./` and the like
    /// never match, and `%61` is the same topic as `a`.
    pub fn matches<'a>(&'a self, path: &str) -> Option<Vec<(&'a str, String)>> {
        let rest = path.strip_prefix('/')?;
        let mut parts = rest.split('/');
        let mut bound = Vec::new();
        for segment in &self.segments {
            let part = parts.next()?;
            match segment {
                Segment::Literal(l) if l == part => {}
                Segment::Literal(_) => return None,
                Segment::Variable(name) => {
                    let value = percent_decode_str(part).decode_utf8().ok()?;
                    if !is_topic_segment(&value) {
                        return None;
                    }
                    bound.push((name.as_str(), value.into_owned()));
                }
            }
        }
        parts.next().is_none().then_some(bound)
    }

    /// True when `path`, read the lenient way many origins and frameworks read paths, would
    /// match: each segment cut at `;`, percent-decoded, empty and `.` segments dropped, `..`
    /// popping one, literals compared without case. Such a path names an SSE route in another
    /// spelling, so it must not reach a passthrough origin, which might serve it without the
    /// route's authorization.
    pub fn matches_leniently(&self, path: &str) -> bool {
        let mut parts: Vec<String> = Vec::new();
        for raw in path.split('/') {
            let raw = raw.split(';').next().unwrap_or_default();
            let part = percent_decode_str(raw).decode_utf8_lossy();
            match &*part {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                _ => parts.push(part.into_owned()),
            }
        }
        parts.len() == self.segments.len()
            && self.segments.iter().zip(&parts).all(|(s, p)| match s {
                Segment::Literal(l) => l.eq_ignore_ascii_case(p),
                Segment::Variable(_) => true,
            })
    }

    /// The canonical path for bound values: the template with each variable replaced.
    fn render(&self, bound: &[(&str, String)]) -> String {
        let mut path = String::new();
        for segment in &self.segments {
            path.push('/');
            match segment {
                Segment::Literal(l) => path.push_str(l),
                Segment::Variable(name) => {
                    let value = bound.iter().find(|(n, _)| n == name).map(|(_, v)| v);
                    path.push_str(value.map_or("", String::as_str));
                }
            }
        }
        path
    }
}

/// An upstream URL template such as `http://127.0.0.1:8081/sub/{topic}`.
#[derive(Debug, Clone)]
pub struct UpstreamTemplate {
    template: String,
}

impl UpstreamTemplate {
    /// Parses a template and checks it against the route's path template.
    ///
    /// # Errors
    /// A reason when the scheme is not http/https, the URL is malformed, or a variable is not
    /// bound by `path`.
    pub fn parse(template: &str, path: &PathTemplate) -> Result<Self, String> {
        if !(template.starts_with("http://") || template.starts_with("https://")) {
            return Err(format!("{template:?} must start with http:// or https://"));
        }
        let mut probe = template.to_string();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' in {template:?}"))?;
            let name = &rest[open + 1..open + close];
            if !path.variables().any(|v| v == name) {
                return Err(format!(
                    "variable {{{name}}} is not in the route's path template"
                ));
            }
            probe = probe.replace(&format!("{{{name}}}"), "x");
            rest = &rest[open + close + 1..];
        }
        let uri: Uri = probe.parse().map_err(|e| format!("not a valid URL: {e}"))?;
        if uri.host().is_none() {
            return Err("URL has no host".into());
        }
        Ok(Self {
            template: template.to_string(),
        })
    }

    fn render(&self, bound: &[(&str, String)]) -> String {
        let mut url = self.template.clone();
        for (name, value) in bound {
            url = url.replace(&format!("{{{name}}}"), value);
        }
        url
    }
}

/// A request resolved to a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTarget {
    /// The topic key: route index, rendered upstream URL and the significant query parameters.
    /// Two requests share an upstream subscription exactly when their keys are equal.
    pub key: String,
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
}

/// The compiled route table.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<CompiledRoute>,
}

#[derive(Debug, Clone)]
struct CompiledRoute {
    path: PathTemplate,
    upstream: UpstreamTemplate,
    query_params: Vec<String>,
    auth: AuthMode,
}

/// Why a request did not resolve to a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMiss {
    /// No route's path matches.
    NoRoute,
    /// A route matched but the request's query could not be used in the upstream URL.
    BadQuery,
}

impl Router {
    /// Compiles the configured routes (already validated by [`crate::config::Config::validate`]).
    ///
    /// # Errors
    /// A reason if a template does not parse.
    pub fn new(routes: &[RouteConfig]) -> Result<Self, String> {
        let routes = routes
            .iter()
            .map(|r| {
                let path = PathTemplate::parse(&r.path)?;
                let upstream = UpstreamTemplate::parse(&r.upstream, &path)?;
                let mut query_params = r.query_params.clone();
                query_params.sort();
                query_params.dedup();
                Ok(CompiledRoute {
                    path,
                    upstream,
                    query_params,
                    auth: r.auth,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { routes })
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

    /// Resolves a request path and query to a topic, in canonical form (see
    /// [`PathTemplate::matches`]). Only the route's declared query parameters are kept (sorted
    /// by name, first value of each, decoded and re-encoded), so parameter order, duplicates,
    /// encodings and unknown parameters do not split a topic or dodge an access check.
    ///
    /// # Errors
    /// [`RouteMiss`] saying why.
    pub fn resolve(&self, path: &str, query: Option<&str>) -> Result<TopicTarget, RouteMiss> {
        for (index, route) in self.routes.iter().enumerate() {
            let Some(bound) = route.path.matches(path) else {
                continue;
            };
            let mut canonical_query = form_urlencoded::Serializer::new(String::new());
            for name in &route.query_params {
                if let Some(value) = query_value(query, name) {
                    canonical_query.append_pair(name, &value);
                }
            }
            let canonical_query = canonical_query.finish();
            let mut url = route.upstream.render(&bound);
            if !canonical_query.is_empty() {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str(&canonical_query);
            }
            let upstream: Uri = url.parse().map_err(|_| RouteMiss::BadQuery)?;
            return Ok(TopicTarget {
                key: format!("{index} {upstream}"),
                upstream,
                path: route.path.render(&bound),
                query: canonical_query,
                auth: route.auth,
            });
        }
        Err(RouteMiss::NoRoute)
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

fn is_variable_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_topic_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(query_params: &[&str]) -> Router {
        Router::new(&[RouteConfig {
            path: "/events/{topic}".into(),
            upstream: "http://127.0.0.1:8081/sub/{topic}".into(),
            query_params: query_params.iter().map(|s| s.to_string()).collect(),
            auth: AuthMode::None,
        }])
        .unwrap()
    }

    #[test]
    fn path_variable_renders_into_upstream() {
        let t = router(&[]).resolve("/events/clock", None).unwrap();
        assert_eq!(t.upstream, "http://127.0.0.1:8081/sub/clock");
    }

    #[test]
    fn traversal_and_encoded_segments_do_not_match() {
        let r = router(&[]);
        for path in [
            "/events/..",
            "/events/.",
            "/events/%2e%2e",
            "/events/%2E",
            "/events/a%2Fb",
            "/events/a%2fb",
            "/events/",
            "/events//a",
            "/events/a/",
            "/events/a/b",
            "/events/./a",
            "/events/a%00",
            "/events/a%zz",
            "/EVENTS/a",
            "//events/a",
        ] {
            assert_eq!(r.resolve(path, None), Err(RouteMiss::NoRoute), "{path}");
        }
    }

    #[test]
    fn other_spellings_of_sse_paths_are_shadowed_but_other_paths_are_not() {
        let r = router(&[]);
        for path in [
            "/events/a/",
            "/events//a",
            "//events/a",
            "/EVENTS/a",
            "/Events/a",
            "/events/a;x=1",
            "/events;x/a",
            "/events/./a",
            "/events/b/../a",
            "/%65vents/a",
            "/events/a%2f",
            "/events/%2e%2e%2fx",
        ] {
            assert!(r.shadows_sse_path(path), "{path}");
        }
        for path in [
            "/events/a",
            "/events",
            "/events/a/b",
            "/other/a",
            "/",
            "/eventsx/a",
        ] {
            assert!(!r.shadows_sse_path(path), "{path}");
        }
    }

    #[test]
    fn encoded_unreserved_characters_are_the_same_topic() {
        let r = router(&[]);
        let plain = r.resolve("/events/abc", None).unwrap();
        let encoded = r.resolve("/events/%61b%63", None).unwrap();
        assert_eq!(plain, encoded);
        assert_eq!(encoded.path, "/events/abc");
    }

    #[test]
    fn only_declared_query_params_split_topics_in_sorted_order() {
        let r = router(&["lang", "area"]);
        let a = r.resolve("/events/x", Some("lang=en&x=1&area=eu")).unwrap();
        let b = r.resolve("/events/x", Some("area=eu&lang=en")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.upstream, "http://127.0.0.1:8081/sub/x?area=eu&lang=en");
        let c = r.resolve("/events/x", Some("lang=de&area=eu")).unwrap();
        assert_ne!(a.key, c.key);
        let dup = r
            .resolve("/events/x", Some("lang=en&lang=de&area=%65u"))
            .unwrap();
        assert_eq!(dup, a, "first value wins; encodings are canonicalised");
        assert_eq!(a.query, "area=eu&lang=en");
    }

    #[test]
    fn unknown_variable_in_upstream_is_rejected() {
        let p = PathTemplate::parse("/e/{topic}").unwrap();
        assert!(UpstreamTemplate::parse("http://o/{room}", &p).is_err());
        assert!(UpstreamTemplate::parse("ftp://o/{topic}", &p).is_err());
    }
}
