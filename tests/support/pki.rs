//! A throw-away CA and one certificate it signs, written as PEM files, for tests that need
//! TLS between relays (a cluster's peer link, a relay as another relay's origin); the fan-out
//! benchmark's cluster mode includes this file too.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

/// The PEM files of a CA and of a certificate it signed.
pub struct Pki {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The signed certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// Writes a new CA and a certificate for the DNS `names` it signed into `dir`.
pub fn pki(dir: &Path, names: &[&str]) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let files = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("cert.key"),
    };
    std::fs::write(&files.ca, ca.pem()).unwrap();
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    files
}
