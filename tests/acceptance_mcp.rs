//! MCP with the official TypeScript SDK (`@modelcontextprotocol/sdk`, tests/mcp): an SDK server
//! on Streamable HTTP with sessions and NO event store, whose tool sends progress notifications
//! over a few seconds and then its result; an SDK client (StreamableHTTPClientTransport) has its
//! tools/call answer cut mid-stream. Through the relay (its TLS listener, trusted by
//! `NODE_EXTRA_CA_CERTS` = the relay's dev certificate) the SDK resumes with its own resumption
//! token (`GET` + `Last-Event-ID` + `Mcp-Session-Id`) and gets every notification and the
//! result exactly once while the server saw one `tools/call`; the same cut straight to the
//! server leaves the SDK nothing to resume from.

mod support;

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use sse_relay::config::StreamRouteConfig;
use sse_relay::edge::streams::{OnDisconnect, ResumeOutcome, StartOutcome, StreamProtocol};
use support::TestRelay;

const MCP_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp");
/// The tool's progress notifications, one every `INTERVAL_MS`.
const STEPS: u64 = 10;
const INTERVAL_MS: u64 = 250;
/// The client's connection is cut after this many notifications.
const CUT_AFTER: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "acceptance: needs node and `npm ci` in tests/mcp; run with --include-ignored (CI does)"]
async fn the_mcp_sdk_resumes_a_cut_tool_call_through_the_relay_and_cannot_without_it() {
    assert!(
        Path::new(MCP_DIR)
            .join("node_modules/@modelcontextprotocol/sdk")
            .is_dir(),
        "needs @modelcontextprotocol/sdk: run `npm ci` in tests/mcp"
    );
    let (_server, server) = start_server();
    let relay = TestRelay::start_with("http://127.0.0.1:9/sub/{topic}", |c| {
        c.stream_routes.push(StreamRouteConfig {
            path: "/mcp".into(),
            upstream: format!("http://{server}/mcp"),
            resume_path: "/streams/{stream}".into(),
            protocol: StreamProtocol::Mcp,
            on_disconnect: OnDisconnect::Detach,
            auth: Default::default(),
        });
    })
    .await;

    // Through the relay: cut, resumed by the SDK itself, everything exactly once.
    let relayed = run_client(
        &format!("https://127.0.0.1:{}/mcp", relay.addr.port()),
        server,
        Some(&relay),
    )
    .await;
    println!("through the relay: {relayed}");
    let session = relayed["session"].as_str().expect("a session");
    assert_eq!(relayed["result"], format!("done after {STEPS} steps"));
    assert_eq!(
        relayed["progress"],
        json!((1..=STEPS).collect::<Vec<_>>()),
        "every notification once, in order"
    );
    assert_eq!(
        relayed["messages"],
        Value::Array(
            (1..=STEPS)
                .map(|n| json!({ "progress": n }))
                .chain([json!({ "response": 1 })])
                .collect()
        ),
        "after connecting, the transport delivered each notification and the tool's result \
         (request id 1), each exactly once, and nothing else"
    );
    assert_eq!(
        relayed["progressAtCut"].as_array().unwrap().len() as u64,
        CUT_AFTER
    );
    assert!(
        relayed["tokensAtCut"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "the SDK had resumption tokens (the relay's event ids) when cut"
    );
    let requests = relayed["requests"].as_array().unwrap();
    let call = request(requests, |r| r["rpc"] == "tools/call");
    assert_eq!(call["body"], "cut", "the tools/call answer was cut");
    let kept = call["contentLocation"].as_str().expect("the relay kept it");
    let resumed = resumes(requests);
    assert_eq!(resumed.len(), 1, "one resume: {requests:?}");
    let token = resumed[0]["lastEventId"].as_str().unwrap();
    assert_eq!(
        resumed[0]["lastTokenGiven"], token,
        "the SDK resumed from the last token it gave"
    );
    assert!(
        token.starts_with(&format!("{}.", kept.trim_start_matches("/streams/"))),
        "the token is a relay id of that stream: {token} in {kept}"
    );
    assert_eq!(resumed[0]["sessionId"], session);
    assert_eq!(resumed[0]["status"], 200);
    assert_eq!(
        resumed[0]["body"], "ended",
        "the resumed stream ended after the result"
    );
    let held = &resumed[0]["heldUntil"];
    assert_eq!(
        held["relayViewers"], 0,
        "the relay saw the cut as its viewer going away"
    );
    assert!(
        held["notificationsSent"].as_u64().unwrap() >= CUT_AFTER + 2,
        "notifications sent while no client was there reached it by the relay's replay: {held}"
    );
    assert_eq!(
        relayed["server"],
        json!({
            "toolCalls": 1,
            "notificationsSent": STEPS,
            "results": [{ "id": 1, "outcome": "sent" }]
        }),
        "the server saw one tools/call, and its result went out whole"
    );
    let streams = &relay.metrics.streams;
    assert_eq!(streams.resumed.get(ResumeOutcome::Followed).get(), 1);
    assert_eq!(
        streams.started.get(StartOutcome::Kept).get(),
        2,
        "initialize and tools/call"
    );

    // Straight to the server: the same cut, and nothing to resume from.
    let direct = run_client(&format!("http://{server}/mcp"), server, None).await;
    println!("straight to the server: {direct}");
    assert_eq!(direct["result"], Value::Null, "no result");
    assert!(
        direct["error"]
            .as_str()
            .is_some_and(|e| e.contains("Connection closed")),
        "the call ended only with the client: {direct}"
    );
    assert_eq!(direct["pendingAfterServerSettled"], true);
    let seen = direct["progress"].as_array().unwrap().len() as u64;
    assert!(
        (CUT_AFTER..STEPS).contains(&seen),
        "only the notifications before the cut: {seen}"
    );
    assert_eq!(
        direct["tokens"],
        json!([]),
        "no event ids: no resumption token"
    );
    let requests = direct["requests"].as_array().unwrap();
    assert_eq!(
        request(requests, |r| r["rpc"] == "tools/call")["body"],
        "cut"
    );
    assert!(resumes(requests).is_empty(), "the SDK could not resume");
    let server_saw = &direct["server"];
    assert_eq!(server_saw["toolCalls"], 1);
    assert_eq!(
        server_saw["notificationsSent"], STEPS,
        "the tool ran to its end"
    );
    let outcome = server_saw["results"][0]["outcome"].as_str().unwrap();
    assert!(
        outcome.contains("No connection established"),
        "the server's transport had nowhere to send the result: {outcome}"
    );
    relay.stop().await;
}

/// Starts `tests/mcp/server.mjs` on a free loopback port; its process and address, once it
/// says it listens.
fn start_server() -> (support::Child, SocketAddr) {
    let port = support::free_port();
    let log = support::temp_dir("mcp-server").join("stderr");
    let mut child = std::process::Command::new("node")
        .arg(format!("{MCP_DIR}/server.mjs"))
        .args(["--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("needs node (it runs tests/mcp/server.mjs)");
    let stdout = child.stdout.take().unwrap();
    let child = support::Child(child);
    // The first line comes once it listens (or the pipe closes when it dies), within WAIT.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(support::WAIT).unwrap_or_default();
    assert_eq!(
        serde_json::from_str::<Value>(&line).ok(),
        Some(json!({ "listening": port })),
        "server.mjs did not start: {line}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    (child, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Runs `tests/mcp/client.mjs` against `url` with the server's `/stats` at `server`; through
/// `relay`, it trusts the relay's dev certificate and watches its metrics. Its JSON report.
async fn run_client(url: &str, server: SocketAddr, relay: Option<&TestRelay>) -> Value {
    let mut command = tokio::process::Command::new("node");
    command
        .arg(format!("{MCP_DIR}/client.mjs"))
        .args(["--url", url])
        .args(["--stats", &format!("http://{server}/stats")])
        .args(["--steps", &STEPS.to_string()])
        .args(["--interval-ms", &INTERVAL_MS.to_string()])
        .args(["--cut-after", &CUT_AFTER.to_string()])
        .kill_on_drop(true);
    if let Some(relay) = relay {
        command.env("NODE_EXTRA_CA_CERTS", &relay.cert).args([
            "--relay-metrics",
            &format!("http://{}/metrics", relay.admin_addr),
        ]);
    }
    let output = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .expect("client.mjs ends")
        .expect("needs node (it runs tests/mcp/client.mjs)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "client.mjs failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("client.mjs prints a JSON report")
}

/// The one request of `requests` that `is` picks.
fn request(requests: &[Value], is: impl Fn(&Value) -> bool) -> &Value {
    let mut found = requests.iter().filter(|r| is(r));
    let one = found.next().expect("the request was made");
    assert!(found.next().is_none(), "made once: {requests:?}");
    one
}

/// The SDK's resumes: its `GET`s with `Last-Event-ID`.
fn resumes(requests: &[Value]) -> Vec<&Value> {
    requests
        .iter()
        .filter(|r| r["method"] == "GET" && !r["lastEventId"].is_null())
        .collect()
}
