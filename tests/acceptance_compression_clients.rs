//! Compressed event streams through real clients that decode them themselves, against a relay
//! in this process (real TLS, its dev certificate) in front of the in-process origin:
//!
//! - **curl `--compressed`** (libcurl's zlib and libzstd), over HTTP/1.1 and h2: curl asking
//!   for its default codings (gzip chosen) and for zstd alone shows each event while the stream is
//!   open, exits cleanly when the relay ends the stream (a bad gzip trailer or zstd frame is
//!   curl's error 61), and prints exactly what an identity curl prints.
//! - **Chromium's EventSource** (Debian's, through playwright-core,
//!   `tests/browser/compressed.mjs`), which negotiates by itself: sources on a relay with
//!   compression on (h2 over TLS, HTTP/1.1 over the plaintext listener) and on one with it off
//!   dispatch the same events; Chromium's network stack shows the compressed responses'
//!   `Content-Encoding` and their bodies ending without a decoding error, then the 204 closes
//!   every source.
//!
//! Needs curl, chromium, node and `npm ci` in tests/browser; run with
//! `cargo test --test acceptance_compression_clients -- --include-ignored`.

mod support;

#[path = "acceptance/mod.rs"]
mod acceptance;

#[path = "decoders/mod.rs"]
mod decoders;

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use decoders::group::{last_id, origin_frame};
use serde_json::Value;
use sse_relay::config::Config;
use sse_relay::sse::{Item, Parser};
use support::browser::next_phase;
use support::origin::Canned;
use support::{eventually, TestOrigin, TestRelay, WAIT};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Child;

/// Events each test publishes.
const EVENTS: usize = 10;

/// A relay with no heartbeats during a test, quick reconnects and a short `retry:` hint.
fn quiet(c: &mut Config) {
    c.downstream.heartbeat_interval_ms = 600_000;
    c.downstream.retry_hint_ms = 300;
    support::fast_backoff(c);
}

/// The origin closes `topic`: the relays end its streams, and answer 204 after.
fn end_topic(origin: &TestOrigin, topic: &str) {
    origin.answer(topic, Canned::status(204, ""));
    origin.cut(topic, "");
}

/// A curl process whose stdout is gathered as it comes.
struct Curl {
    name: String,
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    reader: Option<tokio::task::JoinHandle<()>>,
    headers: std::path::PathBuf,
}

