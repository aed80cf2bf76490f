//! `[[stream_route]]` and `[streams]` as the edge uses them, validated (the config builds them,
//! docs/request-streams.md): how each route's origin speaks, what happens when the last viewer
//! leaves, and the bounds on all streams. Plain data; it decides nothing.

use std::time::Duration;

use crate::edge::auth::AuthMode;
use crate::edge::passthrough::PassthroughSettings;
use crate::edge::routing::PathTemplate;

/// How a stream route's origin speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamProtocol {
    /// Any event stream answering a POST (an OpenAI-compatible chat completion, a chat
    /// backend): resumed at its resume URL.
    #[default]
    Plain,
    /// MCP's Streamable HTTP transport: also resumed by a `GET` on the endpoint with
    /// `Mcp-Session-Id` and `Last-Event-ID`, scoped to that session.
    Mcp,
}

/// What happens to a stream when its last viewer goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDisconnect {
    /// The relay reads the origin's answer to its end anyway (bounded by the stream's and all
    /// streams' bytes), so a reload or a second device gets all of it.
    #[default]
    Detach,
    /// The origin request is cancelled once no viewer has been attached for a heartbeat
    /// interval (for origins where an unread answer costs money).
    Cancel,
}

/// One `[[stream_route]]`, validated.
#[derive(Debug, Clone)]
pub struct StreamRoute {
    /// The path a `POST` starts a stream on (exact).
    pub path: String,
    /// The origin (`scheme://authority`) and its deadlines.
    pub origin: PassthroughSettings,
    /// Path and query the request goes to on the origin.
    pub upstream_path: String,
    /// The resume URL's path template, with the one variable `{stream}`.
    pub resume: PathTemplate,
    /// How the origin speaks.
    pub protocol: StreamProtocol,
    /// What happens when the last viewer leaves.
    pub on_disconnect: OnDisconnect,
    /// Who may start and follow streams (`none` or `jwt`; a stream is bound to the JWT `sub`).
    pub auth: AuthMode,
}

/// `[[stream_route]]` and `[streams]`, validated.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// The routes.
    pub routes: Vec<StreamRoute>,
    /// How long a finished stream stays resumable.
    pub retain: Duration,
    /// Open and retained streams at once, count; past it new answers pass through unkept.
    pub max_streams: usize,
    /// Bytes of all streams' rings together; past it new answers pass through unkept.
    pub max_bytes: usize,
}
