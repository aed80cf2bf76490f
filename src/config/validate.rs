//! Validation of what serde cannot check: templates, files, ranges, combinations. Each
//! rejection names its key.

use std::path::Path;

use super::{AuthMode, Config};
use crate::routing::{PathTemplate, UpstreamTemplate};

impl Config {
    /// Checks values serde cannot: templates, files, ranges.
    ///
    /// # Errors
    /// `(key, reason)` for the first rejected value.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let s = &self.server;
        match (&s.tls_cert, &s.tls_key) {
            (Some(_), None) => return Err(key("server.tls_key", "required with tls_cert")),
            (None, Some(_)) => return Err(key("server.tls_cert", "required with tls_key")),
            _ => {}
        }
        file_exists("server.tls_cert", s.tls_cert.as_deref())?;
        file_exists("server.tls_key", s.tls_key.as_deref())?;
        file_exists(
            "upstream.extra_ca_file",
            self.upstream.extra_ca_file.as_deref(),
        )?;
        if s.drain_timeout_ms <= s.drain_delay_ms + s.drain_window_ms {
            return Err(key(
                "server.drain_timeout_ms",
                "must exceed drain_delay_ms + drain_window_ms",
            ));
        }
        if let Some(url) = &self.passthrough.upstream {
            let uri: Result<http::Uri, _> = url.parse();
            let ok = uri.as_ref().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https"))
                    && u.host().is_some()
                    && u.path() == "/"
                    && u.query().is_none()
            });
            if !ok {
                return Err(key(
                    "passthrough.upstream",
                    "must be an origin like \"http://127.0.0.1:8080\" (no path or query)",
                ));
            }
        }
        positive(
            "passthrough.connect_timeout_ms",
            self.passthrough.connect_timeout_ms,
        )?;
        positive(
            "passthrough.response_timeout_ms",
            self.passthrough.response_timeout_ms,
        )?;
        if s.plaintext_listen == Some(s.listen) && s.listen.port() != 0 {
            return Err(key(
                "server.plaintext_listen",
                "same address as server.listen",
            ));
        }
        if self.routes.is_empty() {
            return Err(key("route", "at least one [[route]] is required"));
        }
        for (i, route) in self.routes.iter().enumerate() {
            let path =
                PathTemplate::parse(&route.path).map_err(|r| (format!("route[{i}].path"), r))?;
            UpstreamTemplate::parse(&route.upstream, &path)
                .map_err(|r| (format!("route[{i}].upstream"), r))?;
            let fixed_query = route.upstream.split_once('?').map_or("", |(_, q)| q);
            for name in &route.query_params {
                let clash = form_urlencoded::parse(fixed_query.as_bytes()).any(|(k, _)| k == *name);
                if clash {
                    return Err((
                        format!("route[{i}].query_params"),
                        format!("{name:?} is already fixed in route[{i}].upstream's query"),
                    ));
                }
            }
            if let Some(j) = self.routes[..i].iter().position(|r| r.path == route.path) {
                return Err((
                    format!("route[{i}].path"),
                    format!("duplicates route[{j}].path"),
                ));
            }
        }
        self.validate_auth()?;
        let router = crate::routing::Router::new(&self.routes).map_err(|r| key("route", &r))?;
        for (i, entry) in self.topics.always_on.iter().enumerate() {
            let (path, query) = crate::routing::split_target(entry);
            if router.resolve(path, query).is_err() {
                return Err((
                    format!("topics.always_on[{i}]"),
                    format!("{entry:?} matches no [[route]] (give a request path, e.g. \"/events/clock\")"),
                ));
            }
        }
        let u = &self.upstream;
        positive("upstream.connect_timeout_ms", u.connect_timeout_ms)?;
        positive("upstream.backoff_min_ms", u.backoff_min_ms)?;
        if u.backoff_max_ms < u.backoff_min_ms {
            return Err(key("upstream.backoff_max_ms", "must be >= backoff_min_ms"));
        }
        positive("replay.max_events", self.replay.max_events as u64)?;
        positive("replay.max_bytes", self.replay.max_bytes as u64)?;
        positive("replay.max_age_ms", self.replay.max_age_ms)?;
        positive(
            "downstream.heartbeat_interval_ms",
            self.downstream.heartbeat_interval_ms,
        )?;
        let l = &self.limits;
        positive("limits.max_connections", l.max_connections as u64)?;
        positive(
            "limits.max_streams_per_connection",
            u64::from(l.max_streams_per_connection),
        )?;
        positive(
            "limits.tls_handshake_timeout_ms",
            l.tls_handshake_timeout_ms,
        )?;
        if l.max_event_bytes < 16 {
            return Err(key("limits.max_event_bytes", "must be at least 16"));
        }
        positive(
            "server.h2.max_header_list_size",
            u64::from(s.h2.max_header_list_size),
        )?;
        if s.h2.max_send_buf_size < 1024 {
            return Err(key("server.h2.max_send_buf_size", "must be at least 1024"));
        }
        for (i, origin) in self.cors.allowed_origins.iter().enumerate() {
            if origin == "*" {
                if self.cors.allow_credentials {
                    return Err(key(
                        "cors.allow_credentials",
                        "not allowed with allowed_origins = [\"*\"] (Fetch standard)",
                    ));
                }
            } else if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.trim_end_matches('/') != origin
            {
                return Err((
                    format!("cors.allowed_origins[{i}]"),
                    format!("{origin:?} is not an origin like \"https://app.example\""),
                ));
            }
        }
        Ok(())
    }
}

impl Config {
    fn validate_auth(&self) -> Result<(), (String, String)> {
        for (i, route) in self.routes.iter().enumerate() {
            let missing = match route.auth {
                AuthMode::Jwt if self.auth.jwt.is_none() => Some("[auth.jwt]"),
                AuthMode::Forward if self.auth.forward.is_none() => Some("[auth.forward]"),
                _ => None,
            };
            if let Some(section) = missing {
                return Err((
                    format!("route[{i}].auth"),
                    format!("needs a {section} section"),
                ));
            }
        }
        if let Some(jwt) = &self.auth.jwt {
            crate::auth::jwt_validation(jwt).map_err(|(k, r)| (format!("auth.jwt.{k}"), r))?;
        }
        if let Some(forward) = &self.auth.forward {
            let ok = forward.url.parse::<http::Uri>().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
            });
            if !ok {
                return Err(key("auth.forward.url", "must be an http(s) URL"));
            }
            positive("auth.forward.timeout_ms", forward.timeout_ms)?;
            if (1..1000).contains(&forward.reauthorize_after_ms) {
                return Err(key(
                    "auth.forward.reauthorize_after_ms",
                    "must be 0 (off) or at least 1000: every stream reconnects this often",
                ));
            }
        }
        Ok(())
    }
}

fn key(key: &str, reason: &str) -> (String, String) {
    (key.to_string(), reason.to_string())
}

fn positive(name: &str, value: u64) -> Result<(), (String, String)> {
    if value == 0 {
        return Err(key(name, "must be greater than 0"));
    }
    Ok(())
}

fn file_exists(name: &str, path: Option<&Path>) -> Result<(), (String, String)> {
    match path {
        Some(p) if !p.is_file() => Err((
            name.to_string(),
            format!("file {} does not exist or is not a file", p.display()),
        )),
        _ => Ok(()),
    }
}
