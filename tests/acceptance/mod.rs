//! Acceptance harness: the real `sse-relay` binary, real nginx with nchan, and the external
//! clients (curl, node + Chromium) as child processes on loopback ports, each in a guard that
//! kills it on drop so nothing outlives a failing test.
//!
//! A tool that is missing makes the test fail with a message naming what to install: these
//! tests are `#[ignore]`d for a plain `cargo test` and run by CI with `--include-ignored`, so
//! they must never pass by skipping. Every wait here is bounded.
// Each test binary uses a different part of this harness.
#![allow(dead_code, unused_imports)]

mod netns;
mod nginx;
mod relay;
mod text;

pub use netns::{Host, Lan};
pub use nginx::{http_request, nginx_conf, Nginx};
pub use relay::{RelayOptions, RelayProcess};
pub use text::{json_number, json_string, parse_events, SseEvent};

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Where Debian's `libnginx-mod-nchan` installs the module (`dpkg -L libnginx-mod-nchan`).
pub const NCHAN_MODULE: &str = "/usr/lib/nginx/modules/ngx_nchan_module.so";
/// Debian's Chromium (`apt-get install chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The first bytes of every stream the relay sends: a comment, then the default `retry:` hint.
pub const PREAMBLE: &str = ": sse-relay\n\nretry: 2000\n\n";
/// The longest any single wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// Finds `name` on `PATH` (and in the sbin directories, where Debian puts nginx), or fails the
/// test saying how to install it.
pub fn require_program(name: &str, install: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let sbin = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(sbin)
        .map(|dir| dir.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
        .unwrap_or_else(|| {
            panic!("acceptance test needs `{name}`, which is not installed: {install}")
        })
}

/// Fails the test unless `path` exists, saying how to install it.
pub fn require_file(path: &str, install: &str) -> PathBuf {
    let path = PathBuf::from(path);
    assert!(
        path.exists(),
        "acceptance test needs {}, which does not exist: {install}",
        path.display()
    );
    path
}

/// A loopback port that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("can bind 127.0.0.1:0")
        .port()
}

/// Calls `probe` every 50 ms until it returns `Some`, failing the test after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// A per-test directory under the system temp dir, named after the test and this process.
/// Removed on drop, except when the test failed (then its logs are kept and the path printed).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates (afresh) `<temp>/sse-relay-acceptance-<test>-<pid>`.
    pub fn new(test: &str) -> Self {
        let name = format!("sse-relay-acceptance-{test}-{}", std::process::id());
        let path = std::env::temp_dir().join(name);
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("can create the test's temp dir");
        Self { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("test failed: kept {} for inspection", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// The last `lines` lines of a log file (for failure messages).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("({e})"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A child process that is killed (and reaped) on drop. When the test is failing, the tail of
/// the child's log file is printed first.
pub struct ChildGuard {
    name: String,
    child: Child,
    log: Option<PathBuf>,
}

impl ChildGuard {
    /// Spawns `command`, failing the test with `name` if it cannot start.
    pub fn spawn(name: &str, command: &mut Command, log: Option<PathBuf>) -> Self {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child, e.g. to take its pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// `Some(status)` once the child has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Fails the test if the child has exited, showing its log.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exited() {
            panic!(
                "{} exited unexpectedly ({status}); log:\n{}",
                self.name,
                self.log_text()
            );
        }
    }

    /// Waits up to `timeout` for the child to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `port` on 127.0.0.1 accepts connections (the relay and nginx print nothing
    /// machine-readable when ready), failing if the child exits or `WAIT` passes.
    pub fn wait_for_port(&mut self, port: u16) {
        let deadline = Instant::now() + WAIT;
        loop {
            self.assert_running();
            let addr = (Ipv4Addr::LOCALHOST, port).into();
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not accept on 127.0.0.1:{port} within {WAIT:?}; log:\n{}",
                self.name,
                self.log_text()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        match &self.log {
            Some(log) => log_tail(log, 40),
            None => "(no log file)".into(),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if thread::panicking() && self.log.is_some() {
            eprintln!("--- {} log (tail) ---\n{}", self.name, self.log_text());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stdout of a child read line by line on a thread, so tests can wait with a deadline.
pub struct LineReader {
    lines: mpsc::Receiver<String>,
}

impl LineReader {
    /// Starts reading `stdout`.
    pub fn new(stdout: ChildStdout) -> Self {
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { lines }
    }

    /// The next line that satisfies `wanted` (others are echoed to stderr), or `None` when the
    /// stream ends or `timeout` passes first.
    pub fn next_matching(
        &self,
        timeout: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            if wanted(&line) {
                return Some(line);
            }
            eprintln!("  | {line}");
        }
    }
}
