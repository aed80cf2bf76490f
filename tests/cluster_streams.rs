//! Request streams in a cluster: a stream started at one relay is resumed at another (its id
//! names the relay that holds it; the other follows it over the peer link), exactly once, and
//! still after the holder started draining.

mod support;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;

use sse_relay::config::StreamRouteConfig;
use support::answers::{location, post, AnswerOrigin};
use support::pki::Pki;
use support::{eventually, temp_dir, TestRelay};

/// Two peer addresses on 127.0.0.21–22 with one port free on the first.
fn peer_addresses() -> [SocketAddr; 2] {
    let port = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 21), 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    [21, 22].map(|last| SocketAddr::from(([127, 0, 0, last], port)))
}

/// A relay of a two-relay cluster at `me` with a stream route to `origin`.
async fn relay(
    origin: &AnswerOrigin,
    me: SocketAddr,
    peers: &[SocketAddr],
    (pki, token): (&Pki, &Path),
) -> TestRelay {
    let upstream = origin.url("/v1/chat/completions");
    TestRelay::start_with("http://127.0.0.1:9/sub/{topic}", |config| {
        support::join_static_cluster(config, me, peers, pki, token);
        config.stream_routes.push(StreamRouteConfig {
            path: "/v1/chat/completions".into(),
            upstream,
            resume_path: "/streams/{stream}".into(),
            protocol: Default::default(),
            on_disconnect: Default::default(),
            auth: Default::default(),
        });
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_started_at_one_relay_is_followed_at_another_also_while_the_first_drains() {
    let origin = AnswerOrigin::start().await;
    let peers = peer_addresses();
    let dir = temp_dir("stream-cluster");
    let pki = support::pki::pki(&dir, &["sse-relay-peer"]);
    let token = dir.join("token");
    std::fs::write(&token, "stream-peer-token\n").unwrap();
    let mut a = relay(&origin, peers[0], &peers, (&pki, &token)).await;
    let b = relay(&origin, peers[1], &peers, (&pki, &token)).await;
    let mut client = a.h2().await;
    let mut started = post(&mut client, "/v1/chat/completions").await;
    let url = location(&started);
    assert!(
        url.contains('~'),
        "the id names the relay holding it: {url}"
    );
    let answer = origin.next_answer().await;
    for n in 1..=3 {
        answer.send(&format!("data: chunk {n}\n\n")).await;
    }
    let mut last = None;
    for _ in 1..=3 {
        last = started.next_event().await.unwrap().id;
    }
    let last = last.expect("a relay id");
    drop(started);
    drop(client);
    let mut at_b = b.h2().await;
    let mut moved = at_b.subscribe(&url, &[("last-event-id", &last)]).await;
    assert_eq!(moved.status, http::StatusCode::OK);
    answer.send("data: chunk 4\n\n").await;
    assert_eq!(
        moved.data(1).await,
        ["chunk 4"],
        "followed from relay A, after its last id"
    );
    a.signal_shutdown();
    eventually("relay A drains", || a.metrics.hub.draining.get() == 1).await;
    answer.send("data: chunk 5\n\n").await;
    assert_eq!(
        moved.data(1).await,
        ["chunk 5"],
        "kept while relay A drains"
    );
    let mut late = b.h2().await;
    let mut joined = late.subscribe(&url, &[("last-event-id", &last)]).await;
    assert_eq!(
        joined.data(2).await,
        ["chunk 4", "chunk 5"],
        "a resume after A began draining"
    );
    answer.send("data: chunk 6\n\n").await;
    answer.end();
    assert_eq!(moved.data(1).await, ["chunk 6"]);
    assert!(
        moved.next_event().await.is_none(),
        "then the end, each event once"
    );
    assert_eq!(joined.data(1).await, ["chunk 6"]);
    assert!(joined.next_event().await.is_none());
    assert_eq!(origin.posts(), 1);
    a.stop().await;
    b.stop().await;
}
