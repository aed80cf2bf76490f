//! At start the relay raises its soft file-descriptor limit to the hard one, and knows when the
//! caps can open more descriptors than that; when descriptors run short, new topics are refused
//! while clients of the open topics are still accepted. Its own test binary, as it changes the
//! process's limit.

// `rlim_t` is `u64` on Linux but not on every platform `libc` serves: the casts stay.
#![allow(clippy::unnecessary_cast)]

mod support;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use sse_relay::app::fds;
use support::{eventually, free_port, http_get, sample, Child, H2Client, TestOrigin, WAIT};
use tokio::sync::Mutex;

/// Held by a test that lowers this process's limit, and by one that needs its descriptors.
static LIMIT: Mutex<()> = Mutex::const_new(());

#[test]
fn the_soft_descriptor_limit_is_raised_to_the_hard_one() {
    let _limit = LIMIT.blocking_lock();
    let (_, hard) = fds::limits().expect("getrlimit");
    let low = hard.min(256);
    let lowered = libc::rlimit {
        rlim_cur: low as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: a valid `rlimit`, lowering only the soft limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
    assert_eq!(fds::limits().unwrap().0, low);
    assert_eq!(fds::prepare(10, 10), Some(hard));
    assert_eq!(fds::limits().unwrap(), (hard, hard), "soft raised to hard");
}

#[test]
fn the_default_caps_need_more_than_twenty_thousand_descriptors() {
    assert_eq!(fds::needed(10_000, 10_000), 20_000 + fds::RESERVE as u64);
    assert!(fds::needed(10_000, 10_000) > 20_000);
}

/// Starts the relay binary in front of `origin` under a hard and soft `RLIMIT_NOFILE` of
/// `limit`, on the default caps (10,000 connections and topics: far above the limit); returns
/// it with its dev certificate's path.
fn relay_under_limit(
    origin: &TestOrigin,
    limit: u64,
    relay: u16,
    admin: u16,
) -> (Child, std::path::PathBuf) {
    let dir = support::temp_dir("fd-reserve");
    let config = dir.join("relay.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{relay}\"\ndev_cert_dir = {:?}\n\
             [admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [[route]]\npath = \"/events/{{topic}}\"\nupstream = \"{}\"\n",
            dir.display().to_string(),
            origin.template(),
        ),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_sse-relay"));
    command
        .args(["--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only `setrlimit`, async-signal-safe, runs between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let low = libc::rlimit {
                rlim_cur: limit as libc::rlim_t,
                rlim_max: limit as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &low) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = Child(command.spawn().expect("binary starts"));
    (child, dir.join("cert.pem"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_descriptors_run_short_new_topics_are_refused_and_open_topics_still_served() {
    let _limit = LIMIT.lock().await;
    let origin = TestOrigin::start().await;
    let (relay_port, admin_port) = (free_port(), free_port());
    let (_relay, cert) = relay_under_limit(&origin, 256, relay_port, admin_port);
    let relay = std::net::SocketAddr::from(([127, 0, 0, 1], relay_port));
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], admin_port));
    eventually("the relay listens", || {
        std::net::TcpStream::connect(relay).is_ok() && cert.exists()
    })
    .await;
    // One connection opens topics far past what 256 descriptors can hold.
    let mut greedy = H2Client::connect(relay, &cert, None).await;
    let mut streams = Vec::new();
    for i in 0..250 {
        streams.push(greedy.subscribe(&format!("/events/t{i}"), &[]).await);
    }
    let refused = "sse_relay_topics_refused_total{reason=\"descriptors\"}";
    let metrics = http_get(admin, "/metrics").await.1;
    assert!(sample(&metrics, refused).unwrap_or(0.0) > 0.0, "{metrics}");
    let open = sample(&metrics, "sse_relay_topics").unwrap();
    assert!(
        (200.0..=231.0).contains(&open),
        "256 less a reserve of 25: {open}"
    );
    // A new client of an open topic is still accepted, and served.
    let served = async {
        let mut late = H2Client::connect(relay, &cert, None).await;
        let mut reader = late.subscribe("/events/t0", &[]).await;
        origin.publish("t0", "1", "still served");
        reader.data(1).await
    };
    let data = tokio::time::timeout(WAIT, served).await;
    assert_eq!(
        data.expect("a client of an open topic gets an answer"),
        ["still served"]
    );
    drop(streams);
}
