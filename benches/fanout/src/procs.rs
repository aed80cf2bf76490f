//! The servers under test as child processes: nginx + nchan (one process, `master_process
//! off`) and sse-relay with nchan as its origin; their configs, a shared TLS certificate, and
//! what `/proc` says about them (RSS, CPU time). Every child is killed when its guard drops,
//! and its pid is registered so a signal handler can kill it too.

use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Debian's nchan module (`apt-get install libnginx-mod-nchan`).
pub const NCHAN_MODULE: &str = "/usr/lib/nginx/modules/ngx_nchan_module.so";

/// nginx's h2 concurrent-stream limit we configure (its default, stated explicitly).
pub const NGINX_H2_MAX_STREAMS: u32 = 128;

/// Pids of the children alive now, for the signal handler.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Kills every registered child (SIGKILL); used on SIGINT/SIGTERM before exiting.
pub fn kill_all_children() {
    let pids: Vec<u32> = CHILDREN.lock().map(|c| c.clone()).unwrap_or_default();
    for pid in pids {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .status();
    }
}

/// Runs `work` on a multi-threaded runtime; on SIGINT or SIGTERM, and when it ends, every
/// registered child is killed first.
///
/// # Errors
/// `work`'s error, or when the runtime cannot be built.
pub fn run_guarded(work: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        tokio::spawn(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            kill_all_children();
            eprintln!("interrupted: servers stopped");
            std::process::exit(130);
            #[allow(unreachable_code)]
            anyhow::Ok(())
        });
        work.await
    });
    kill_all_children();
    runtime.shutdown_timeout(Duration::from_secs(2));
    result
}

/// A child process killed (and reaped) on drop.
pub struct Child {
    name: &'static str,
    child: std::process::Child,
    log: PathBuf,
}

impl Child {
    /// Starts `command` as `name`, its output to `log`, listed for [`kill_all_children`].
    ///
    /// # Errors
    /// When the log cannot be created or the program cannot be started.
    pub fn spawn(name: &'static str, command: &mut Command, log: PathBuf) -> Result<Self> {
        let out = fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = command
            .spawn()
            .with_context(|| format!("start {name} ({command:?})"))?;
        if let Ok(mut c) = CHILDREN.lock() {
            c.push(child.id());
        }
        Ok(Self { name, child, log })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has exited (with the tail of its log).
    pub fn check_running(&mut self) -> Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!("{} exited ({status}):\n{}", self.name, tail.join("\n"));
        }
        Ok(())
    }

    /// Resident set size now, bytes (`VmRSS` in `/proc/PID/status`).
    pub fn rss_bytes(&self) -> Result<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .context("no VmRSS in /proc/PID/status")?;
        Ok(kib * 1024)
    }

    /// User + system CPU time used so far (`utime + stime` in `/proc/PID/stat`).
    pub fn cpu_time(&self) -> Result<Cpu> {
        proc_cpu(&self.pid().to_string())
    }

    /// Sends SIGKILL now (a crash: no drain, every socket closed by the kernel) and reaps it.
    pub fn kill_now(&mut self) -> Result<()> {
        self.child
            .kill()
            .with_context(|| format!("kill {}", self.name))?;
        self.child.wait()?;
        let pid = self.child.id();
        if let Ok(mut c) = CHILDREN.lock() {
            c.retain(|&p| p != pid);
        }
        Ok(())
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit (then kills it).
    pub fn terminate(mut self, timeout: Duration) -> Result<()> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("{} did not exit within {timeout:?} of SIGTERM", self.name)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let pid = self.child.id();
        if let Ok(mut c) = CHILDREN.lock() {
            c.retain(|&p| p != pid);
        }
    }
}

/// CPU time of a process, split.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    /// User time.
    pub user: Duration,
    /// System time.
    pub system: Duration,
}

impl Cpu {
    /// User + system.
    pub fn total(self) -> Duration {
        self.user + self.system
    }

