//! The admin status page in a real browser: headless Chromium (playwright-core) loads `/`, the
//! figures appear and change as events flow; in cluster mode it shows the live peer set and
//! each topic's owner; behind the admin token it asks for the token, charts the last minutes a
//! point a second and tails a topic's events, never a per-user topic's (and writes the
//! screenshot docs/status-page.png).

mod per_user;
mod support;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use bytes::Bytes;
use sse_relay::config::{Config, RouteConfig};
use support::{eventually, temp_dir, TestOrigin, TestRelay};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "acceptance: needs chromium, node and `npm ci` in tests/browser; run with --include-ignored (CI does)"]
async fn status_page_shows_live_figures_in_chromium() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |_| {}).await;
    let _subscriber = relay.h2().await.subscribe("/events/prices", &[]).await;
    eventually("subscribed", || origin.open("prices") == 1).await;
    let report = page_report(&origin, &relay).await;
    assert_eq!(report["first"]["subscribers"], "1");
    assert_eq!(report["first"]["topics"], "1");
    assert_eq!(report["later"]["state"], "live");
    let first: u64 = report["first"]["eventsInTotal"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let later: u64 = report["later"]["eventsInTotal"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(later > first, "the events total moves: {first} → {later}");
    let row = &report["rows"][0];
    assert_eq!(row[0], "/events/prices");
    assert_eq!(row[1], "streaming");
    assert_eq!(row[2], "origin", "reads from");
    assert_eq!(
        report["cluster"],
        serde_json::Value::Null,
        "no peer set alone"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "acceptance: needs chromium, node and `npm ci` in tests/browser; run with --include-ignored (CI does)"]
async fn status_page_shows_the_peer_set_and_owners_in_cluster_mode() {
    let origin = TestOrigin::start().await;
    let dir = temp_dir("status-page-cluster");
    let pki = support::pki::pki(&dir, &["sse-relay-peer"]);
    let token = dir.join("token");
    std::fs::write(&token, "status-page-token\n").unwrap();
    let port = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 21), 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let peers = [
        SocketAddr::from(([127, 0, 0, 21], port)),
        SocketAddr::from(([127, 0, 0, 22], port)),
    ];
    let configure = |me: SocketAddr| {
        let (pki, token) = (&pki, &token);
        move |config: &mut Config| support::join_static_cluster(config, me, &peers, pki, token)
    };
    let relay = TestRelay::start(&origin, configure(peers[0])).await;
    let other = TestRelay::start(&origin, configure(peers[1])).await;
    eventually("both relays see both", || {
        [&relay, &other]
            .iter()
            .all(|r| r.metrics.cluster.peers_up.get() == 2)
    })
    .await;
    let _subscriber = relay.h2().await.subscribe("/events/prices", &[]).await;
    eventually("subscribed", || origin.open("prices") == 1).await;
    let owner = if relay.metrics.cluster.owned_topics.get() == 1 {
        peers[0]
    } else {
        peers[1]
    };
    let report = page_report(&origin, &relay).await;
    let cluster = &report["cluster"];
    assert_eq!(cluster["count"], "2 live of 2 known", "{report}");
    assert_eq!(
        cluster["peers"],
        serde_json::json!([format!("{} (this relay)", peers[0]), peers[1].to_string()]),
        "{report}"
    );
    let row = &report["rows"][0];
    assert_eq!(row[0], "/events/prices");
    let reads_from = if owner == peers[0] {
        "origin".to_string()
    } else {
        owner.to_string()
    };
    assert_eq!(row[2], reads_from.as_str(), "reads from: {report}");
    assert_eq!(row[3], owner.to_string().as_str(), "owner: {report}");
    other.stop().await;
    relay.stop().await;
}

/// Publishes to `prices` every 100 ms while `tests/browser/status_page.mjs` loads the status
/// page of `relay` in Chromium; its JSON report.
async fn page_report(origin: &TestOrigin, relay: &TestRelay) -> serde_json::Value {
    let browser_dir = browser_dir();
    let publisher = {
        let origin = origin.clone();
        tokio::spawn(async move {
            for i in 1..=600u32 {
                origin.publish("prices", &i.to_string(), "tick");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let output = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new("node")
            .arg(format!("{browser_dir}/status_page.mjs"))
            .args(["--url", &format!("http://{}/", relay.admin_addr)])
            .output(),
    )
    .await
    .expect("the script ends");
    publisher.abort();
    report_of("status_page.mjs", output)
}

/// `tests/browser`, checked to hold playwright-core, on a machine with Debian's Chromium.
fn browser_dir() -> &'static str {
    let browser_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    assert!(
        std::path::Path::new(browser_dir)
            .join("node_modules/playwright-core")
            .is_dir(),
        "needs playwright-core: run `npm ci` in tests/browser"
    );
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "needs chromium (apt-get install chromium)"
    );
    browser_dir
}

/// The JSON report the node script `script` printed, once it ended well.
fn report_of(script: &str, output: std::io::Result<std::process::Output>) -> serde_json::Value {
    let output = output.unwrap_or_else(|e| panic!("needs node (it runs {script}): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON report");
    println!("{script}: {report}");
    report
}

const ADMIN_TOKEN: &str = "window-admin-token";

/// The events published to the tailed topic once the page tails it: number and type (`t1`,
/// `live 1`, …).
const LIVE: [(u32, &str); 5] = [
    (1, "price"),
    (2, "note"),
    (3, "price"),
    (4, "price"),
    (5, "price"),
];

/// The `/topics` document of the admin listener at `admin`, read with the admin token.
async fn topics(admin: SocketAddr) -> serde_json::Value {
    let mut tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
    let request = format!(
        "GET /topics HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Connection: close\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body).unwrap()
}

/// An event of type `event_type` as the origin sends it.
fn typed(id: &str, event_type: &str, data: &str) -> Bytes {
    Bytes::from(format!("id: {id}\nevent: {event_type}\ndata: {data}\n\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "acceptance: needs chromium, node and `npm ci` in tests/browser; run with --include-ignored (CI does)"]
async fn status_page_asks_for_the_token_charts_the_last_minutes_and_tails_a_topic_in_chromium() {
    let origin = TestOrigin::start().await;
    let token = temp_dir("status-window").join("admin-token");
    std::fs::write(&token, format!("{ADMIN_TOKEN}\n")).unwrap();
    let template = origin.template();
    let relay = per_user::per_user_relay_with(&origin, |c| {
        c.routes.push(RouteConfig {
            path: "/events/{topic}".into(),
            upstream: template,
            ..RouteConfig::default()
        });
        c.admin.token_file = Some(token);
    })
    .await;
    let mut conn = relay.h2().await;
    let _prices = conn.subscribe("/events/prices", &[]).await;
    let _burst = conn.subscribe("/events/burst", &[]).await;
    let alice = per_user::bearer_of("alice@example.com");
    let _alice = conn
        .subscribe("/me/events", &[("authorization", &alice)])
        .await;
    eventually("three upstreams", || {
        origin.open("prices") == 1
            && origin.open("burst") == 1
            && origin.open("user-alice%40example.com") == 1
    })
    .await;
    // The recent past a tail shows first.
    for n in 1..=3 {
        origin.publish_raw(
            "prices",
            Some(&format!("p{n}")),
            typed(&format!("p{n}"), "price", &format!("past {n}")),
        );
    }
    eventually("the past is in the ring", || {
        relay.metrics.downstream.events_delivered.get() >= 3
    })
    .await;
    let doc = topics(relay.admin_addr).await;
    let key_of = |needle: &str| {
        doc["topics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["key"].as_str().unwrap().to_owned())
            .find(|k| k.contains(needle))
            .unwrap_or_else(|| panic!("no topic {needle} in {doc}"))
    };
    let (prices, personal) = (key_of("/sub/prices"), key_of("/sub/user-"));
    assert!(!personal.contains("alice"), "shown hashed: {personal}");

    let browser_dir = browser_dir();
    let screenshot = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/status-page.png");
    let page = tokio::process::Command::new("node")
        .arg(format!("{browser_dir}/status_page_window.mjs"))
        .args(["--url", &format!("http://{}/", relay.admin_addr)])
        .args([
            "--token",
            ADMIN_TOKEN,
            "--topic",
            &prices,
            "--private",
            &personal,
        ])
        .args([
            "--last-id",
            "t5",
            "--burst",
            "200",
            "--screenshot",
            screenshot,
        ])
        .kill_on_drop(true)
        .output();
    let publisher = async {
        // Once the page opened its tail (the only tail: counted apart from subscribers).
        eventually("the page tails a topic", || {
            relay.metrics.admin.tails.get() == 1
        })
        .await;
        assert_eq!(
            relay.metrics.hub.subscribers.get(),
            3,
            "a tail is no subscriber"
        );
        for (n, event_type) in LIVE {
            let id = format!("t{n}");
            origin.publish_raw(
                "prices",
                Some(&id),
                typed(&id, event_type, &format!("live {n}")),
            );
        }
        for n in 0..400 {
            origin.publish("burst", &format!("b{n}"), "burst");
        }
    };
    let (output, ()) = tokio::time::timeout(Duration::from_secs(100), async {
        tokio::join!(page, publisher)
    })
    .await
    .expect("the script ends");
    let report = report_of("status_page_window.mjs", output);

    // Without the token the page asked for it, and showed nothing; the data answered 401.
    assert_eq!(report["login"]["asked"], true, "{report}");
    assert_eq!(report["login"]["mainHidden"], true, "{report}");
    for (path, status) in report["login"]["statuses"].as_object().unwrap() {
        assert_eq!(status, 401, "{path} without the token");
    }
    assert_eq!(report["login"]["statuses"].as_object().unwrap().len(), 5);

    // A point a second: consecutive samples, exactly a second apart, each drawn.
    let charts = &report["charts"];
    let samples = charts["samples"].as_u64().unwrap();
    assert!(samples >= 4, "{charts}");
    let span = charts["lastMs"].as_u64().unwrap() - charts["firstMs"].as_u64().unwrap();
    assert_eq!(
        span,
        (samples - 1) * 1000,
        "a sample a second, none missing: {charts}"
    );
    assert_eq!(charts["deliveriesPoints"], samples, "{charts}");
    assert_eq!(charts["polylinePoints"], samples, "{charts}");
    assert_eq!(charts["figures"], 13, "one chart a figure: {charts}");
    // The burst shows in the deliveries chart, far above what came before.
    let before = charts["deliveriesMaxBefore"].as_f64().unwrap();
    let max = report["deliveriesMax"].as_f64().unwrap();
    assert!(
        before < 50.0 && max >= 200.0,
        "deliveries /s {before} → {max}"
    );

    // The per-user topic: listed as such, no tail, and the relay refuses to tail it.
    let personal_view = &report["personal"];
    let buttons = personal_view["tailButtons"].as_array().unwrap();
    assert!(buttons.contains(&prices.as_str().into()), "{report}");
    assert!(
        !buttons.contains(&personal.as_str().into()),
        "no tail: {report}"
    );
    assert_eq!(buttons.len(), 2, "prices and burst: {report}");
    assert_eq!(personal_view["row"][0], "/me/events (per-user)", "{report}");
    assert_eq!(personal_view["tailStatus"], 403, "{report}");
    assert_eq!(
        personal_view["tokenKept"], true,
        "the token is kept in the session"
    );

    // The tail: the ring's recent events, then those published, ids and data in order.
    let rows: Vec<(String, String, String)> = report["tailRows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let cell = |i: usize| r[i].as_str().unwrap().to_owned();
            (cell(0), cell(1), cell(4))
        })
        .collect();
    let mut expected: Vec<(String, String, String)> = (1..=3)
        .map(|n| (format!("p{n}"), "price".into(), format!("past {n}")))
        .collect();
    for (n, event_type) in LIVE {
        expected.push((format!("t{n}"), event_type.into(), format!("live {n}")));
    }
    assert_eq!(rows, expected, "{report}");
    assert_eq!(
        report["filtered"],
        serde_json::json!(vec!["price"; 7]),
        "the filter keeps one type"
    );
    assert!(std::path::Path::new(screenshot).is_file());
    relay.stop().await;
}
