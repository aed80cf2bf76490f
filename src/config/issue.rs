//! A rejected configuration value ([`ConfigIssue`]: key and reason) and the small checks every
//! section's builder shares.
//!
//! It never reads the config itself: each builder calls these checks with the key it names.

use std::path::Path;
use std::time::Duration;

/// A rejected value: the dotted key (e.g. `route[0].upstream`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigIssue {
    /// The dotted key path.
    pub key: String,
    /// What is wrong with the value.
    pub reason: String,
}

impl ConfigIssue {
    /// An issue with `key`.
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Milliseconds to a `Duration`.
pub fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

/// Rejects 0 for `key`.
pub(super) fn positive(key: &str, value: u64) -> Result<(), ConfigIssue> {
    if value == 0 {
        return Err(ConfigIssue::new(key, "must be greater than 0"));
    }
    Ok(())
}

/// Rejects a path that is not an existing file for `key`.
pub(super) fn file_exists(key: &str, path: Option<&Path>) -> Result<(), ConfigIssue> {
    match path {
        Some(p) if !p.is_file() => Err(ConfigIssue::new(
            key,
            format!("file {} does not exist or is not a file", p.display()),
        )),
        _ => Ok(()),
    }
}
