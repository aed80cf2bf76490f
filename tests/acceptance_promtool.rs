//! A live scrape of `/metrics` passes `promtool check metrics` (Debian's `prometheus` package):
//! names, types, help texts and histogram shapes follow Prometheus conventions.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::{eventually, http_get, TestOrigin, TestRelay};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "acceptance: needs promtool (apt-get install prometheus); run with --include-ignored (CI does)"]
async fn live_scrape_passes_promtool_check_metrics() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |_| {}).await;
    let mut conn = relay.h2().await;
    let mut stream = conn.subscribe("/events/a", &[]).await;
    let _h1 = relay.h1().await.subscribe("/events/b", &[]).await;
    eventually("subscribed", || origin.open("a") == 1).await;
    origin.publish("a", "1", "x");
    stream.data(1).await;
    let (status, scrape) = http_get(relay.admin_addr, "/metrics").await;
    assert_eq!(status, 200);

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("needs promtool (apt-get install prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{said}"
    );
    assert!(said.trim().is_empty(), "promtool has remarks:\n{said}");
    relay.stop().await;
}