impl Curl {
    /// `curl -s -S -N --cacert CERT ARGS URL`, its response headers dumped into `dir`.
    fn start(name: &str, url: &str, cert: &Path, args: &[&str], dir: &Path) -> Curl {
        let headers = dir.join(format!("{}.headers", name.replace(' ', "-")));
        let mut child = tokio::process::Command::new("curl")
            .args(["-s", "-S", "-N", "--max-time", "60", "--cacert"])
            .arg(cert)
            .arg("--dump-header")
            .arg(&headers)
            .args(args)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("needs curl (apt-get install curl)");
        let out = Arc::new(Mutex::new(Vec::new()));
        let (sink, mut stdout) = (out.clone(), child.stdout.take().expect("curl stdout"));
        let reader = tokio::spawn(async move {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Curl {
            name: name.to_string(),
            child,
            out,
            reader: Some(reader),
            headers,
        }
    }

    /// What curl printed so far.
    fn output(&self) -> Vec<u8> {
        self.out.lock().unwrap().clone()
    }

    /// Waits for curl to exit by itself and its output to be read; asserts it succeeded.
    async fn exits_cleanly(&mut self) {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{}: curl ends when the relay ends the stream", self.name))
            .expect("curl's exit status");
        if let Some(reader) = self.reader.take() {
            reader.await.expect("the output is read");
        }
        assert!(
            status.success(),
            "{}: curl exited {status} (61: the content encoding did not decode; 18: a \
             partial transfer)",
            self.name
        );
    }

    /// The dumped response head: its status line and its headers (names lowercase).
    fn head(&self) -> (String, Vec<(String, String)>) {
        let text = std::fs::read_to_string(&self.headers).unwrap_or_default();
        let mut lines = text.lines();
        let status = lines.next().unwrap_or_default().trim().to_string();
        let headers = lines
            .filter_map(|line| {
                let (key, value) = line.split_once(':')?;
                Some((key.trim().to_ascii_lowercase(), value.trim().to_string()))
            })
            .collect();
        (status, headers)
    }
}

/// Where curl's output is, for a test's steps.
async fn same_as_reference(curls: &[(Curl, Option<&str>)], what: &str) {
    let reference = curls[0].0.output();
    for (curl, _) in &curls[1..] {
        eventually(
            &format!("{}: {what} while the stream is open", curl.name),
            || curl.output().len() >= reference.len(),
        )
        .await;
        assert_eq!(
            String::from_utf8_lossy(&curl.output()[..reference.len()]),
            String::from_utf8_lossy(&reference),
            "{} prints what the identity curl prints",
            curl.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "acceptance: needs curl with HTTP/2, zlib and zstd; run with --include-ignored (CI does)"]
async fn curl_compressed_prints_what_an_identity_curl_prints_over_http1_and_h2() {
    let curl = acceptance::require_program("curl", "apt-get install curl");
    let features = std::process::Command::new(&curl)
        .arg("-V")
        .output()
        .expect("curl -V");
    let features = String::from_utf8_lossy(&features.stdout).into_owned();
    for feature in ["HTTP2", "libz", "zstd"] {
        assert!(
            features.contains(feature),
            "this curl lacks {feature}: {features}"
        );
    }
    let dir = acceptance::TempDir::new("compression-curl");
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, quiet).await;
    let port = relay.addr.port();
    let runs = [
        ("h1", "--http1.1", "HTTP/1.1 200"),
        ("h2", "--http2", "HTTP/2 200"),
    ];
    for (proto, flag, status) in runs {
        let topic = format!("curl-{proto}");
        let url = format!("https://localhost:{port}/events/{topic}");
        // curl's own Accept-Encoding ("deflate, gzip, br, zstd") gets the relay's first
        // coding, gzip; asking for zstd alone gets zstd.
        let asks: [(&str, &[&str], Option<&str>); 3] = [
            ("identity", &[flag], None),
            ("compressed", &[flag, "--compressed"], Some("gzip")),
            (
                "zstd",
                &[flag, "--compressed", "-H", "Accept-Encoding: zstd"],
                Some("zstd"),
            ),
        ];
        let mut curls: Vec<(Curl, Option<&str>)> = asks
            .iter()
            .map(|(name, args, coding)| {
                let name = format!("{proto} {name}");
                (
                    Curl::start(&name, &url, &relay.cert, args, dir.path()),
                    *coding,
                )
            })
            .collect();
        eventually("curl's streams attached", || origin.open(&topic) == 1).await;
        eventually("the identity curl's opening", || {
            curls[0].0.output().ends_with(b"retry: 300\n\n")
        })
        .await;
        same_as_reference(&curls, "the opening").await;
        for i in 1..=EVENTS {
            origin.publish_raw(&topic, Some(&i.to_string()), Bytes::from(origin_frame(i)));
            let want = i.to_string();
            eventually(&format!("the identity curl: event {i}"), || {
                last_id(&curls[0].0.output()).as_deref() == Some(want.as_str())
            })
            .await;
            same_as_reference(&curls, &format!("event {i}")).await;
        }
        end_topic(&origin, &topic);
        for (curl, _) in &mut curls {
            curl.exits_cleanly().await;
        }
        let reference = curls[0].0.output();
        for (curl, coding) in &curls {
            let (status_line, headers) = curl.head();
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
            };
            assert!(
                status_line.starts_with(status),
                "{}: {status_line}",
                curl.name
            );
            assert_eq!(
                header("content-encoding"),
                *coding,
                "{}: {headers:?}",
                curl.name
            );
            assert!(
                header("vary").is_some_and(|v| v.to_ascii_lowercase().contains("accept-encoding")),
                "{}: {headers:?}",
                curl.name
            );
            assert_eq!(
                String::from_utf8_lossy(&curl.output()),
                String::from_utf8_lossy(&reference),
                "{}: the whole stream as the identity curl printed it",
                curl.name
            );
        }
        println!(
            "curl {proto}: {} bytes printed alike by all three",
            reference.len()
        );
    }
    relay.stop().await;
}

/// A relay for the page: TLS and a plaintext listener, CORS open, offering `codings` (none:
/// compression off).
async fn page_relay(origin: &TestOrigin, codings: &[&str]) -> TestRelay {
    TestRelay::start(origin, |c| {
        quiet(c);
        c.server.plaintext_listen = Some(support::loopback());
        c.cors.allowed_origins = vec!["*".into()];
        c.compression.enabled = !codings.is_empty();
        if !codings.is_empty() {
            c.compression.encodings = codings.iter().map(|c| c.to_string()).collect();
        }
    })
    .await
}

/// The events the origin's frames `1..=n` make an EventSource dispatch: (type, data, id).
fn dispatched(n: usize) -> Vec<Value> {
    let mut items = Vec::new();
    let mut parser = Parser::new(1 << 20);
    for i in 1..=n {
        parser.feed(origin_frame(i).as_bytes(), &mut items);
    }
    items
        .into_iter()
        .filter_map(|item| match item {
            Item::Event(e) => Some(serde_json::json!({
                "type": e.event_type.unwrap_or_else(|| "message".into()),
                "data": e.data.unwrap_or_default(),
                "lastEventId": e.id.unwrap_or_default(),
            })),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "acceptance: needs chromium, node and `npm ci` in tests/browser; run with --include-ignored (CI does)"]
async fn chromium_event_sources_dispatch_the_same_events_with_compression_on_and_off() {
    let browser_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    acceptance::require_file(acceptance::CHROMIUM, "apt-get install chromium");
    acceptance::require_file(
        &format!("{browser_dir}/node_modules/playwright-core/package.json"),
        "run `npm ci` in tests/browser (installs the pinned playwright-core; no browser download)",
    );
    let origin = TestOrigin::start().await;
    // zstd preferred, gzip alone (what the default order gives a browser), and compression
    // off; each over h2 (TLS) and
    // HTTP/1.1 (the plaintext listener: browsers never speak h2c).
    let relays = [
        page_relay(&origin, &["zstd", "gzip"]).await,
        page_relay(&origin, &["gzip"]).await,
        page_relay(&origin, &[]).await,
    ];
    let plain = |r: &TestRelay| r.plain_addr.expect("plaintext listener").port();
    let urls: Vec<String> = relays
        .iter()
        .flat_map(|r| {
            [
                format!("https://127.0.0.1:{}/events/web", r.addr.port()),
                format!("http://127.0.0.1:{}/events/web", plain(r)),
            ]
        })
        .collect();
    let off = &relays[2];
    // The page is on the plaintext listener of the relay with compression off (a 404 page:
    // only its origin matters); every EventSource is a CORS request.
    let page = format!("http://127.0.0.1:{}/page", plain(off));
    let mut node = tokio::process::Command::new("node")
        .arg(format!("{browser_dir}/compressed.mjs"))
        .args([
            "--page",
            &page,
            "--urls",
            &serde_json::to_string(&urls).unwrap(),
        ])
        .args(["--chromium", acceptance::CHROMIUM])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("needs node (it runs tests/browser/compressed.mjs)");
    let mut stdin = node.stdin.take().expect("node stdin");
    let mut lines = BufReader::new(node.stdout.take().expect("node stdout")).lines();
    let opened = next_phase(&mut lines, "open", Duration::from_secs(60)).await;
    let open = opened["sources"].as_array().expect("sources");
    assert!(
        open.iter().all(|s| s["opened"] == 1),
        "every source opens: {opened}"
    );
    eventually("the relays follow the topic", || origin.open("web") == 3).await;

    // One event at a time, each dispatched by every source before the next.
    for i in 1..=EVENTS {
        origin.publish_raw("web", Some(&i.to_string()), Bytes::from(origin_frame(i)));
        stdin
            .write_all(format!("wait {i}\n").as_bytes())
            .await
            .unwrap();
        let got = next_phase(&mut lines, "got", Duration::from_secs(60)).await;
        assert_eq!(
            got["counts"],
            serde_json::json!(vec![i; 6]),
            "event {i}: {got}"
        );
    }
    end_topic(&origin, "web");
    stdin.write_all(b"end\n").await.unwrap();
    let result = next_phase(&mut lines, "result", Duration::from_secs(60)).await;
    println!("{}: {}", result["browser"], result["requests"]);
    let status = tokio::time::timeout(WAIT, node.wait())
        .await
        .expect("node exits");
    assert!(
        status.is_ok_and(|s| s.success()),
        "the browser script failed"
    );

    let want = Value::Array(dispatched(EVENTS));
    for source in result["sources"].as_array().expect("sources") {
        let url = &source["url"];
        assert_eq!(source["events"], want, "{url}: the events dispatched");
        assert_eq!(
            source["readyState"], 2,
            "{url}: CLOSED by the 204 after the end"
        );
        assert_eq!(
            source["errors"],
            serde_json::json!([0, 2]),
            "{url}: the stream's end (EventSource reconnects), then the 204 (it stops)"
        );
    }
    check_network(&result, &urls);
    for relay in relays {
        relay.stop().await;
    }
}

/// Chromium's network stack: each source's first request was answered 200 over its protocol
/// (h2 over TLS, HTTP/1.1 over plain http), in the coding its relay prefers among those
/// Chromium offered (none with compression off), and its body ended without error; the
/// reconnect after the end got 204.
fn check_network(result: &Value, urls: &[String]) {
    let requests = result["requests"].as_array().expect("requests");
    let codings = [Some("zstd"), Some("gzip"), None];
    for (i, url) in urls.iter().enumerate() {
        let protocol = if i % 2 == 0 { "h2" } else { "http/1.1" };
        let of_url: Vec<&Value> = requests
            .iter()
            .filter(|r| r["url"] == url.as_str())
            .collect();
        let statuses: Vec<&Value> = of_url.iter().map(|r| &r["status"]).collect();
        assert_eq!(
            statuses,
            [200, 204],
            "{url}: the stream, then the 204: {of_url:?}"
        );
        let first = of_url[0];
        assert_eq!(first["protocol"], protocol, "{url}: {first}");
        let offered = first["acceptEncoding"].as_str().unwrap_or_default();
        let coding = first["contentEncoding"].as_str();
        let want = codings[i / 2];
        assert!(
            want.is_none_or(|w| offered.contains(w)),
            "{url}: Chromium offers {want:?}: {first}"
        );
        assert_eq!(coding, want, "{url}: Chromium offered {offered:?}: {first}");
        assert_eq!(
            first["failed"],
            Value::Null,
            "{url}: the body did not fail: {first}"
        );
        assert_eq!(
            first["finished"], true,
            "{url}: the body ended cleanly: {first}"
        );
        println!("{url}: {protocol}, Accept-Encoding {offered:?}, Content-Encoding {coding:?}");
    }
}
