//! Credentials toward the origin: a route's `[route.upstream_headers]`, each a literal value or
//! the whole contents of a file (a mounted Kubernetes Secret), sent on every upstream request of
//! that route's topics. A file is re-read when it changes (its size, modification time or inode,
//! following symlinks, so the atomic `..data` swap of a rotated Secret is seen) and the new
//! value takes effect on the next upstream connect.
//!
//! This module owns those headers only; client headers never reach the shared upstream.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use http::{HeaderMap, HeaderName, HeaderValue};

/// Header names a route may not set: the relay sets them itself on every upstream request, or
/// they describe the connection rather than the request (RFC 9110 §7.6.1).
pub const RESERVED: [&str; 10] = [
    "accept",
    "cache-control",
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "last-event-id",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// Why a header of `[route.upstream_headers]` cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    /// Not a valid HTTP field name (RFC 9110 §5.1).
    #[error("{0:?} is not a valid header name")]
    Name(String),
    /// A name the relay sets itself (see [`RESERVED`]).
    #[error("{0:?} is set by the relay itself")]
    Reserved(String),
    /// The value (or the file's trimmed contents) is not a valid field value: control bytes or
    /// non-visible characters (RFC 9110 §5.5).
    #[error("the value is not a valid header value (control bytes or line breaks)")]
    Value,
    /// The file cannot be read.
    #[error("{path}: cannot read: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
}

/// Where a header's value comes from.
enum Source {
    Literal(HeaderValue),
    File {
        path: PathBuf,
        /// The value last read, and the file's identity when it was read.
        current: Mutex<(HeaderValue, Stamp)>,
    },
}

/// What identifies a file's version without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// A route's headers toward its origin.
#[derive(Default)]
pub struct UpstreamHeaders {
    headers: Vec<(HeaderName, Source)>,
}

/// Equal when configured alike: the same names with the same literals or files (not what the
/// files hold now).
impl PartialEq for UpstreamHeaders {
    fn eq(&self, other: &Self) -> bool {
        let same = |(a, x): &(HeaderName, Source), (b, y): &(HeaderName, Source)| {
            a == b
                && match (x, y) {
                    (Source::Literal(x), Source::Literal(y)) => x == y,
                    (Source::File { path: x, .. }, Source::File { path: y, .. }) => x == y,
                    _ => false,
                }
        };
        self.headers.len() == other.headers.len()
            && self
                .headers
                .iter()
                .zip(&other.headers)
                .all(|(a, b)| same(a, b))
    }
}

impl Eq for UpstreamHeaders {}

impl std::fmt::Debug for UpstreamHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: values are secrets.
        f.debug_list()
            .entries(self.headers.iter().map(|(name, _)| name))
            .finish()
    }
}

/// A header value that could not be refreshed from its file: the previous value was sent.
#[derive(Debug)]
pub struct StaleCredential {
    /// The header.
    pub name: HeaderName,
    /// Why the file could not be used.
    pub error: CredentialError,
}

impl UpstreamHeaders {
    /// No headers.
    pub fn none() -> Self {
        Self::default()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    /// Adds a header with a literal value.
    ///
    /// # Errors
    /// [`CredentialError`] for an invalid or reserved name or an invalid value.
    pub fn literal(&mut self, name: &str, value: &str) -> Result<(), CredentialError> {
        let name = header_name(name)?;
        let value = HeaderValue::from_str(value).map_err(|_| CredentialError::Value)?;
        self.headers.push((name, Source::Literal(value)));
        Ok(())
    }

    /// Adds a header whose value is the file's contents, trimmed of surrounding whitespace
    /// (read now; re-read when the file changes).
    ///
    /// # Errors
    /// [`CredentialError`] for an invalid or reserved name, an unreadable file, or contents
    /// that are not a valid header value.
    pub fn file(&mut self, name: &str, path: &Path) -> Result<(), CredentialError> {
        let name = header_name(name)?;
        let (value, stamp) = read_value(path)?;
        let current = Mutex::new((value, stamp));
        let path = path.to_owned();
        self.headers.push((name, Source::File { path, current }));
        Ok(())
    }

    /// Writes the headers into `headers`, re-reading each file that changed since it was last
    /// read. A file that cannot be read or holds an invalid value keeps its previous value
    /// (a Secret being rotated may be briefly absent); each such header is returned so the
    /// caller can warn and count it.
    pub async fn apply(&self, headers: &mut HeaderMap) -> Vec<StaleCredential> {
        let mut stale = Vec::new();
        for (name, source) in &self.headers {
            let value = match source {
                Source::Literal(value) => value.clone(),
                Source::File { path, current } => {
                    if let Err(error) = refresh(path, current).await {
                        stale.push(StaleCredential {
                            name: name.clone(),
                            error,
                        });
                    }
                    lock(current).0.clone()
                }
            };
            headers.insert(name.clone(), mark_sensitive(value));
        }
        stale
    }
}

fn header_name(name: &str) -> Result<HeaderName, CredentialError> {
    let parsed =
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| CredentialError::Name(name.into()))?;
    if RESERVED.contains(&parsed.as_str()) {
        return Err(CredentialError::Reserved(name.into()));
    }
    Ok(parsed)
}

