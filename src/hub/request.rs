//! What makes a topic a request stream rather than a shared subscription: the topic's upstream
//! is one answer to one request (a POST the client sent), so it is never asked for again; who
//! may follow it is fixed when it starts (its scope); it outlives its viewers until the answer
//! ends (detach) or is cancelled when the last one leaves; and once the answer ends it stays
//! resumable for a while (its retention), then goes.
//!
//! This module only describes that life; the registry, the topic and its supervisor keep it. It
//! knows nothing of HTTP, identities or sessions: a scope is an opaque string the edge builds.

use std::time::Duration;

/// The life of a request stream's topic (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLife {
    /// Who may follow it: a resume names the same scope or finds nothing (the edge builds it
    /// from the starter's identity and session; empty: anyone who knows the key).
    pub scope: String,
    /// How long the finished answer stays resumable after the origin ended it.
    pub retain: Duration,
    /// True: the topic reads the origin to its end with or without viewers
    /// (`on_disconnect = "detach"`); false: it is cancelled (the origin request dropped) once
    /// no viewer has been attached for the hub's idle grace (`on_disconnect = "cancel"`).
    pub detach: bool,
    /// True when an authenticated identity started it: its events are that user's, as a
    /// per-user topic's are (the status page does not show them unless
    /// `admin.tail_private`).
    pub personal: bool,
}

/// Why [`super::Hub::resume`] gives no subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResumeMiss {
    /// No request stream has this key (never was, cancelled, or past its retention), or it
    /// belongs to another scope: the two are not told apart, so a stream's existence is not
    /// revealed to someone who may not follow it.
    #[error("no such stream")]
    Unknown,
    /// The stream ended and the resume asks for nothing after its last event: there is
    /// nothing more to send (the edge answers 204, so EventSource stops, WHATWG HTML §9.2.3).
    #[error("the stream ended and nothing is left to send")]
    Spent,
}
