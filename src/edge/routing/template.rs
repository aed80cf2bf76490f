//! Route templates: downstream path templates (`/events/{topic}`) with their canonical and
//! lenient matching, and upstream URL templates (`http://origin/sub/{topic}`), whose variables
//! come from the path or, as `{jwt.NAME}`, from the subscriber's verified token.

use http::Uri;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// What a claim value keeps unescaped in an upstream URL: RFC 3986 §2.3 unreserved characters
/// only, so a claim can neither add a path segment nor a query.
const CLAIM_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The prefix of upstream variables taken from the verified JWT's claims.
pub const CLAIM_PREFIX: &str = "jwt.";

/// Why a path or upstream template was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A path template must start with `/`.
    #[error("{0:?} must start with '/'")]
    NoLeadingSlash(String),
    /// A `{}` variable with an empty or malformed name.
    #[error("bad variable {0:?} (use {{letters_digits_}})")]
    BadVariable(String),
    /// A variable named twice in one path.
    #[error("variable {{{0}}} appears twice")]
    RepeatedVariable(String),
    /// A variable that is not a whole path segment.
    #[error("segment {0:?}: a variable must be a whole segment")]
    PartialSegment(String),
    /// An upstream URL that is not http or https.
    #[error("{0:?} must start with http:// or https://")]
    Scheme(String),
    /// A `{` without its `}`.
    #[error("unclosed '{{' in {0:?}")]
    Unclosed(String),
    /// An upstream variable the route's path does not bind.
    #[error("variable {{{0}}} is not in the route's path template")]
    UnknownVariable(String),
    /// The upstream URL does not parse.
    #[error("not a valid URL: {0}")]
    Url(String),
    /// The upstream URL has no host.
    #[error("URL has no host")]
    NoHost,
    /// A variable in the upstream URL's port or userinfo: a client would choose where the
    /// relay connects (RFC 3986 §3.2 authority).
    #[error(
        "a variable may stand only for the host of the upstream's authority (with the hosts it \
         may take listed in upstream_hosts), never its port or userinfo"
    )]
    AuthorityVariable,
}

