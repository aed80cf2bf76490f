//! Acceptance in a real browser: one page of Debian's Chromium (driven by playwright-core from
//! `tests/browser/eventsource.mjs`) opens 30 `EventSource`s to the relay.
//!
//! - Over TLS, Chromium negotiates h2 and multiplexes: all 30 open and all 30 receive every
//!   message nchan publishes, while nchan sees one subscriber (the relay).
//! - Over the plaintext listener browsers speak HTTP/1.1 only (they never use h2c), and Chromium
//!   allows 6 connections per host: at most 6 of the 30 open, the rest wait in its queue.
//!
//! All 30 sources of a run use the same topic (one topic per run, `browser-h2` and
//! `browser-h1`). The page is served by nginx on another port, so every EventSource is a CORS
//! request, allowed by `[cors] allowed_origins = ["*"]`.
//!
//! Needs nginx, libnginx-mod-nchan, chromium, node and `npm ci` in tests/browser; run with
//! `cargo test -- --include-ignored`.

#[path = "acceptance/mod.rs"]
mod acceptance;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use acceptance::{
    json_number, require_file, require_program, ChildGuard, LineReader, Nginx, RelayOptions,
    RelayProcess, TempDir, CHROMIUM,
};

const SOURCES: u64 = 30;
const MESSAGES: usize = 5;
/// Chromium's limit of connections per host for HTTP/1.1 (`net::ClientSocketPoolManager`).
const HTTP1_CONNECTIONS_PER_HOST: u64 = 6;

#[test]
#[ignore = "acceptance: needs nginx + libnginx-mod-nchan, chromium, node and `npm ci` in tests/browser; run with --include-ignored (CI does)"]
fn one_page_opens_30_event_sources_over_h2_but_at_most_6_over_http1() {
    let mut fixture = Fixture::start("browser");
    let tls_port = fixture.relay.tls_port;
    let plain_port = fixture.relay.plain_port.expect("plaintext listener");
    let run = fixture.run();

    let h2 = run.page_with_30_sources(
        "browser-h2",
        &format!("https://127.0.0.1:{tls_port}/events/browser-h2"),
    );
    let h1 = run.page_with_30_sources(
        "browser-h1",
        &format!("http://127.0.0.1:{plain_port}/events/browser-h1"),
    );
    println!("TLS listener, h2:             {}", h2.summary());
    println!("plaintext listener, HTTP/1.1: {}", h1.summary());

    assert_eq!(
        h2.open, SOURCES,
        "over h2 every EventSource opens: {}",
        h2.json
    );
    assert_eq!(
        h2.received_all, SOURCES,
        "over h2 every EventSource receives every message: {}",
        h2.json
    );
    assert_eq!(
        h2.h2_responses, SOURCES,
        "every response came over h2: {}",
        h2.json
    );
    assert_eq!(h2.nchan_subscribers, Some(1), "one upstream for 30 sources");

    assert!(
        (1..=HTTP1_CONNECTIONS_PER_HOST).contains(&h1.open),
        "over HTTP/1.1 between 1 and {HTTP1_CONNECTIONS_PER_HOST} EventSources open: {}",
        h1.json
    );
    assert_eq!(
        h1.received_all, h1.open,
        "each open HTTP/1.1 EventSource receives every message: {}",
        h1.json
    );
    assert_eq!(
        h1.http1_responses, h1.open,
        "responses came over HTTP/1.1: {}",
        h1.json
    );
    fixture.nginx.assert_running();
    fixture.relay.assert_running();
}

#[test]
#[ignore = "acceptance: needs nginx + libnginx-mod-nchan, chromium, node and `npm ci` in tests/browser; run with --include-ignored (CI does)"]
fn a_200_kb_event_reaches_chromium_intact_through_the_relay_by_default() {
    let mut fixture = Fixture::start("browser-large");
    let large = format!("snapshot {}", "x".repeat(200 * 1024));
    let url = format!(
        "https://127.0.0.1:{}/events/browser-large",
        fixture.relay.tls_port
    );
    let outcome = fixture
        .run()
        .page("browser-large", &url, 1, &[large, "after".to_string()]);
    assert_eq!(outcome.open, 1, "{}", outcome.json);
    assert_eq!(
        outcome.received_all, 1,
        "the 200 KB event and the next one arrive intact: {}",
        outcome.json
    );
    fixture.nginx.assert_running();
    fixture.relay.assert_running();
}

/// What both tests need: the tools checked, nginx + nchan serving the page and the origin, and
/// a relay in front of nchan with CORS open to the page.
struct Fixture {
    node: std::path::PathBuf,
    script: std::path::PathBuf,
    page: String,
    dir: TempDir,
    nginx: Nginx,
    relay: RelayProcess,
}

