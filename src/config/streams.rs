//! Building the request streams' settings from `[[stream_route]]` and `[streams]`: each
//! route's path, origin and resume URL checked, and the hub that keeps the streams. Each
//! rejection names its key.
//!
//! It builds and checks; it never serves a request or contacts an origin.

use std::time::Duration;

use super::issue::{ms, positive, ConfigIssue};
use super::Config;
use crate::edge::auth::AuthMode;
use crate::edge::passthrough::PassthroughSettings;
use crate::edge::routing::{PathTemplate, Router};
use crate::edge::streams::{StreamRoute, StreamSettings};
use crate::hub::{CatchUpSettings, HubSettings, RingLimits};

/// The request streams' settings and the settings of the hub that keeps them (`None`: no
/// `[[stream_route]]`). `router` holds the SSE routes, whose paths a stream route must not take.
///
/// # Errors
/// A [`ConfigIssue`] naming the key: a path that is not an exact path or is taken, an upstream
/// that is not an http(s) URL, a resume path without `{stream}` as a whole segment, `forward`
/// auth, or a `[streams]` bound of 0.
pub(super) fn settings(
    config: &Config,
    router: &Router,
) -> Result<Option<(StreamSettings, HubSettings)>, ConfigIssue> {
    if config.stream_routes.is_empty() {
        return Ok(None);
    }
    let s = &config.streams;
    positive("streams.max_stream_bytes", s.max_stream_bytes as u64)?;
    positive("streams.max_streams", s.max_streams as u64)?;
    positive("streams.max_bytes", s.max_bytes as u64)?;
    if s.max_stream_bytes < config.limits.max_event_bytes {
        return Err(ConfigIssue::new(
            "streams.max_stream_bytes",
            format!(
                "must be at least limits.max_event_bytes ({}): the largest event must fit a stream's replay",
                config.limits.max_event_bytes
            ),
        ));
    }
    let mut routes: Vec<StreamRoute> = Vec::with_capacity(config.stream_routes.len());
    for (i, raw) in config.stream_routes.iter().enumerate() {
        let issue = |field: &str, reason: String| {
            ConfigIssue::new(format!("stream_route[{i}].{field}"), reason)
        };
        let path = &raw.path;
        if !path.starts_with('/') || path.contains(['{', '}', '?', '#']) {
            return Err(issue(
                "path",
                "must be an exact path such as \"/v1/chat/completions\" (no variables or query)"
                    .into(),
            ));
        }
        if router.is_sse_path(path) {
            return Err(issue("path", "is an SSE [[route]]'s path".into()));
        }
        if routes.iter().any(|r| r.path == *path) {
            return Err(issue(
                "path",
                "another [[stream_route]] has this path".into(),
            ));
        }
        let uri = raw.upstream.parse::<http::Uri>().ok().filter(|u| {
            matches!(u.scheme_str(), Some("http" | "https"))
                && u.host().is_some()
                && !raw.upstream.contains(['{', '}'])
        });
        let Some(uri) = uri else {
            return Err(issue(
                "upstream",
                "must be an http or https URL without variables, e.g. \"http://127.0.0.1:8000/v1/chat/completions\"".into(),
            ));
        };
        let upstream_path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let parts = uri.into_parts();
        let (Some(scheme), Some(authority)) = (parts.scheme, parts.authority) else {
            return Err(issue("upstream", "needs a scheme and a host".into()));
        };
        let resume = PathTemplate::parse(&raw.resume_path)
            .map_err(|e| issue("resume_path", e.to_string()))?;
        if resume.variables().collect::<Vec<_>>() != ["stream"] {
            return Err(issue(
                "resume_path",
                "must hold the one variable {stream} as a whole segment, e.g. \"/streams/{stream}\"".into(),
            ));
        }
        if router.is_sse_path(&resume.as_str().replace("{stream}", "x")) {
            return Err(issue(
                "resume_path",
                "overlaps an SSE [[route]]'s path".into(),
            ));
        }
        if raw.auth == AuthMode::Forward {
            return Err(issue(
                "auth",
                "\"forward\" is not supported on [[stream_route]] (a stream is bound to the identity that started it, and forward auth names none); use \"jwt\" or \"none\"".into(),
            ));
        }
        routes.push(StreamRoute {
            path: path.clone(),
            origin: PassthroughSettings {
                scheme,
                authority,
                connect_timeout: ms(config.passthrough.connect_timeout_ms),
                response_timeout: ms(config.passthrough.response_timeout_ms),
            },
            upstream_path,
            resume,
            protocol: raw.protocol,
            on_disconnect: raw.on_disconnect,
            auth: raw.auth,
        });
    }
    let heartbeat = ms(config.downstream.heartbeat_interval_ms);
    let hub = HubSettings {
        ring: RingLimits {
            // A stream's ring is bounded by its bytes alone: an answer is kept whole, however
            // many events it has, until its retention ends.
            max_events: usize::MAX,
            max_bytes: s.max_stream_bytes,
            max_age: Duration::MAX,
        },
        // `on_disconnect = "cancel"`: the answer is given up once no viewer was attached for a
        // heartbeat interval (a reload comes back well within it).
        idle_grace: heartbeat,
        origin_closed_ttl: Duration::ZERO,
        origin_error_ttl: Duration::ZERO,
        heartbeat_interval: heartbeat,
        max_buffered_bytes: s.max_bytes,
        max_topics: s.max_streams,
        max_topics_per_client: s.max_streams,
        compression: super::compression::settings(config)?,
        catch_up: CatchUpSettings {
            enabled: false,
            timeout: Duration::ZERO,
            max_bytes: 0,
            max_per_topic: 0,
            max_total: 0,
        },
    };
    let streams = StreamSettings {
        routes,
        retain: ms(s.retain_ms),
        max_streams: s.max_streams,
        max_bytes: s.max_bytes,
    };
    Ok(Some((streams, hub)))
}
