//! TLS: the rustls server configuration (ring provider, TLS 1.2 and 1.3 only, ALPN `h2` then
//! `http/1.1`), certificate loading and hot reload, the generated development certificate, and
//! the client configuration used for https origins (system roots plus an optional extra CA, and
//! an optional client certificate for mutual TLS).
//!
//! This module owns certificates and rustls settings; it never accepts connections.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// A TLS setup error, naming the file involved.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls rejected the certificate/key pair or the settings.
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    /// The development certificate could not be generated.
    #[error("cannot generate the dev certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// ALPN protocol ids offered to clients, in preference order (RFC 7301; "h2" per RFC 9113 §3.2).
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The crypto provider every TLS config of the relay uses (ring).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server's certificate, swappable at run time: new handshakes use the newest valid pair,
/// live connections keep theirs. Implements rustls' [`ResolvesServerCert`].
#[derive(Debug)]
pub struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
    files: Option<(PathBuf, PathBuf)>,
    /// The file contents last looked at (valid or not), so a change is handled once.
    seen: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl CertStore {
    /// Loads a PEM certificate chain and private key, to be watched with
    /// [`CertStore::reload_if_changed`].
    ///
    /// # Errors
    /// [`TlsError::File`] for unreadable or empty files, [`TlsError::Rustls`] when the key does
    /// not match the certificate.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let (cert_pem, key_pem) = (read(cert)?, read(key)?);
        let certified = certified_key(&cert_pem, cert, &key_pem, key)?;
        Ok(Self {
            current: RwLock::new(Arc::new(certified)),
            files: Some((cert.to_owned(), key.to_owned())),
            seen: Mutex::new((cert_pem, key_pem)),
        })
    }

    /// A store serving `certified` for good: no files behind it, so nothing to reload (the
    /// generated dev certificate).
    fn without_files(certified: CertifiedKey) -> Self {
        Self {
            current: RwLock::new(Arc::new(certified)),
            files: None,
            seen: Mutex::new((Vec::new(), Vec::new())),
        }
    }

    /// Re-reads the certificate and key files (following symlinks, so Kubernetes' atomic
    /// `..data` swap of a mounted Secret is seen) and, when they changed and form a valid pair,
    /// makes them current. Returns `Ok(true)` after a swap, `Ok(false)` when nothing changed.
    ///
    /// # Errors
    /// The reason a changed pair was rejected (once per change); the old certificate stays.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let Some((cert, key)) = &self.files else {
            return Ok(false);
        };
        let (cert_pem, key_pem) = (read(cert)?, read(key)?);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.0 == cert_pem && seen.1 == key_pem {
                return Ok(false);
            }
            *seen = (cert_pem.clone(), key_pem.clone());
        }
        let certified = certified_key(&cert_pem, cert, &key_pem, key)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(certified);
        Ok(true)
    }

    /// The certificate chain served to new handshakes.
    pub fn current_chain(&self) -> Vec<CertificateDer<'static>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .cert
            .clone()
    }

    /// The rustls server configuration serving this store's certificate (TLS 1.3 and 1.2,
    /// ALPN `h2` then `http/1.1`).
    ///
    /// # Errors
    /// [`TlsError::Rustls`] if the provider rejects the protocol versions.
    pub fn server_config(self: &Arc<Self>) -> Result<ServerConfig, TlsError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// Polls the certificate files every `every` and swaps in a changed, valid pair (see
/// [`CertStore::reload_if_changed`]); an invalid pair is logged and counted, the old one stays.
/// Runs until dropped.
pub async fn watch_certificate(
    store: Arc<CertStore>,
    every: std::time::Duration,
    metrics: Arc<super::ServerMetrics>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match store.reload_if_changed() {
            Ok(true) => {
                metrics.cert_reloads.inc(super::Reload::Ok);
                tracing::info!("TLS certificate reloaded");
            }
            Ok(false) => {}
            Err(e) => {
                metrics.cert_reloads.inc(super::Reload::Rejected);
                tracing::warn!(error = %e, "new TLS certificate rejected; keeping the current one");
            }
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File {
        path: path.to_owned(),
        reason: format!("cannot read: {e}"),
    })
}

fn certified_key(
    cert_pem: &[u8],
    cert: &Path,
    key_pem: &[u8],
    key: &Path,
) -> Result<CertifiedKey, TlsError> {
    let chain = parse_certs(cert_pem, cert)?;
    let key = parse_key(key_pem, key)?;
    Ok(CertifiedKey::from_der(chain, key, &provider())?)
}

/// A generated self-signed certificate for `localhost`, `127.0.0.1` and `::1`.
pub struct DevCertificate {
    /// Where the certificate (PEM) was written, for `curl --cacert`.
    pub cert_path: PathBuf,
    /// The certificate store serving it.
    pub store: Arc<CertStore>,
    /// The server configuration using it.
    pub config: ServerConfig,
}