    /// The time used since `earlier`.
    pub fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

/// `utime` and `stime` of `/proc/<pid>/stat` (`pid` may be `self`).
pub fn proc_cpu(pid: &str) -> Result<Cpu> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("malformed /proc/PID/stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the command name: state is field 3, utime 14, stime 15 (1-based).
    let ticks = |i: usize| -> Result<Duration> {
        let t: u64 = fields.get(i - 3).context("short /proc/PID/stat")?.parse()?;
        Ok(Duration::from_nanos(t * 1_000_000_000 / clock_ticks()))
    };
    Ok(Cpu {
        user: ticks(14)?,
        system: ticks(15)?,
    })
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// A free loopback port (bound then released).
pub fn free_port() -> Result<u16> {
    free_port_on(Ipv4Addr::LOCALHOST)
}

/// A free port on the loopback address `ip` (any of 127.0.0.0/8; bound then released).
pub fn free_port_on(ip: Ipv4Addr) -> Result<u16> {
    Ok(TcpListener::bind((ip, 0))?.local_addr()?.port())
}

/// Waits until something accepts on 127.0.0.1:`port`.
pub fn wait_for_port(child: &mut Child, port: u16, timeout: Duration) -> Result<()> {
    wait_for_addr(child, (Ipv4Addr::LOCALHOST, port).into(), timeout)
}

/// Waits until something accepts on `addr`.
pub fn wait_for_addr(child: &mut Child, addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        child.check_running()?;
        if Instant::now() > deadline {
            bail!("{} did not listen on {addr} within {timeout:?}", child.name);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The certificate both servers present (self-signed for `localhost` and 127.0.0.1, ECDSA
/// P-256), as PEM files, and in DER for the client's root store.
pub struct Cert {
    /// PEM certificate file.
    pub cert_pem: PathBuf,
    /// PEM private key file.
    pub key_pem: PathBuf,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

impl Cert {
    /// Generates a fresh certificate into `dir`.
    pub fn generate(dir: &Path) -> Result<Self> {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
        let cert_pem = dir.join("cert.pem");
        let key_pem = dir.join("key.pem");
        fs::write(&cert_pem, certified.cert.pem())?;
        fs::write(&key_pem, certified.key_pair.serialize_pem())?;
        Ok(Self {
            cert_pem,
            key_pem,
            der: certified.cert.der().to_vec(),
        })
    }
}

/// nginx + nchan in `dir`: plain HTTP on `plain_port` (`POST /pub/<channel>` publishes,
/// `GET /pub/<channel>` reports, `GET /sub/<channel>` subscribes: the relay's origin), and TLS +
/// h2 on `tls_port` (`GET /sub/<channel>`: clients of nchan directly).
pub struct Nginx {
    /// The process.
    pub child: Child,
    /// Plain HTTP port (publisher, channel info, the relay's upstream).
    pub plain_port: u16,
    /// TLS port (h2 and HTTP/1.1 by ALPN).
    pub tls_port: u16,
}

/// Writes `conf` as `dir/nginx.conf` and starts nginx on it, one process in the foreground
/// (its pid file and output in `dir`), named `name` in errors.
pub fn spawn_nginx(name: &'static str, dir: &Path, conf: &str) -> Result<Child> {
    let path = dir.join("nginx.conf");
    fs::write(&path, conf)?;
    let mut command = Command::new("nginx");
    command
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .arg("-g")
        .arg(format!(
            "daemon off; pid {};",
            dir.join("nginx.pid").display()
        ));
    Child::spawn(name, &mut command, dir.join("nginx.out"))
}

impl Nginx {
    /// Starts nginx (one process, no daemon) and waits until both ports accept.
    pub fn start(dir: &Path, cert: &Cert) -> Result<Self> {
        if !Path::new(NCHAN_MODULE).exists() {
            bail!("{NCHAN_MODULE} missing: apt-get install nginx libnginx-mod-nchan");
        }
        fs::create_dir_all(dir)?;
        let (plain_port, tls_port) = (free_port()?, free_port()?);
        let conf = nginx_conf(dir, cert, plain_port, tls_port);
        let mut child = spawn_nginx("nginx", dir, &conf)?;
        wait_for_port(&mut child, plain_port, Duration::from_secs(10))?;
        wait_for_port(&mut child, tls_port, Duration::from_secs(10))?;
        Ok(Self {
            child,
            plain_port,
            tls_port,
        })
    }
}

fn nginx_conf(dir: &Path, cert: &Cert, plain: u16, tls: u16) -> String {
    let d = dir.display();
    let (c, k) = (cert.cert_pem.display(), cert.key_pem.display());
    let h2 = NGINX_H2_MAX_STREAMS;
    format!(
        r#"load_module {NCHAN_MODULE};
# One process (the measured one): no user switch as root, nothing survives a kill.
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
        listen 127.0.0.1:{plain} backlog=4096;
        location ~ ^/pub/([A-Za-z0-9_-]+)$ {{
            nchan_publisher;
            nchan_channel_id $1;
            nchan_message_buffer_length 2000;
        }}
        location ~ ^/sub/([A-Za-z0-9_-]+)$ {{
            nchan_subscriber eventsource;
            nchan_subscriber_first_message newest;
            nchan_channel_id $1;
        }}
    }}
    server {{
        listen 127.0.0.1:{tls} ssl http2 backlog=4096;
        ssl_certificate {c};
        ssl_certificate_key {k};
        ssl_protocols TLSv1.2 TLSv1.3;
        location ~ ^/sub/([A-Za-z0-9_-]+)$ {{
            nchan_subscriber eventsource;
            nchan_subscriber_first_message newest;
            nchan_channel_id $1;
        }}
    }}
}}
"#
    )
}

/// sse-relay with nchan's plain port as its origin.
pub struct Relay {
    /// The process (valgrind's, when wrapped: it becomes the relay).
    pub child: Child,
    /// The loopback address it listens on (TLS and admin).
    pub ip: Ipv4Addr,
    /// TLS port.
    pub port: u16,
    /// Admin port (plain HTTP).
    pub admin_port: u16,
}

impl Relay {
    /// Starts the relay on 127.0.0.1 (optionally under `wrapper`, e.g. valgrind) and waits
    /// until it accepts.
    pub fn start(
        dir: &Path,
        bin: &Path,
        cert: &Cert,
        origin_port: u16,
        wrapper: &[String],
    ) -> Result<Self> {
        Self::start_on(
            dir,
            bin,
            cert,
            origin_port,
            wrapper,
            Ipv4Addr::LOCALHOST,
            "",
        )
    }

    /// Starts the relay listening on the loopback address `ip`, with `extra` appended to its
    /// config (TOML sections, e.g. `[cluster]`), and waits until it accepts.
    pub fn start_on(
        dir: &Path,
        bin: &Path,
        cert: &Cert,
        origin_port: u16,
        wrapper: &[String],
        ip: Ipv4Addr,
        extra: &str,
    ) -> Result<Self> {
        if !bin.exists() {
            bail!(
                "{} missing: build it with `cargo build --release`",
                bin.display()
            );
        }
        fs::create_dir_all(dir)?;
        let (port, admin_port) = (free_port_on(ip)?, free_port_on(ip)?);
        let slow = !wrapper.is_empty();
        let conf = dir.join("relay.toml");
        let mut text = relay_conf(cert, (ip, port).into(), admin_port, origin_port, slow);
        text.push_str(extra);
        fs::File::create(&conf)?.write_all(text.as_bytes())?;
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        command.arg("--config").arg(&conf);
        let mut child = Child::spawn("sse-relay", &mut command, dir.join("relay.out"))?;
        let timeout = Duration::from_secs(if slow { 120 } else { 15 });
        wait_for_addr(&mut child, (ip, port).into(), timeout)?;
        wait_for_addr(&mut child, (ip, admin_port).into(), timeout)?;
        Ok(Self {
            child,
            ip,
            port,
            admin_port,
        })
    }

    /// The TLS listener's address.
    pub fn addr(&self) -> SocketAddr {
        (self.ip, self.port).into()
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        (self.ip, self.admin_port).into()
    }
}

/// The relay's config: every limit that would refuse the benchmark's load from one loopback
/// address raised, drain immediate, no demo origin, warnings only.
fn relay_conf(cert: &Cert, listen: SocketAddr, admin: u16, origin: u16, slow: bool) -> String {
    let (c, k) = (cert.cert_pem.display(), cert.key_pem.display());
    // Under valgrind everything is ~50x slower: widen the handshake deadlines.
    let deadline = if slow { 120_000 } else { 10_000 };
    let ip = listen.ip();
    format!(
        r#"[server]
listen = "{listen}"
tls_cert = "{c}"
tls_key = "{k}"
drain_delay_ms = 0
drain_window_ms = 100
drain_timeout_ms = 5000
tls_reload_interval_ms = 0

[[route]]
path = "/events/{{topic}}"
upstream = "http://127.0.0.1:{origin}/sub/{{topic}}"

[limits]
max_connections = 19500
max_connections_per_ip = 19500
tls_handshake_timeout_ms = {deadline}
first_request_timeout_ms = {deadline}

[admin]
listen = "{ip}:{admin}"

[demo_origin]
enabled = false

[log]
filter = "warn"
"#
    )
}

/// Reads `addr`'s `path` with a plain HTTP/1.0 GET (the relay's admin endpoints).
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    use std::io::Read;
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}
