//! CORS (Fetch standard, "CORS protocol"): which other origins' pages may open event streams,
//! the response headers for allowed origins, and preflight answers.
//!
//! This module owns header decisions only; a disallowed origin simply gets no CORS headers, and
//! the browser then withholds the response from the page.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue};

/// The CORS policy.
#[derive(Debug, Clone)]
pub struct Cors {
    allowed: Vec<String>,
    any: bool,
    credentials: bool,
}

impl Cors {
    /// A policy allowing the `allowed` origins (`"*"`: any), with credentials when
    /// `credentials` (never together with `"*"`: the config refuses that, Fetch standard).
    pub fn new(allowed: Vec<String>, credentials: bool) -> Self {
        Self {
            any: allowed.iter().any(|o| o == "*"),
            allowed,
            credentials,
        }
    }

    /// Adds `Access-Control-Allow-Origin` (and credentials, `Vary: Origin`) to `response` when
    /// the request's `Origin` is allowed. Returns whether it was.
    pub fn apply(&self, request: &HeaderMap, response: &mut HeaderMap) -> bool {
        let Some(origin) = request.get(ORIGIN) else {
            return false;
        };
        response.append(VARY, HeaderValue::from_static("origin"));
        let listed = origin
            .to_str()
            .is_ok_and(|o| self.allowed.iter().any(|a| a == o));
        if self.any && !self.credentials {
            response.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        } else if listed {
            response.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            if self.credentials {
                response.insert(
                    ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
            }
        } else {
            return false;
        }
        true
    }

    /// Headers of a preflight (`OPTIONS` with `Access-Control-Request-Method`) answer: allowed
    /// origins may `GET` with `Last-Event-ID` and `Cache-Control`.
    pub fn preflight(&self, request: &HeaderMap, response: &mut HeaderMap) {
        self.allow(request, response, "GET", "last-event-id, cache-control");
    }

    /// Headers of a preflight on a request stream's route or resume URL: allowed origins may
    /// `POST` (start), `GET` (resume) and `DELETE` (cancel) with the headers chat and MCP
    /// clients send.
    pub fn preflight_streams(&self, request: &HeaderMap, response: &mut HeaderMap) {
        let headers = "authorization, content-type, last-event-id, cache-control, \
                       mcp-session-id, mcp-protocol-version";
        self.allow(request, response, "GET, POST, DELETE", headers);
    }

    /// A preflight's answer for an allowed origin: `methods` and `headers` (the Fetch standard's CORS
    /// protocol), cached for 600 s.
    fn allow(
        &self,
        request: &HeaderMap,
        response: &mut HeaderMap,
        methods: &'static str,
        headers: &'static str,
    ) {
        if self.apply(request, response) {
            let methods = HeaderValue::from_static(methods);
            response.insert(ACCESS_CONTROL_ALLOW_METHODS, methods);
            let headers = HeaderValue::from_static(headers);
            response.insert(ACCESS_CONTROL_ALLOW_HEADERS, headers);
            response.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(origin: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
        h
    }

    #[test]
    fn listed_origin_is_echoed_with_credentials() {
        let cors = Cors::new(vec!["https://app.example".into()], true);
        let mut out = HeaderMap::new();
        assert!(cors.apply(&request("https://app.example"), &mut out));
        assert_eq!(out[ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example");
        assert_eq!(out[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    }

    #[test]
    fn other_origin_gets_no_cors_headers() {
        let cors = Cors::new(vec!["https://app.example".into()], false);
        let mut out = HeaderMap::new();
        cors.preflight(&request("https://evil.example"), &mut out);
        assert!(out.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert!(out.get(ACCESS_CONTROL_ALLOW_METHODS).is_none());
    }
}
