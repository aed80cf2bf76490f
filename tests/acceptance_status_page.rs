//! The admin status page in a real browser: headless Chromium (playwright-core) loads `/`, the
//! figures appear and change as events flow.

mod support;

use std::time::Duration;

use support::{eventually, TestOrigin, TestRelay};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "acceptance: needs chromium, node and `npm ci` in tests/browser; run with --include-ignored (CI does)"]
async fn status_page_shows_live_figures_in_chromium() {
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
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |_| {}).await;
    let _subscriber = relay.h2().await.subscribe("/events/prices", &[]).await;
    eventually("subscribed", || origin.open("prices") == 1).await;
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
    relay.stop().await;
}
