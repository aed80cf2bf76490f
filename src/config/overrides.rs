//! Environment overrides (`SSE_RELAY__SECTION__KEY`) and the wording of parse errors (with
//! line and column).
//!
//! It changes the raw TOML tree only; it never validates a value (the settings builder does).

use super::ConfigError;

/// Prefix of environment variables that override config keys.
pub const ENV_PREFIX: &str = "SSE_RELAY__";

pub(super) fn path_error(
    e: serde_path_to_error::Error<toml::de::Error>,
    text: &str,
    err: &impl Fn(String, String) -> ConfigError,
) -> ConfigError {
    let key = e.path().to_string();
    let key = if key == "." { "(file)".into() } else { key };
    err(key, with_position(e.inner(), text))
}

/// The error's message, with its line and column when it has a position.
pub(super) fn with_position(e: &toml::de::Error, text: &str) -> String {
    let mut reason = e.message().trim().replace('\n', " ");
    if let Some(span) = e.span() {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        reason.push_str(&format!(" (line {line}, column {column})"));
    }
    reason
}

/// Why an `SSE_RELAY__…` variable names no key that can be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum OverrideError {
    /// `__` at the start or end, or twice in a row.
    #[error("empty key part (use __ only between parts)")]
    EmptyPart,
    /// A list named without an index after it.
    #[error("{0} is a list: give an index after it")]
    NoIndex(String),
    /// A list element that is not a table.
    #[error("{0}[{1}] is not a table")]
    NotATableElement(String, usize),
    /// An index more than one past the end.
    #[error("{0} has {1} entries")]
    OutOfRange(String, usize),
    /// A part under a value that is not a table.
    #[error("{0} is not a table")]
    NotATable(String),
}

/// Sets the key named by an `SSE_RELAY__A__B` variable in `table`.
pub(super) fn apply_override(
    table: &mut toml::Table,
    name: &str,
    raw: &str,
) -> Result<(), OverrideError> {
    let parts: Vec<String> = name[ENV_PREFIX.len()..]
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    if parts.iter().any(String::is_empty) {
        return Err(OverrideError::EmptyPart);
    }
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let (last, parents) = parts.split_last().expect("at least one part");
    let mut node = table;
    let mut iter = parents.iter().peekable();
    while let Some(part) = iter.next() {
        let next_is_index = iter.peek().is_some_and(|p| p.parse::<usize>().is_ok());
        let slot = node
            .entry(part.clone())
            .or_insert_with(|| empty_container(next_is_index));
        node = match slot {
            toml::Value::Table(t) => t,
            toml::Value::Array(items) => {
                let index: usize = iter
                    .next()
                    .and_then(|i| i.parse().ok())
                    .ok_or_else(|| OverrideError::NoIndex(part.clone()))?;
                let len = items.len();
                if index == len {
                    items.push(toml::Value::Table(toml::Table::new()));
                }
                match items.get_mut(index) {
                    Some(toml::Value::Table(t)) => t,
                    Some(_) => return Err(OverrideError::NotATableElement(part.clone(), index)),
                    None => return Err(OverrideError::OutOfRange(part.clone(), len)),
                }
            }
            _ => return Err(OverrideError::NotATable(part.clone())),
        };
    }
    node.insert(last.clone(), value);
    Ok(())
}

fn empty_container(array: bool) -> toml::Value {
    if array {
        toml::Value::Array(Vec::new())
    } else {
        toml::Value::Table(toml::Table::new())
    }
}
