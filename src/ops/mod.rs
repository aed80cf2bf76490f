//! Operations primitives that every component uses and that know no component: Prometheus
//! registration helpers and enum-labelled counter families ([`metrics`]), rate-limited warnings
//! ([`warn_limit`]), the count of file descriptors held against the process's limit
//! ([`descriptors`]) and the wording of an error with its causes for a log line
//! ([`error_chain`]).
//!
//! The admin endpoints that read the relay's state live in [`crate::admin`], above the
//! components, so that nothing here imports the hub.

pub mod descriptors;
pub mod metrics;
pub mod warn_limit;

pub use warn_limit::WarnLimit;

/// Which side of the relay a failure comes from, so a log line or a label says whose problem
/// it is: the origin's (or an authorization server's), the client's, or the relay's own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// An origin or an authorization server.
    Upstream,
    /// The client or its request.
    Downstream,
    /// The relay itself (draining, a cap, a budget).
    Internal,
}

impl metrics::Label for Side {
    const ALL: &'static [Self] = &[Self::Upstream, Self::Downstream, Self::Internal];

    fn label(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Downstream => "downstream",
            Self::Internal => "internal",
        }
    }
}

/// An error and its causes, outermost first, joined by `: ` (the socket error under hyper's
/// wrapper, for instance), for one log line.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_chain_names_every_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let outer = std::io::Error::other(Wrapped(io));
        assert_eq!(super::error_chain(&outer), "stream broke: reset by peer");
    }

    #[derive(Debug)]
    struct Wrapped(std::io::Error);
    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("stream broke")
        }
    }
    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
}
