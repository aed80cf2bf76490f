//! nginx with the nchan module, our reference SSE origin, run in a test's temp dir.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{
    free_port, json_number, require_file, require_program, wait_until, ChildGuard, NCHAN_MODULE,
    WAIT,
};

/// A plain HTTP/1.0 exchange with a loopback server (nginx): returns the status and the body.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    accept: &str,
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .unwrap_or_else(|e| panic!("cannot connect to 127.0.0.1:{port}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set read timeout");
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: {accept}\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .unwrap_or_else(|e| panic!("{method} {path}: cannot read the response: {e}"));
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// nginx with the nchan module on a loopback port: `POST /pub/<channel>` publishes,
/// `GET /pub/<channel>` (Accept: text/json) reports channel info, `GET /sub/<channel>` is an
/// EventSource-only subscriber (nchan answers 403 without `Accept: text/event-stream`), and
/// `/static/` serves files from `<dir>/www`.
pub struct Nginx {
    /// The HTTP port.
    pub port: u16,
    guard: ChildGuard,
}

impl Nginx {
    /// Starts nginx (single process, no daemon) in `dir` and waits until it accepts.
    pub fn start(dir: &Path) -> Self {
        let nginx = require_program("nginx", "apt-get install nginx libnginx-mod-nchan");
        require_file(NCHAN_MODULE, "apt-get install libnginx-mod-nchan");
        let port = free_port();
        let conf = dir.join("nginx.conf");
        fs::create_dir_all(dir.join("www")).expect("create www dir");
        fs::write(&conf, nginx_conf(dir, &format!("127.0.0.1:{port}"))).expect("write nginx.conf");
        let log = dir.join("nginx.log");
        let out = fs::File::create(&log).expect("create nginx.log");
        let mut command = Command::new(nginx);
        command
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(dir)
            .arg("-g")
            .arg(format!(
                "daemon off; pid {};",
                dir.join("nginx.pid").display()
            ))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone log handle"))
            .stderr(out);
        let mut guard = ChildGuard::spawn("nginx", &mut command, Some(dir.join("error.log")));
        guard.wait_for_port(port);
        Self { port, guard }
    }

    /// The relay's upstream template for nchan's EventSource subscriber location.
    pub fn upstream_template(&self) -> String {
        format!("http://127.0.0.1:{}/sub/{{topic}}", self.port)
    }

    /// Publishes `message` to `channel`; returns nchan's channel info JSON after publishing.
    pub fn publish(&self, channel: &str, message: &str) -> String {
        let (status, body) = http_request(
            self.port,
            "POST",
            &format!("/pub/{channel}"),
            "text/json",
            message,
        );
        assert!(
            status == 201 || status == 202,
            "nchan publish to {channel} answered {status}: {body}"
        );
        body
    }

    /// nchan's subscriber count for `channel` (`None` while the channel does not exist).
    pub fn subscribers(&self, channel: &str) -> Option<u64> {
        let (status, body) = http_request(
            self.port,
            "GET",
            &format!("/pub/{channel}"),
            "text/json",
            "",
        );
        match status {
            404 => None,
            200 => Some(
                json_number(&body, "subscribers")
                    .unwrap_or_else(|| panic!("no subscriber count in nchan's answer: {body}")),
            ),
            _ => panic!("nchan channel info for {channel} answered {status}: {body}"),
        }
    }

    /// Waits until nchan reports exactly `n` subscribers on `channel`.
    pub fn wait_for_subscribers(&self, channel: &str, n: u64) {
        wait_until(
            &format!("nchan to report {n} subscriber(s) on {channel}"),
            WAIT,
            || (self.subscribers(channel) == Some(n)).then_some(()),
        );
    }

    /// Fails the test if nginx has exited.
    pub fn assert_running(&mut self) {
        self.guard.assert_running();
    }
}

/// The nginx config of [`Nginx`], listening on `listen` (`addr:port`), with its files in `dir`.
pub fn nginx_conf(dir: &Path, listen: &str) -> String {
    let d = dir.display();
    format!(
        r#"load_module {NCHAN_MODULE};
# One process: nothing survives if the test kills it, and no user switch when run as root.
master_process off;
error_log {d}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    types {{ text/html html; }}
    server {{
        listen {listen};
        location ~ ^/pub/([A-Za-z0-9_-]+)$ {{
            nchan_publisher;
            nchan_channel_id $1;
            # Keep enough for the catch-up test's 3000 messages (nchan's default is 10).
            nchan_message_buffer_length 5000;
            nchan_message_timeout 10m;
        }}
        location ~ ^/sub/([A-Za-z0-9_-]+)$ {{
            nchan_subscriber eventsource;
            nchan_channel_id $1;
        }}
        location /static/ {{
            alias {d}/www/;
        }}
    }}
}}
"#
    )
}