/// Sensitive values are never put in HPACK's dynamic table (RFC 7541 §7.1.3).
fn mark_sensitive(mut value: HeaderValue) -> HeaderValue {
    value.set_sensitive(true);
    value
}

/// Re-reads the file if its stamp changed.
async fn refresh(
    path: &Path,
    current: &Mutex<(HeaderValue, Stamp)>,
) -> Result<(), CredentialError> {
    let metadata = tokio::fs::metadata(path)
        .await
        .map_err(|e| file_error(path, &e))?;
    if lock(current).1 == stamp(&metadata) {
        return Ok(());
    }
    let owned = path.to_owned();
    let read = tokio::task::spawn_blocking(move || read_value(&owned))
        .await
        .map_err(|e| CredentialError::File {
            path: path.to_owned(),
            reason: e.to_string(),
        })??;
    *lock(current) = read;
    Ok(())
}

fn read_value(path: &Path) -> Result<(HeaderValue, Stamp), CredentialError> {
    let metadata = std::fs::metadata(path).map_err(|e| file_error(path, &e))?;
    let contents = std::fs::read(path).map_err(|e| file_error(path, &e))?;
    let value =
        HeaderValue::from_bytes(contents.trim_ascii()).map_err(|_| CredentialError::Value)?;
    Ok((value, stamp(&metadata)))
}

fn stamp(metadata: &std::fs::Metadata) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    Stamp {
        modified: metadata.modified().ok(),
        len: metadata.len(),
        inode: metadata.ino(),
    }
}

fn file_error(path: &Path, e: &std::io::Error) -> CredentialError {
    CredentialError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_value_is_trimmed_and_re_read_when_it_changes() {
        let dir = std::env::temp_dir().join(format!("sse-relay-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "  Bearer one\n").unwrap();
        let mut headers = UpstreamHeaders::none();
        headers.file("Authorization", &path).unwrap();
        headers.literal("X-Api-Key", "k-123").unwrap();
        let mut sent = HeaderMap::new();
        assert!(headers.apply(&mut sent).await.is_empty());
        assert_eq!(sent["authorization"], "Bearer one");
        assert_eq!(sent["x-api-key"], "k-123");
        assert!(sent["authorization"].is_sensitive());
        // A rotated Secret: a new file renamed over the old one.
        let next = dir.join("token.next");
        std::fs::write(&next, "Bearer two-longer\n").unwrap();
        std::fs::rename(&next, &path).unwrap();
        headers.apply(&mut sent).await;
        assert_eq!(sent["authorization"], "Bearer two-longer");
        // Briefly gone: the previous value is kept and reported.
        std::fs::remove_file(&path).unwrap();
        let stale = headers.apply(&mut sent).await;
        assert_eq!(stale.len(), 1);
        assert_eq!(sent["authorization"], "Bearer two-longer");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_and_values_are_checked() {
        let mut headers = UpstreamHeaders::none();
        assert_eq!(
            headers.literal("Bad Name", "x"),
            Err(CredentialError::Name("Bad Name".into()))
        );
        assert_eq!(
            headers.literal("Host", "x"),
            Err(CredentialError::Reserved("Host".into()))
        );
        assert_eq!(
            headers.literal("X-Key", "a\nb"),
            Err(CredentialError::Value)
        );
        assert!(matches!(
            headers.file("X-Key", Path::new("/nonexistent/secret")),
            Err(CredentialError::File { .. })
        ));
    }
}
