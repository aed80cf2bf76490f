//! What the admin listener and the logs give away: a per-user topic (a route whose upstream
//! takes a `{jwt.*}` claim) is shown with the claim hashed in `/topics`, `/stats` and the log
//! lines of its topic, never in clear; with `admin.token_file` set, the paths that show data
//! need the token, while the status page (a static file that asks for it), `/metrics` and the
//! probes stay open.

mod per_user;
mod support;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use per_user::{bearer_of, per_user_relay, per_user_relay_with, sub_hash};
use sse_relay::config::Config;
use support::{eventually, TestOrigin, TestRelay};
use tokio::net::TcpStream;

/// A GET on the admin listener with `authorization` (if any): status, `WWW-Authenticate`
/// (empty without) and body.
async fn admin_get(
    addr: SocketAddr,
    path: &str,
    authorization: Option<&str>,
) -> (StatusCode, String, String) {
    let tcp = TcpStream::connect(addr).await.expect("connect admin");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    let mut request = Request::get(path).header("host", "localhost");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = send
        .send_request(request.body(Empty::<Bytes>::new()).unwrap())
        .await
        .expect("admin response");
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    if ["/stats", "/history/stream", "/tail"]
        .iter()
        .any(|stream| path.starts_with(stream))
        && status == StatusCode::OK
    {
        return (status, challenge, String::new());
    }
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        challenge,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// The keys `/topics` shows, sorted.
async fn shown_keys(relay: &TestRelay) -> Vec<String> {
    let (status, _, json) = admin_get(relay.admin_addr, "/topics", None).await;
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mut keys: Vec<String> = doc["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap().to_owned())
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_topics_are_shown_with_a_stable_hash_of_the_claim() {
    let origin = TestOrigin::start().await;
    let relay = per_user_relay(&origin).await;
    let (alice, bob) = (bearer_of("alice@example.com"), bearer_of("bob"));
    let mut conn = relay.h2().await;
    let _a = conn
        .subscribe("/me/events", &[("authorization", &alice)])
        .await;
    let _b = conn
        .subscribe("/me/events", &[("authorization", &bob)])
        .await;
    eventually("one upstream per user", || {
        origin.open("user-alice%40example.com") == 1 && origin.open("user-bob") == 1
    })
    .await;

    let keys = shown_keys(&relay).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in &keys {
        assert!(
            !key.contains("alice") && !key.contains("user-bob"),
            "no claim in clear: {key}"
        );
        assert!(
            key.contains(&format!("http://{}/sub/user-", origin.addr)),
            "{key}"
        );
    }
    let hashes: Vec<&str> = keys.iter().map(|k| sub_hash(k)).collect();
    assert_ne!(hashes[0], hashes[1], "two users, two hashes");

    // The same user again (another tab, a later look): the same hash.
    let _a2 = conn
        .subscribe("/me/events", &[("authorization", &alice)])
        .await;
    assert_eq!(shown_keys(&relay).await, keys);

    let mut stats = support::http_stream(relay.admin_addr, "/stats").await;
    let event = stats.next_event().await.expect("a stats event");
    let data = event.data.expect("stats carry data");
    assert!(
        !data.contains("alice") && !data.contains("user-bob"),
        "{data}"
    );
    for key in &keys {
        assert!(data.contains(&format!("{key:?}")), "{key} in {data}");
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_user_topic_a_peer_opened_is_shown_hashed_on_its_owner() {
    let origin = TestOrigin::start().await;
    let dir = support::temp_dir("admin-privacy-cluster");
    let pki = support::pki::pki(&dir, &["sse-relay-peer"]);
    let token = dir.join("token");
    std::fs::write(&token, "privacy-cluster-token\n").unwrap();
    let port = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 31), 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let peers = [
        SocketAddr::from(([127, 0, 0, 31], port)),
        SocketAddr::from(([127, 0, 0, 32], port)),
    ];
    let join = |me: SocketAddr| {
        let (pki, token) = (&pki, &token);
        move |c: &mut Config| support::join_static_cluster(c, me, &peers, pki, token)
    };
    let first = per_user_relay_with(&origin, join(peers[0])).await;
    let second = per_user_relay_with(&origin, join(peers[1])).await;
    eventually("both relays see both", || {
        [&first, &second]
            .iter()
            .all(|r| r.metrics.cluster.peers_up.get() == 2)
    })
    .await;

    // Users subscribe on the first relay until the second owns one of their topics: that
    // topic the second opened for its peer, from the key alone.
    let mut conn = first.h2().await;
    let mut tabs = Vec::new();
    for n in 0..32 {
        let bearer = bearer_of(&format!("user{n}@example.com"));
        tabs.push(
            conn.subscribe("/me/events", &[("authorization", &bearer)])
                .await,
        );
        let user = format!("user-user{n}%40example.com");
        eventually("subscribed upstream", || origin.open(&user) == 1).await;
        if second.metrics.hub.topics.get() > 0 {
            break;
        }
    }
    let keys = shown_keys(&second).await;
    assert_eq!(
        keys.len(),
        1,
        "the second relay opened one topic for its peer: {keys:?}"
    );
    assert!(
        !keys[0].contains("example.com"),
        "no claim in clear: {keys:?}"
    );
    sub_hash(&keys[0]);
    first.stop().await;
    second.stop().await;
}

/// A relay in front of `origin` whose admin token is `token`.
async fn relay_with_admin_token(origin: &TestOrigin, token: &str) -> TestRelay {
    let file = support::temp_dir("admin-token").join("token");
    std::fs::write(&file, token).unwrap();
    TestRelay::start(origin, |c| c.admin.token_file = Some(file)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_paths_that_show_data_need_it_and_the_page_and_probes_do_not() {
    let origin = TestOrigin::start().await;
    let relay = relay_with_admin_token(&origin, "  admin-s3cret\n").await;
    let admin = relay.admin_addr;
    let _subscriber = relay.h2().await.subscribe("/events/prices", &[]).await;
    eventually("subscribed", || origin.open("prices") == 1).await;
    let (_, _, topics) = admin_get(admin, "/topics", Some("Bearer admin-s3cret")).await;
    let doc: serde_json::Value = serde_json::from_str(&topics).unwrap();
    let key = doc["topics"][0]["key"].as_str().unwrap().to_owned();
    let encoded: String = form_urlencoded::byte_serialize(key.as_bytes()).collect();
    let tail = format!("/tail?topic={encoded}");
    for path in ["/topics", "/stats", "/history", "/history/stream", &tail] {
        let (status, challenge, _) = admin_get(admin, path, None).await;
        assert_eq!(status, 401, "{path} without a token");
        assert_eq!(challenge, "Bearer realm=\"sse-relay admin\"", "{path}");
        for wrong in [
            "Bearer admin-s3cre",
            "Bearer admin-s3cret2",
            "Basic YWRtaW4=",
        ] {
            let (status, challenge, _) = admin_get(admin, path, Some(wrong)).await;
            assert_eq!(status, 401, "{path} with {wrong}");
            assert!(challenge.starts_with("Bearer"), "{path}: {challenge}");
        }
        let (status, _, _) = admin_get(admin, path, Some("Bearer admin-s3cret")).await;
        assert_eq!(status, 200, "{path} with the token");
    }
    for path in ["/metrics", "/healthz", "/readyz", "/"] {
        let (status, _, _) = admin_get(admin, path, None).await;
        assert_eq!(status, 200, "{path} stays open");
    }
    // The page is the same static file for anyone: no topic, no figure in it.
    let (_, _, page) = admin_get(admin, "/", None).await;
    assert!(!page.contains("prices") && !page.contains(&origin.addr.to_string()));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_every_admin_path_is_open() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |_| {}).await;
    for path in [
        "/topics",
        "/stats",
        "/history",
        "/history/stream",
        "/",
        "/metrics",
        "/healthz",
    ] {
        let (status, _, _) = admin_get(relay.admin_addr, path, None).await;
        assert_eq!(status, 200, "{path}");
    }
    relay.stop().await;
}
