//! `[admin]`'s token, validated: `admin.token_file` is read here, once, at start, so an
//! unreadable or empty file stops the relay before it binds anything (docs/security.md, "The
//! admin port").
//!
//! It reads that one file; it never logs or shows the token.

use super::issue::ConfigIssue;
use super::AdminConfig;
use crate::admin::AdminToken;

/// The admin token of `admin.token_file` (`None`: unset, the admin paths are open).
///
/// # Errors
/// A [`ConfigIssue`] for `admin.token_file` naming the file when it cannot be read, is not
/// UTF-8, or holds only whitespace.
pub(super) fn token(admin: &AdminConfig) -> Result<Option<AdminToken>, ConfigIssue> {
    let Some(path) = &admin.token_file else {
        return Ok(None);
    };
    let issue = |reason: String| ConfigIssue::new("admin.token_file", reason);
    let contents = std::fs::read_to_string(path)
        .map_err(|e| issue(format!("cannot read {}: {e}", path.display())))?;
    AdminToken::from_contents(&contents)
        .map(Some)
        .ok_or_else(|| issue(format!("{} is empty (a token is needed)", path.display())))
}
