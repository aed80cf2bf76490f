//! Acceptance of request streams with real clients (issue 27), against an OpenAI-compatible
//! origin written in the test ([`support::chat::ChatOrigin`]) behind a relay with a
//! `[[stream_route]]` on `/v1/chat/completions`, over real TLS (the relay's dev certificate).
//!
//! - **A chat page in Chromium** (Debian's, driven by playwright-core from
//!   `tests/browser/resume_stream.mjs`): the page, served by the origin (so every request to
//!   the relay is a CORS request, and the page reads `Content-Location` only because the relay
//!   exposes it), `fetch`es the POST, parses 100 chunks of the event stream itself, is reloaded
//!   while the answer is still being written, and follows the resume URL with `EventSource`
//!   from its last id (`lastEventId` query): chunks 101–500 and `[DONE]` exactly once, then the
//!   relay's 204 closes the EventSource. The origin saw one POST and wrote the whole answer.
//! - **The official `openai` Python client** (`tests/openai/stream_chat.py`) streaming a chat
//!   completion through the relay gets the same chunk objects, in the same order, as straight
//!   from the origin.
//!
//! Needs chromium, node with `npm ci` in tests/browser, python3 with
//! `pip install -r tests/openai/requirements.txt`; run with `cargo test -- --include-ignored`.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use sse_relay::config::StreamRouteConfig;
use sse_relay::edge::streams::{OnDisconnect, ResumeOutcome, StartOutcome};
use support::browser::next_phase;
use support::chat::{chunk_json, content, ChatOrigin, COMPLETIONS};
use support::{eventually, TestRelay};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Chunks of every answer (before `[DONE]`).
const CHUNKS: usize = 500;
/// Chunks the page reads before it is reloaded.
const READ: usize = 100;
/// How long one client run (Chromium or Python) may take at most.
const RUN_WAIT: Duration = Duration::from_secs(120);

/// A relay with the stream route `/v1/chat/completions` → `origin`, `/streams/{stream}` to
/// resume, CORS open to `page_origin` when given.
async fn relay(origin: &ChatOrigin, page_origin: Option<String>) -> TestRelay {
    let upstream = format!("{}{COMPLETIONS}", origin.base());
    TestRelay::start_with("http://127.0.0.1:9/sub/{topic}", |c| {
        c.stream_routes.push(StreamRouteConfig {
            path: COMPLETIONS.into(),
            upstream,
            resume_path: "/streams/{stream}".into(),
            protocol: Default::default(),
            on_disconnect: OnDisconnect::Detach,
            auth: Default::default(),
        });
        c.cors.allowed_origins = page_origin.into_iter().collect();
    })
    .await
}

/// The `content` of a chunk's JSON (`choices[0].delta.content`).
fn chunk_content(data: &str) -> String {
    let chunk: Value =
        serde_json::from_str(data).unwrap_or_else(|e| panic!("a chunk is JSON ({e}): {data}"));
    chunk["choices"][0]["delta"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("a chunk has content: {data}"))
        .to_string()
}

