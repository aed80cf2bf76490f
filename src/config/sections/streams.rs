//! The `[[stream_route]]` and `[streams]` tables: routes whose streams a request starts (an
//! LLM answer to a POST, MCP's Streamable HTTP), kept resumable (docs/request-streams.md),
//! every field documented with its unit and default. The raw model only: validated into
//! [`crate::edge::streams::StreamSettings`], never used raw.

use serde::Deserialize;

use crate::edge::auth::AuthMode;
pub use crate::edge::streams::{OnDisconnect, StreamProtocol};

/// `[[stream_route]]`: a path a POST starts a stream on, and where it is resumed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamRouteConfig {
    /// The path a POST starts a stream on, exact (no variables), e.g. `/v1/chat/completions`.
    pub path: String,
    /// The origin URL the POST goes to (http or https, no variables), e.g.
    /// `http://127.0.0.1:8000/v1/chat/completions`.
    pub upstream: String,
    /// The resume URL's path, with `{stream}` as one whole segment. A GET follows the stream
    /// (EventSource or fetch), a DELETE cancels it. Default `/streams/{stream}`.
    #[serde(default = "default_resume_path")]
    pub resume_path: String,
    /// `"plain"` (default) or `"mcp"`: MCP Streamable HTTP's own resume rules on `path`.
    #[serde(default)]
    pub protocol: StreamProtocol,
    /// `"detach"` (default: the relay reads the answer to its end, so a reload gets all of it)
    /// or `"cancel"` (the origin request is cancelled once no viewer has been attached for a
    /// heartbeat interval).
    #[serde(default)]
    pub on_disconnect: OnDisconnect,
    /// Who may start and follow streams: `"none"` (default; the unguessable id is the
    /// capability) or `"jwt"` (`[auth.jwt]`; a stream is bound to the token's `sub`).
    #[serde(default)]
    pub auth: AuthMode,
}

fn default_resume_path() -> String {
    "/streams/{stream}".to_string()
}

/// `[streams]`: how long and how much of the request streams the relay keeps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamsConfig {
    /// How long a finished stream stays resumable, ms. Default 300000 (5 min): a reload, a
    /// network change or a second device comes back well within it, and a finished answer
    /// costs only its bytes meanwhile.
    pub retain_ms: u64,
    /// One stream's replay, bytes; past it the oldest events leave (a resume from before them
    /// gets the gap signal). Default 16777216 (16 MiB): a long LLM answer is well under 1 MiB.
    pub max_stream_bytes: usize,
    /// Open and retained streams in the relay, count; past it new answers pass through unkept
    /// (still answered, not resumable). Default 10000, as `limits.max_topics`.
    pub max_streams: usize,
    /// All streams' buffers together, bytes; past it new answers pass through unkept. Default
    /// 1073741824 (1 GiB).
    pub max_bytes: usize,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        Self {
            retain_ms: 300_000,
            max_stream_bytes: 16 << 20,
            max_streams: 10_000,
            max_bytes: 1 << 30,
        }
    }
}
