//! The peer link's security: mutual TLS against the cluster's own CA (`cluster.ca_file`), each
//! side presenting its peer certificate, and a bearer token (`cluster.token_file`) on every
//! request. Peers are dialled by address (pod IPs change), so the server certificate is checked
//! against the name every peer certificate carries (`cluster.peer_name`) instead.
//!
//! This module builds the link's TLS settings and token only; it never sends a request.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use subtle::ConstantTimeEq;

use crate::server::tls::{self, TlsError};

/// The peer listener's and the peer client's TLS configs, from the cluster's PEM files.
///
/// # Errors
/// [`TlsError`] when a file is unreadable or empty, the key does not match the certificate,
/// or `peer_name` is not a DNS name.
pub fn configs(
    ca: &Path,
    cert: &Path,
    key: &Path,
    peer_name: &str,
) -> Result<(ServerConfig, ClientConfig), TlsError> {
    let mut roots = RootCertStore::empty();
    for ca_cert in tls::read_certs(ca)? {
        roots.add(ca_cert)?;
    }
    let roots = Arc::new(roots);
    let chain = tls::read_certs(cert)?;
    let provider = tls::provider();
    let versions = [&rustls::version::TLS13];
    let clients = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)?
        .with_client_cert_verifier(clients)
        .with_single_cert(chain.clone(), tls::read_key(key)?)?;
    server.alpn_protocols = vec![b"h2".to_vec()];
    let inner = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let name = ServerName::try_from(peer_name.to_string()).map_err(|_| TlsError::File {
        path: cert.to_owned(),
        reason: format!("cluster.peer_name {peer_name:?} is not a DNS name"),
    })?;
    let verifier = Arc::new(PeerNameVerifier { inner, name });
    // No ALPN here: the HTTP client offers h2 itself, and the peer listener accepts only h2.
    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(chain, tls::read_key(key)?)?;
    Ok((server, client))
}

/// Verifies a peer's certificate chain against the cluster CA with rustls' own WebPKI
/// verifier, for `cluster.peer_name` instead of the address dialled.
struct PeerNameVerifier {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl fmt::Debug for PeerNameVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerNameVerifier")
            .field("name", &self.name)
            .finish()
    }
}

impl ServerCertVerifier for PeerNameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _dialled: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The bearer token peers present, compared in constant time.
#[derive(Clone)]
pub struct PeerToken {
    header: Arc<http::HeaderValue>,
}

impl PeerToken {
    /// Reads the token from `path` (surrounding whitespace trimmed).
    ///
    /// # Errors
    /// [`TlsError::File`] when unreadable, empty or not a valid header value.
    pub fn read(path: &Path) -> Result<Self, TlsError> {
        let file_err = |reason: String| TlsError::File {
            path: path.to_owned(),
            reason,
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| file_err(format!("cannot read: {e}")))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(file_err("empty".into()));
        }
        let header = http::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| file_err("not a valid header value".into()))?;
        Ok(Self {
            header: Arc::new(header),
        })
    }

    /// The `Authorization` value peer requests carry.
    pub fn header(&self) -> &http::HeaderValue {
        &self.header
    }

    /// True when `presented` (a request's `Authorization`) is this token.
    pub fn accepts(&self, presented: Option<&http::HeaderValue>) -> bool {
        presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(self.header.as_bytes())))
    }
}