/// `value[key]` as an array of strings.
fn strings(value: &Value, key: &str) -> Vec<String> {
    value[key]
        .as_array()
        .unwrap_or_else(|| panic!("no array {key} in {value}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect()
}

fn require(path: &str, install: &str) {
    assert!(
        Path::new(path).exists(),
        "acceptance test needs {path}, which does not exist: {install}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "acceptance: needs chromium/node (npm ci in tests/browser) and python openai; run with --include-ignored (CI does)"]
async fn a_chat_page_reloaded_mid_answer_follows_the_rest_with_event_source_exactly_once() {
    let browser_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    require("/usr/bin/chromium", "apt-get install chromium");
    require(
        &format!("{browser_dir}/node_modules/playwright-core/package.json"),
        "run `npm ci` in tests/browser (installs the pinned playwright-core; no browser download)",
    );
    // 500 chunks 8 ms apart (4 s), held after chunk 150 until the resumed EventSource follows
    // the stream: the reload lands while the answer is being written, and the resume gets both
    // replayed chunks (101–150) and live ones (151–500).
    let origin = ChatOrigin::start_held(CHUNKS, Duration::from_millis(8), 150).await;
    let relay = relay(&origin, Some(origin.base())).await;
    let relay_base = format!("https://127.0.0.1:{}", relay.addr.port());

    let mut node = tokio::process::Command::new("node")
        .arg(format!("{browser_dir}/resume_stream.mjs"))
        .args(["--page", &format!("{}/chat.html", origin.base())])
        .args(["--relay", &relay_base])
        .args(["--read", &READ.to_string()])
        .args(["--wait-ms", "30000", "--chromium", "/usr/bin/chromium"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("needs node (it runs tests/browser/resume_stream.mjs)");
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let started = next_phase(&mut lines, "started", RUN_WAIT).await;
    let written_at_start = origin.written();
    println!(
        "started (origin had written {written_at_start} chunks): status {}, {}, content-location {}, {} chunks read",
        started["status"],
        started["contentType"],
        started["contentLocation"],
        started["chunks"].as_array().map_or(0, Vec::len)
    );
    assert_eq!(started["status"], 200, "{started}");
    assert!(
        started["contentType"]
            .as_str()
            .is_some_and(|t| t.starts_with("text/event-stream")),
        "{started}"
    );
    let location = started["contentLocation"]
        .as_str()
        .unwrap_or_else(|| panic!("a cross-origin page reads Content-Location: {started}"));
    let stream = location
        .strip_prefix("/streams/")
        .unwrap_or_else(|| panic!("the resume URL: {location}"))
        .to_string();
    let first: Vec<String> = strings(&started, "chunks")
        .iter()
        .map(|d| chunk_content(d))
        .collect();
    let want_first: Vec<String> = (1..=READ).map(content).collect();
    assert_eq!(first, want_first, "the page parsed chunks 1–{READ} itself");
    let want_ids: Vec<String> = (1..=READ).map(|n| format!("{stream}.{n}")).collect();
    assert_eq!(
        strings(&started, "ids"),
        want_ids,
        "relay ids name the stream and the position"
    );
    assert!(
        written_at_start <= 150,
        "the origin is held after chunk 150: the answer is still running at the reload"
    );

    // The reloaded page's EventSource follows the stream: then let the origin go on, so the
    // rest comes live.
    let resumed = &relay.metrics.streams.resumed;
    eventually("the reloaded page follows the stream", || {
        resumed.get(ResumeOutcome::Followed).get() == 1
    })
    .await;
    origin.release();

    let result = next_phase(&mut lines, "result", RUN_WAIT).await;
    let status = tokio::time::timeout(RUN_WAIT, node.wait())
        .await
        .expect("the browser script exits")
        .expect("node runs");
    assert!(status.success(), "the browser script failed: {status}");
    println!(
        "resumed: {} messages, opens {}, errors {}, readyState {}\n  requests {}\n  Chromium {}",
        result["messages"].as_array().map_or(0, Vec::len),
        result["opens"],
        result["errors"],
        result["readyState"],
        result["requests"],
        result["browser"]
    );

    assert!(
        result["reloaded"].as_u64().is_some_and(|n| n >= 1),
        "the page was reloaded: {result}"
    );
    assert_eq!(
        result["kept"]["lastId"].as_str(),
        Some(format!("{stream}.{READ}").as_str()),
        "the reloaded page resumes from the last id it read: {}",
        result["kept"]
    );
    assert_eq!(result["timedOut"], Value::Null, "{result}");
    let messages = strings(&result, "messages");
    let (done, rest) = messages.split_last().expect("messages after the resume");
    let rest: Vec<String> = rest.iter().map(|d| chunk_content(d)).collect();
    let want_rest: Vec<String> = (READ + 1..=CHUNKS).map(content).collect();
    assert_eq!(
        rest,
        want_rest,
        "chunks {}–{CHUNKS}, each exactly once",
        READ + 1
    );
    assert_eq!(done, "[DONE]", "then the origin's [DONE]");
    let want_ids: Vec<String> = (READ + 1..=CHUNKS + 1)
        .map(|n| format!("{stream}.{n}"))
        .collect();
    assert_eq!(strings(&result, "ids"), want_ids, "in order");
    assert_eq!(
        result["opens"], 1,
        "one stream was opened: the end's reconnect got no stream"
    );
    assert_eq!(
        result["errors"],
        serde_json::json!([
            {"readyState": 0, "afterMessages": CHUNKS - READ + 1},
            {"readyState": 2, "afterMessages": CHUNKS - READ + 1},
        ]),
        "the end (EventSource reconnects), then the 204 (EventSource stops)"
    );
    assert_eq!(result["readyState"], 2, "CLOSED");
    let event_sources: Vec<(String, u64, Option<String>)> = result["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter(|r| r["type"] == "EventSource")
        .map(|r| {
            (
                r["url"].as_str().unwrap_or_default().to_string(),
                r["status"].as_u64().unwrap_or_default(),
                r["lastEventId"].as_str().map(str::to_string),
            )
        })
        .collect();
    let resume_url = format!("{relay_base}{location}?lastEventId={stream}.{READ}");
    assert_eq!(
        event_sources,
        [
            (resume_url.clone(), 200, None),
            (resume_url, 204, Some(format!("{stream}.{}", CHUNKS + 1))),
        ],
        "the EventSource's requests: the stream from the query's id, then the reconnect after \
         its end with the last id in Last-Event-ID (over the query's), answered 204"
    );
    let fetched: Vec<(&str, u64)> = result["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["method"] == "POST")
        .map(|r| {
            (
                r["type"].as_str().unwrap_or_default(),
                r["status"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(fetched, [("Fetch", 200)], "one POST, by fetch");

    assert_eq!(origin.posts(), 1, "the origin saw one POST");
    eventually("the origin wrote the whole answer", || {
        origin.completed() == 1
    })
    .await;
    assert_eq!(resumed.get(ResumeOutcome::Ended).get(), 1, "one 204");
    relay.stop().await;
}

/// Runs `tests/openai/stream_chat.py` against `base_url` (trusting `cafile` alone when
/// given); the chunks it got.
async fn openai_chunks(base_url: &str, cafile: Option<&Path>) -> Vec<Value> {
    let mut command = tokio::process::Command::new("python3");
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/openai/stream_chat.py"
        ))
        .args(["--base-url", base_url])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(cafile) = cafile {
        command.arg("--cafile").arg(cafile);
    }
    let output = tokio::time::timeout(RUN_WAIT, command.output())
        .await
        .expect("the openai script ends")
        .expect("needs python3 (it runs tests/openai/stream_chat.py)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the openai script failed against {base_url} ({}); needs `pip install -r \
         tests/openai/requirements.txt`:\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).expect("a JSON report");
    report["chunks"].as_array().expect("chunks").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "acceptance: needs chromium/node (npm ci in tests/browser) and python openai; run with --include-ignored (CI does)"]
async fn the_openai_python_client_gets_the_same_chunks_through_the_relay_as_directly() {
    let origin = ChatOrigin::start(CHUNKS, Duration::from_millis(2)).await;
    let relay = relay(&origin, None).await;

    let direct = openai_chunks(&format!("{}/v1", origin.base()), None).await;
    let through = openai_chunks(
        &format!("https://127.0.0.1:{}/v1", relay.addr.port()),
        Some(&relay.cert),
    )
    .await;

    let want: Vec<Value> = (1..=CHUNKS)
        .map(|n| {
            let chunk: Value = serde_json::from_str(&chunk_json(n, CHUNKS)).unwrap();
            serde_json::json!({
                "id": chunk["id"],
                "content": content(n),
                "finish_reason": chunk["choices"][0]["finish_reason"],
            })
        })
        .collect();
    assert_eq!(
        direct, want,
        "straight from the origin: every chunk, in order"
    );
    assert_eq!(
        through, direct,
        "through the relay: the same chunks in the same order"
    );
    assert_eq!(origin.posts(), 2, "one POST each");
    assert_eq!(
        relay.metrics.streams.started.get(StartOutcome::Kept).get(),
        1,
        "through the relay the answer was kept as a stream"
    );
    relay.stop().await;
}