/// A downstream path template such as `/events/{topic}`: literal segments and `{name}`
/// variables, each variable matching exactly one non-empty path segment.
#[derive(Debug, Clone)]
pub struct PathTemplate {
    template: String,
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
    /// A [`TemplateError`] when it does not start with `/`, has an empty or malformed `{}`
    /// variable, or names a variable twice.
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        let rest = template
            .strip_prefix('/')
            .ok_or_else(|| TemplateError::NoLeadingSlash(template.to_string()))?;
        let mut segments = Vec::new();
        for part in rest.split('/') {
            if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if !is_variable_name(name) {
                    return Err(TemplateError::BadVariable(part.to_string()));
                }
                if segments
                    .iter()
                    .any(|s| matches!(s, Segment::Variable(v) if v == name))
                {
                    return Err(TemplateError::RepeatedVariable(name.to_string()));
                }
                segments.push(Segment::Variable(name.to_string()));
            } else if part.contains(['{', '}']) {
                return Err(TemplateError::PartialSegment(part.to_string()));
            } else {
                segments.push(Segment::Literal(part.to_string()));
            }
        }
        Ok(Self {
            template: template.to_string(),
            segments,
        })
    }

    /// The template as written, e.g. `/events/{topic}`.
    pub fn as_str(&self) -> &str {
        &self.template
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
    /// popping one, literals compared without case; and the same once the whole path is
    /// percent-decoded and `\` read as `/` (so `%2F`, `%5C`, `%2E` and `\` can neither split
    /// nor join segments; RFC 3986 §2.4, §6.2.2). Such a path names an SSE route in another
    /// spelling, so it must not reach a passthrough origin, which might serve it without the
    /// route's authorization.
    pub fn matches_leniently(&self, path: &str) -> bool {
        let decoded = percent_decode_str(path)
            .decode_utf8_lossy()
            .replace('\\', "/");
        self.matches_segments(path) || self.matches_segments(&decoded)
    }

    /// [`Self::matches_leniently`] for one reading of `path`, split at `/`.
    fn matches_segments(&self, path: &str) -> bool {
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
    pub(super) fn render(&self, bound: &[(&str, String)]) -> String {
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

/// An upstream URL template such as `http://127.0.0.1:8081/sub/{topic}` or
/// `http://app/users/{jwt.sub}/events`.
#[derive(Debug, Clone)]
pub struct UpstreamTemplate {
    template: String,
    /// Names of the `{jwt.NAME}` claims it uses.
    claims: Vec<String>,
    /// `scheme://authority` when no variable is in it: every URL it renders starts so.
    origin: Option<String>,
    /// True when a variable stands for (part of) the host.
    host_varies: bool,
}

/// A `{jwt.NAME}` variable whose claim the token lacks, holds as neither a string nor a
/// number, or holds as an empty string, `.` or `..` (RFC 3986 §3.3 dot-segments).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the token has no usable {0:?} claim")]
pub struct MissingClaim(pub String);

impl UpstreamTemplate {
    /// Parses a template and checks it against the route's path template.
    ///
    /// # Errors
    /// A [`TemplateError`] when the scheme is not http/https, the URL is malformed, or a
    /// variable is not bound by `path`.
    pub fn parse(template: &str, path: &PathTemplate) -> Result<Self, TemplateError> {
        if !(template.starts_with("http://") || template.starts_with("https://")) {
            return Err(TemplateError::Scheme(template.to_string()));
        }
        let mut probe = template.to_string();
        let mut claims = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| TemplateError::Unclosed(template.to_string()))?;
            let name = &rest[open + 1..open + close];
            match name.strip_prefix(CLAIM_PREFIX) {
                Some(claim) if is_variable_name(claim) => claims.push(claim.to_string()),
                Some(_) => return Err(TemplateError::BadVariable(name.to_string())),
                None if !path.variables().any(|v| v == name) => {
                    return Err(TemplateError::UnknownVariable(name.to_string()));
                }
                None => {}
            }
            probe = probe.replace(&format!("{{{name}}}"), "x");
            rest = &rest[open + close + 1..];
        }
        let uri: Uri = probe
            .parse()
            .map_err(|e: http::uri::InvalidUri| TemplateError::Url(e.to_string()))?;
        if uri.host().is_none() {
            return Err(TemplateError::NoHost);
        }
        let scheme_end = template.find("://").map_or(0, |i| i + 3);
        let authority_end = template[scheme_end..]
            .find(['/', '?'])
            .map_or(template.len(), |i| scheme_end + i);
        let origin = (!template[..authority_end].contains('{'))
            .then(|| template[..authority_end].to_ascii_lowercase());
        Ok(Self {
            template: template.to_string(),
            claims,
            origin,
            host_varies: host_varies(&template[scheme_end..authority_end])?,
        })
    }

    /// True when a variable stands for (part of) the upstream's host: the route must then list
    /// the hosts it may take.
    pub fn host_varies(&self) -> bool {
        self.host_varies
    }

    /// True when `uri` could have been rendered from this template as far as its origin goes:
    /// the same scheme and authority, or, for a template with a variable in its authority
    /// (e.g. `https://{tenant}.api/…`), the same scheme.
    pub fn admits(&self, uri: &Uri) -> bool {
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return false;
        };
        let rendered = format!("{scheme}://{authority}").to_ascii_lowercase();
        match &self.origin {
            Some(origin) => *origin == rendered,
            None => self.template.starts_with(&format!("{scheme}://")),
        }
    }

    /// The `{jwt.NAME}` claims the template uses (empty: none).
    pub fn claims(&self) -> &[String] {
        &self.claims
    }

    /// The URL with `bound` path variables and the `claims` of the subscriber's verified token
    /// filled in (claim values percent-encoded but for unreserved characters).
    ///
    /// # Errors
    /// [`MissingClaim`] when a claim the template uses is absent, not a string or number, or
    /// empty, `.` or `..` (a dot-segment would move the URL's path, RFC 3986 §5.2.4).
    pub(super) fn render(
        &self,
        bound: &[(&str, String)],
        claims: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Result<String, MissingClaim> {
        let mut url = self.render_paths(bound);
        for name in &self.claims {
            let value = match claims.and_then(|c| c.get(name)) {
                Some(serde_json::Value::String(s)) if !matches!(s.as_str(), "" | "." | "..") => {
                    s.clone()
                }
                Some(serde_json::Value::Number(n)) => n.to_string(),
                _ => return Err(MissingClaim(name.clone())),
            };
            let escaped = utf8_percent_encode(&value, CLAIM_ESCAPE).to_string();
            url = url.replace(&format!("{{{CLAIM_PREFIX}{name}}}"), &escaped);
        }
        Ok(url)
    }
}

impl UpstreamTemplate {
    /// The template with `bound` path variables filled in and its `{jwt.NAME}` claims left as
    /// they are: what [`super::ClaimHasher::shown`] reads a rendered URL against.
    pub(super) fn render_paths(&self, bound: &[(&str, String)]) -> String {
        let mut url = self.template.clone();
        for (name, value) in bound {
            url = url.replace(&format!("{{{name}}}"), value);
        }
        url
    }
}

/// Whether a variable is in the host of `authority` (RFC 3986 §3.2: `[userinfo "@"] host
/// [":" port]`).
///
/// # Errors
/// [`TemplateError::AuthorityVariable`] for a variable in the userinfo or the port.
fn host_varies(authority: &str) -> Result<bool, TemplateError> {
    let (userinfo, host_port) = authority.rsplit_once('@').unwrap_or(("", authority));
    let host_end = if host_port.starts_with('[') {
        host_port.find(']').map_or(host_port.len(), |i| i + 1)
    } else {
        host_port.find(':').unwrap_or(host_port.len())
    };
    let (host, port) = host_port.split_at(host_end);
    if userinfo.contains('{') || port.contains('{') {
        return Err(TemplateError::AuthorityVariable);
    }
    Ok(host.contains('{'))
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
