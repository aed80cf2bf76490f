//! TLS: the rustls server configuration (ring provider, TLS 1.2 and 1.3 only, ALPN `h2` then
//! `http/1.1`), certificate loading, the generated development certificate, and the client
//! configuration used for https origins (system roots plus an optional extra CA file).
//!
//! This module owns certificates and rustls settings; it never accepts connections.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
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

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the server configuration from a PEM certificate chain and private key.
///
/// # Errors
/// [`TlsError::File`] for unreadable or empty files, [`TlsError::Rustls`] if the key does not
/// match the certificate.
pub fn server_config_from_files(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let chain = read_certs(cert)?;
    let key = read_key(key)?;
    server_config(chain, key)
}

/// A generated self-signed certificate for `localhost`, `127.0.0.1` and `::1`.
pub struct DevCertificate {
    /// Where the certificate (PEM) was written, for `curl --cacert`.
    pub cert_path: PathBuf,
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
    std::fs::create_dir_all(dir).map_err(write_err)?;
    std::fs::write(&cert_path, certified.cert.pem()).map_err(write_err)?;
    let key = PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
    let config = server_config(vec![certified.cert.der().clone()], key)?;
    Ok(DevCertificate { cert_path, config })
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Builds the client configuration for https origins: the system's root certificates plus those
/// in `extra_ca` (PEM). ALPN is left to the connector.
///
/// # Errors
/// [`TlsError::File`] if `extra_ca` cannot be read or holds no certificate.
pub fn client_config(extra_ca: Option<&Path>) -> Result<ClientConfig, TlsError> {
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
    Ok(ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Reads every certificate of a PEM file.
///
/// # Errors
/// [`TlsError::File`] when unreadable, malformed or empty.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_err = |reason: String| TlsError::File {
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| file_err(format!("cannot read: {e}")))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_err("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let file_err = |reason: String| TlsError::File {
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| file_err(format!("cannot read: {e}")))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| file_err(format!("bad PEM: {e}")))?
        .ok_or_else(|| file_err("no PRIVATE KEY block found".into()))
}
