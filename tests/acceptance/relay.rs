//! The `sse-relay` binary under test, started with a config written into the test's temp dir.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{free_port, ChildGuard};

/// How to start the relay.
#[derive(Default)]
pub struct RelayOptions {
    /// Also open `server.plaintext_listen` (HTTP/1.1 + h2c).
    pub plaintext: bool,
    /// Extra TOML appended to the config (whole sections, e.g. `[cors]`).
    pub extra_toml: String,
}

/// The `sse-relay` binary under test, with a generated dev certificate.
pub struct RelayProcess {
    /// The TLS listener's port.
    pub tls_port: u16,
    /// The plaintext listener's port, if opened.
    pub plain_port: Option<u16>,
    /// The dev certificate (PEM) the relay wrote, for `--cacert` and root stores.
    pub cert: PathBuf,
    guard: ChildGuard,
}

impl RelayProcess {
    /// Writes a config routing `/events/{topic}` to `upstream` (a template with `{topic}`),
    /// starts the relay and waits until its listeners accept.
    pub fn start(dir: &Path, upstream: &str, options: RelayOptions) -> Self {
        let tls_port = free_port();
        let plain_port = options.plaintext.then(free_port);
        let cert_dir = dir.join("dev-cert");
        let plaintext = plain_port
            .map(|p| format!("plaintext_listen = \"127.0.0.1:{p}\"\n"))
            .unwrap_or_default();
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:{tls_port}\"\ndev_cert_dir = \"{}\"\n{plaintext}\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n\n\
             [[route]]\npath = \"/events/{{topic}}\"\nupstream = \"{upstream}\"\n\n\
             [upstream]\nbackoff_min_ms = 50\nbackoff_max_ms = 1000\n\n{}\n",
            cert_dir.display(),
            options.extra_toml
        );
        let config_path = dir.join("relay.toml");
        fs::write(&config_path, config).expect("write relay.toml");
        let log = dir.join("relay.log");
        let out = fs::File::create(&log).expect("create relay.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_sse-relay"));
        command
            .arg("--config")
            .arg(&config_path)
            .env("SSE_RELAY_LOG", "info,sse_relay=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone log handle"))
            .stderr(out);
        let mut guard = ChildGuard::spawn("sse-relay", &mut command, Some(log));
        guard.wait_for_port(tls_port);
        if let Some(port) = plain_port {
            guard.wait_for_port(port);
        }
        let cert = cert_dir.join("cert.pem");
        assert!(
            cert.is_file(),
            "the relay did not write its dev certificate to {}",
            cert.display()
        );
        Self {
            tls_port,
            plain_port,
            cert,
            guard,
        }
    }

    /// Fails the test if the relay has exited.
    pub fn assert_running(&mut self) {
        self.guard.assert_running();
    }
}
