//! Certificate hot reload: the certificate and key files are watched (through Kubernetes'
//! atomic `..data` symlink swap of a mounted Secret); new handshakes get the new certificate,
//! live connections are untouched, and an invalid new pair is rejected while the old one stays.

mod support;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use sse_relay::server::Reload;
use support::{eventually, TestOrigin, TestRelay};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

struct Pair {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

fn pair() -> Pair {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    Pair {
        cert_pem: c.cert.pem(),
        key_pem: c.key_pair.serialize_pem(),
        der: c.cert.der().clone(),
    }
}

/// Writes a Secret-like version directory and points `..data` at it atomically, as the
/// kubelet does.
fn publish(dir: &Path, version: &str, cert_pem: &str, key_pem: &str) {
    let v = dir.join(version);
    std::fs::create_dir_all(&v).unwrap();
    std::fs::write(v.join("tls.crt"), cert_pem).unwrap();
    std::fs::write(v.join("tls.key"), key_pem).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(version, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
}

/// The certificate the relay serves to a new TLS handshake.
async fn served(addr: std::net::SocketAddr, trusted: &[&Pair]) -> CertificateDer<'static> {
    let mut roots = rustls::RootCertStore::empty();
    for p in trusted {
        roots.add(p.der.clone()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("handshake");
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_secret_is_served_to_new_handshakes_and_a_bad_pair_is_rejected() {
    let dir = support::temp_dir("secret");
    let (a, b, c) = (pair(), pair(), pair());
    publish(&dir, "..v1", &a.cert_pem, &a.key_pem);
    symlink("..data/tls.crt", dir.join("tls.crt")).unwrap();
    symlink("..data/tls.key", dir.join("tls.key")).unwrap();

    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |c| {
        c.server.tls_cert = Some(dir.join("tls.crt"));
        c.server.tls_key = Some(dir.join("tls.key"));
        c.server.tls_reload_interval_ms = 50;
    })
    .await;
    let all = [&a, &b, &c];
    assert_eq!(served(relay.addr, &all).await, a.der);

    // A live h2 connection made with certificate A.
    let a_cert = dir.join("..v1/tls.crt");
    let mut live = support::H2Client::connect(relay.addr, &a_cert, None).await;
    let mut stream = live.subscribe("/events/t", &[]).await;
    eventually("subscribed", || origin.open("t") == 1).await;

    publish(&dir, "..v2", &b.cert_pem, &b.key_pem);
    eventually("reloaded", || {
        relay.metrics.server.cert_reloads.get(Reload::Ok).get() == 1
    })
    .await;
    assert_eq!(
        served(relay.addr, &all).await,
        b.der,
        "new handshakes get B"
    );
    origin.publish("t", "1", "still here");
    assert_eq!(
        stream.data(1).await,
        ["still here"],
        "the live connection is untouched"
    );

    // C's certificate with B's key: rejected, B stays.
    publish(&dir, "..v3", &c.cert_pem, &b.key_pem);
    eventually("rejected", || {
        relay
            .metrics
            .server
            .cert_reloads
            .get(Reload::Rejected)
            .get()
            == 1
    })
    .await;
    assert_eq!(
        served(relay.addr, &all).await,
        b.der,
        "the old certificate stays"
    );
    relay.stop().await;
}
