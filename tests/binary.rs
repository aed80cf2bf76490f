//! The binary end to end, as README command 1 runs it: the built-in demo origin behind the
//! relay with a generated dev certificate, an h2 client over TLS trusting that certificate, and
//! SIGTERM draining to exit code 0; also an environment override and JSON logs.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{free_port, Child, H2Client, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_relay_serves_h2_events_and_drains_on_sigterm() {
    let dir = support::temp_dir("binary");
    let (relay_port, demo_port) = (free_port(), free_port());
    let config = dir.join("relay.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:1\"\ndev_cert_dir = {:?}\n\
             drain_delay_ms = 0\ndrain_window_ms = 200\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [[route]]\npath = \"/events/{{topic}}\"\nupstream = \"http://127.0.0.1:{demo_port}/sub/{{topic}}\"\n\
             [demo_origin]\nenabled = true\nlisten = \"127.0.0.1:{demo_port}\"\n",
            dir.display().to_string()
        ),
    )
    .unwrap();
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_sse-relay"))
            .args(["--config", config.to_str().unwrap()])
            .env("SSE_RELAY_LOG", "info")
            .env("SSE_RELAY_LOG_FORMAT", "json")
            // The config says port 1; the environment override wins.
            .env(
                "SSE_RELAY__SERVER__LISTEN",
                format!("127.0.0.1:{relay_port}"),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("binary starts"),
    );
    // It prints ready-to-paste commands naming the certificate path.
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let cert = dir.join("cert.pem");
    let mut printed = Vec::new();
    while !printed.iter().any(|l: &String| l.contains("--cacert")) {
        printed.push(rx.recv_timeout(WAIT).expect("prints the curl commands"));
    }
    let all = printed.join("\n");
    let logs: Vec<serde_json::Value> = printed
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        logs.iter()
            .any(|l| l["fields"]["message"] == "listening (TLS; ALPN h2, http/1.1)"),
        "JSON log lines: {all}"
    );
    assert!(all.contains("DEV CERTIFICATE"), "{all}");
    assert!(
        all.contains(&format!("--cacert {}", cert.display())),
        "{all}"
    );
    assert!(all.contains(&format!(
        "curl --http2 -k -N https://localhost:{relay_port}/events/clock"
    )));

    let addr = format!("127.0.0.1:{relay_port}").parse().unwrap();
    let mut conn = H2Client::connect(addr, &cert, None).await;
    let mut clock = conn.subscribe("/events/clock", &[]).await;
    let mut ticker = conn.subscribe("/events/ticker", &[]).await;
    let first = clock.next_event().await.expect("a clock event");
    assert_eq!(first.event_type.as_deref(), Some("clock"));
    assert!(first.id.is_some());
    let tick = ticker.next_event().await.expect("a ticker event");
    assert!(tick.data.unwrap().contains("price"));

    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    clock.until_end().await;
    assert!(String::from_utf8_lossy(&clock.raw).ends_with("retry: 2000\n\n"));
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "exits after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "drained and exited 0");
}
