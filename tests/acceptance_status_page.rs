//! The admin status page in a real browser: headless Chromium (playwright-core) loads `/`, the
//! figures appear and change as events flow; in cluster mode it shows the live peer set and
//! each topic's owner.

mod support;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use sse_relay::config::Config;
use support::{eventually, temp_dir, TestOrigin, TestRelay};

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
    .expect("the script ends")
    .expect("needs node (it runs tests/browser/status_page.mjs)");
    publisher.abort();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON report");
    println!("status page: {report}");
    report
}