impl Fixture {
    fn start(name: &str) -> Fixture {
        let node = require_program(
            "node",
            "install Node.js 20 or later (apt-get install nodejs)",
        );
        require_file(CHROMIUM, "apt-get install chromium");
        let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
        require_file(
            &browser_dir
                .join("node_modules/playwright-core/package.json")
                .to_string_lossy(),
            "run `npm ci` in tests/browser (installs the pinned playwright-core; no browser download)",
        );
        let dir = TempDir::new(name);
        let nginx = Nginx::start(dir.path());
        std::fs::write(
            dir.path().join("www/page.html"),
            "<!doctype html><title>sse-relay acceptance</title><p>EventSources live here.</p>\n",
        )
        .expect("write the page");
        let options = RelayOptions {
            plaintext: true,
            extra_toml: "[cors]\nallowed_origins = [\"*\"]\n".into(),
        };
        let relay = RelayProcess::start(dir.path(), &nginx.upstream_template(), options);
        Fixture {
            node,
            script: browser_dir.join("eventsource.mjs"),
            page: format!("http://127.0.0.1:{}/static/page.html", nginx.port),
            dir,
            nginx,
            relay,
        }
    }

    /// Runs of the browser script against this fixture's page and nginx.
    fn run(&self) -> Run<'_> {
        Run {
            node: &self.node,
            script: &self.script,
            page: &self.page,
            nginx: &self.nginx,
            dir: self.dir.path(),
        }
    }
}

struct Run<'a> {
    node: &'a Path,
    script: &'a Path,
    page: &'a str,
    nginx: &'a Nginx,
    dir: &'a Path,
}

/// What the script reported for one page.
struct Outcome {
    open: u64,
    received_all: u64,
    h2_responses: u64,
    http1_responses: u64,
    nchan_subscribers: Option<u64>,
    json: String,
}

impl Outcome {
    fn summary(&self) -> String {
        format!(
            "{}/{SOURCES} EventSources open, {}/{SOURCES} received all {MESSAGES} messages \
             (responses: {} h2, {} HTTP/1.1; nchan subscribers: {:?})",
            self.open,
            self.received_all,
            self.h2_responses,
            self.http1_responses,
            self.nchan_subscribers
        )
    }
}

impl Run<'_> {
    /// Runs the script against `url` with [`SOURCES`] sources; publishes `MESSAGES` messages
    /// to `topic` once it reports the sources open.
    fn page_with_30_sources(&self, topic: &str, url: &str) -> Outcome {
        let expected: Vec<String> = (0..MESSAGES).map(|i| format!("{topic} #{i}")).collect();
        self.page(topic, url, SOURCES, &expected)
    }

    /// Runs the script against `url` with `count` sources; publishes `expected` to `topic`
    /// once it reports them open.
    fn page(&self, topic: &str, url: &str, count: u64, expected: &[String]) -> Outcome {
        let expect_json = format!(
            "[{}]",
            expected
                .iter()
                .map(|m| format!("\"{m}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        let expect_file = self.dir.join(format!("expect-{topic}.json"));
        std::fs::write(&expect_file, &expect_json).expect("write the expected messages");
        let log = self.dir.join(format!("node-{topic}.log"));
        let stderr = std::fs::File::create(&log).expect("create node log");
        let mut command = Command::new(self.node);
        command
            .arg(self.script)
            .args(["--page", self.page, "--url", url])
            .args(["--count", &count.to_string()])
            .arg("--expect-file")
            .arg(&expect_file)
            .args(["--open-wait-ms", "8000", "--receive-wait-ms", "15000"])
            .args(["--chromium", CHROMIUM])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut node = ChildGuard::spawn("node eventsource.mjs", &mut command, Some(log));
        let lines = LineReader::new(node.child_mut().stdout.take().expect("node stdout"));
        let is_phase =
            |phase: &'static str| move |l: &str| l.contains(&format!("\"phase\":\"{phase}\""));

        let opened = lines
            .next_matching(Duration::from_secs(60), is_phase("open"))
            .unwrap_or_else(|| {
                node.assert_running();
                panic!("the browser script did not report its sources open within 60 s")
            });
        println!("  {opened}");
        let nchan_subscribers = if json_number(&opened, "open").unwrap_or(0) > 0 {
            self.nginx.wait_for_subscribers(topic, 1);
            for message in expected {
                self.nginx.publish(topic, message);
            }
            self.nginx.subscribers(topic)
        } else {
            None
        };
        let mut stdin = node.child_mut().stdin.take().expect("node stdin");
        stdin
            .write_all(b"published\n")
            .expect("tell the script the messages are published");
        drop(stdin);

        let json = lines
            .next_matching(Duration::from_secs(60), is_phase("result"))
            .unwrap_or_else(|| {
                node.assert_running();
                panic!("the browser script did not report a result within 60 s")
            });
        println!("  {json}");
        let status = node.wait_exit(Duration::from_secs(20));
        assert!(
            status.is_some_and(|s| s.success()),
            "the browser script did not exit cleanly: {status:?}"
        );
        let number = |key: &str| {
            json_number(&json, key).unwrap_or_else(|| panic!("no {key} in the result: {json}"))
        };
        Outcome {
            open: number("open"),
            received_all: number("received_all"),
            h2_responses: number("h2_responses"),
            http1_responses: number("http1_responses"),
            nchan_subscribers,
            json,
        }
    }
}
