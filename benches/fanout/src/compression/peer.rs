//! The peer a user would reach for: nginx with `gzip on; gzip_types text/event-stream;` in
//! front of nchan. nchan's EventSource subscriber writes past nginx's gzip filter (a gzip
//! directive in nchan's own server leaves its streams uncompressed), so the gzip is an nginx
//! of its own, one process like the origin, that proxies `/events/<channel>` to nchan's
//! `/sub/<channel>` unbuffered (`proxy_buffering off`, so every event leaves as it comes, gzip
//! sync-flushed) over TLS + h2. Everything else is nginx's default: gzip level 1, 4 or 8 KiB
//! proxy buffers. It starts and stops this process only; the origin is [`crate::procs::Nginx`].

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::procs::{free_port, spawn_nginx, wait_for_port, Cert, Child, NGINX_H2_MAX_STREAMS};

/// The gzip proxy in front of nchan.
pub struct GzipFront {
    /// The process.
    pub child: Child,
    /// TLS port (h2 and HTTP/1.1 by ALPN).
    pub port: u16,
}

impl GzipFront {
    /// Starts it in `dir` with nchan's plain port `origin` as its upstream and waits until it
    /// accepts.
    pub fn start(dir: &Path, cert: &Cert, origin: u16) -> Result<Self> {
        fs::create_dir_all(dir)?;
        let port = free_port()?;
        let mut child = spawn_nginx("nginx-gzip", dir, &conf_text(dir, cert, port, origin))?;
        wait_for_port(&mut child, port, Duration::from_secs(10))?;
        Ok(Self { child, port })
    }
}

fn conf_text(dir: &Path, cert: &Cert, port: u16, origin: u16) -> String {
    let d = dir.display();
    let (c, k) = (cert.cert_pem.display(), cert.key_pem.display());
    let h2 = NGINX_H2_MAX_STREAMS;
    format!(
        r#"# One process (the measured one), as the origin's.
master_process off;
worker_rlimit_nofile 20000;
error_log {d}/error.log warn;
events {{ worker_connections 19500; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 10000000;
    http2_max_concurrent_streams {h2};
    http2_max_requests 10000000;
    server {{
        listen 127.0.0.1:{port} ssl http2 backlog=4096;
        ssl_certificate {c};
        ssl_certificate_key {k};
        ssl_protocols TLSv1.2 TLSv1.3;
        gzip on;
        gzip_types text/event-stream;
        location /events/ {{
            proxy_pass http://127.0.0.1:{origin}/sub/;
            proxy_http_version 1.1;
            proxy_buffering off;
            proxy_read_timeout 1h;
        }}
    }}
}}
"#
    )
}