/// Generates a self-signed development certificate, writes its PEM to `dir/cert.pem`, and builds
/// the server configuration with it. For development only: clients must be told to trust it.
///
/// # Errors
/// [`TlsError::Generate`] or [`TlsError::File`] if the directory cannot be written.
pub fn dev_certificate(dir: &Path) -> Result<DevCertificate, TlsError> {
    let names = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    let certified = rcgen::generate_simple_self_signed(names)?;
    let cert_path = dir.join("cert.pem");
    let write_err = |e: std::io::Error| TlsError::File {
        path: cert_path.clone(),
        reason: format!("cannot write: {e}"),
    };
    private_dir(dir).map_err(write_err)?;
    // Written beside and renamed into place: a symlink planted at `cert.pem` is replaced, never
    // followed.
    let staging = dir.join(format!(".cert.pem.{}", std::process::id()));
    let _ = std::fs::remove_file(&staging);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&staging)
        .map_err(write_err)?;
    std::io::Write::write_all(&mut file, certified.cert.pem().as_bytes()).map_err(write_err)?;
    std::fs::rename(&staging, &cert_path).map_err(write_err)?;
    let key = PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
    let chain = vec![certified.cert.der().clone()];
    let store = Arc::new(CertStore::without_files(CertifiedKey::from_der(
        chain,
        key,
        &provider(),
    )?));
    let config = store.server_config()?;
    Ok(DevCertificate {
        cert_path,
        store,
        config,
    })
}

/// Makes sure `dir` is a directory of this process's user that is not a symlink, creating it
/// (mode 0700) if missing: the shared temp dir must not let another user choose or swap the
/// certificate that the printed `curl --cacert` commands trust.
///
/// # Errors
/// An I/O error saying why `dir` cannot be used.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let refuse = |why: &str| Err(std::io::Error::other(format!("{}: {why}", dir.display())));
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => refuse("is a symlink"),
        Ok(m) if !m.is_dir() => refuse("is not a directory"),
        Ok(m) => {
            // The owner of /proc/self is this process's effective user.
            let me = std::fs::metadata("/proc/self")?.uid();
            if m.uid() != me {
                return refuse("is owned by another user");
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir),
        Err(e) => Err(e),
    }
}

/// A client certificate chain and its key, presented to servers that ask (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Builds the client configuration for https origins: the system's root certificates plus those
/// in `extra_ca` (PEM), presenting `identity` when the server asks for a client certificate
/// (RFC 8446 §4.3.2). ALPN is left to the connector.
///
/// # Errors
/// [`TlsError::File`] if a file cannot be read or holds nothing usable; [`TlsError::Rustls`]
/// when the identity's key does not suit its certificate.
pub fn client_config(
    extra_ca: Option<&Path>,
    identity: Option<&ClientIdentity>,
) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A malformed system root is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if let Some(path) = extra_ca {
        for cert in read_certs(path)? {
            roots.add(cert)?;
        }
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots);
    Ok(match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            let chain = read_certs(&identity.cert)?;
            let key = parse_key(&read(&identity.key)?, &identity.key)?;
            builder.with_client_auth_cert(chain, key)?
        }
    })
}

/// Reads every certificate of a PEM file.
///
/// # Errors
/// [`TlsError::File`] when unreadable, malformed or empty.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    parse_certs(&read(path)?, path)
}

/// Reads the private key of a PEM file.
///
/// # Errors
/// [`TlsError::File`] when unreadable or holding no private key.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    parse_key(&read(path)?, path)
}

fn parse_certs(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_err = |reason: String| TlsError::File {
        path: path.to_owned(),
        reason,
    };
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_err("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

fn parse_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let file_err = |reason: String| TlsError::File {
        path: path.to_owned(),
        reason,
    };
    rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| file_err(format!("bad PEM: {e}")))?
        .ok_or_else(|| file_err("no PRIVATE KEY block found".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh, empty temporary directory for the test `name`.
    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sse-relay-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn dev_cert_dir_is_created_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch_dir("new").join("dev");
        let dev = dev_certificate(&dir).unwrap();
        assert!(dev.cert_path.exists());
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_symlinked_dev_cert_dir_is_refused() {
        let base = scratch_dir("link");
        std::fs::create_dir(base.join("real")).unwrap();
        std::os::unix::fs::symlink(base.join("real"), base.join("dev")).unwrap();
        let err = dev_certificate(&base.join("dev")).err().expect("refused");
        assert!(err.to_string().contains("symlink"), "{err}");
    }

    #[test]
    fn a_symlink_planted_at_cert_pem_is_replaced_not_followed() {
        let base = scratch_dir("planted");
        let dir = base.join("dev");
        std::fs::create_dir(&dir).unwrap();
        let victim = base.join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("cert.pem")).unwrap();
        dev_certificate(&dir).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        let written = std::fs::read_to_string(dir.join("cert.pem")).unwrap();
        assert!(written.starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
