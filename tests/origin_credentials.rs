//! Credentials toward the origin (issue 11 item 3): a route's `[route.upstream_headers]`
//! (literals, and files re-read when they change) and `[upstream] client_cert_file` /
//! `client_key_file` (mutual TLS), while client credentials still never reach the shared
//! upstream.

mod support;

use sse_relay::config::HeaderSetting;
use sse_relay::upstream::Failure;
use support::{eventually, TestOrigin, TestRelay};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_headers_reach_the_origin_and_a_rotated_file_takes_effect_on_reconnect() {
    let dir = support::temp_dir("origin-headers");
    let secret = dir.join("origin-auth");
    std::fs::write(&secret, "Bearer service-one\n").unwrap();
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |c| {
        c.upstream.backoff_min_ms = 10;
        c.upstream.backoff_max_ms = 50;
        let headers = &mut c.routes[0].upstream_headers;
        headers.insert("X-Api-Key".into(), HeaderSetting::Literal("k-123".into()));
        headers.insert(
            "Authorization".into(),
            HeaderSetting::File {
                file: secret.clone(),
            },
        );
    })
    .await;
    let client_credentials = [
        ("authorization", "Bearer a-users-own-token"),
        ("cookie", "session=users-own"),
    ];
    let mut r = relay
        .h2()
        .await
        .subscribe("/events/a", &client_credentials)
        .await;
    eventually("streaming", || origin.open("a") == 1).await;
    let seen = &origin.requests("a")[0].headers;
    assert_eq!(seen["x-api-key"], "k-123");
    assert_eq!(
        seen["authorization"], "Bearer service-one",
        "trimmed file value"
    );
    assert!(
        seen.get("cookie").is_none(),
        "client cookies stay downstream"
    );

    // A rotated Secret: a new file renamed over the old one.
    let next = dir.join("origin-auth.next");
    std::fs::write(&next, "Bearer service-two").unwrap();
    std::fs::rename(&next, &secret).unwrap();
    origin.cut("a", "");
    eventually("reconnected", || origin.requests("a").len() == 2).await;
    assert_eq!(
        origin.requests("a")[1].headers["authorization"],
        "Bearer service-two"
    );
    origin.publish("a", "1", "still flowing");
    assert_eq!(r.data(1).await, ["still flowing"]);

    // Gone at run time: the previous value is sent, warned about and counted.
    std::fs::remove_file(&secret).unwrap();
    origin.cut("a", "");
    eventually("reconnected", || origin.requests("a").len() == 3).await;
    assert_eq!(
        origin.requests("a")[2].headers["authorization"],
        "Bearer service-two"
    );
    assert!(relay.metrics.upstream.credential_errors.get() >= 1);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_requires_a_client_certificate_is_reached_with_one() {
    let dir = support::temp_dir("origin-mtls");
    let origin = TestOrigin::start_mtls(&dir).await;
    let ca = dir.join("cert.pem");
    let relay = TestRelay::start_with(&origin.tls_template(), |c| {
        c.upstream.extra_ca_file = Some(ca.clone());
        c.upstream.client_cert_file = Some(dir.join("client.pem"));
        c.upstream.client_key_file = Some(dir.join("client.key"));
    })
    .await;
    let mut r = relay.h2().await.subscribe("/events/a", &[]).await;
    eventually("streaming over mutual TLS", || origin.open("a") == 1).await;
    origin.publish("a", "1", "mutual");
    assert_eq!(r.data(1).await, ["mutual"]);
    relay.stop().await;

    // Without the client certificate the same origin refuses the handshake.
    let relay = TestRelay::start_with(&origin.tls_template(), |c| {
        c.upstream.extra_ca_file = Some(ca.clone());
        c.upstream.backoff_min_ms = 10;
        c.upstream.backoff_max_ms = 50;
    })
    .await;
    let _r = relay.h2().await.subscribe("/events/b", &[]).await;
    eventually("handshakes refused", || {
        relay.metrics.upstream.failures.get(Failure::Connect).get() >= 2
    })
    .await;
    assert!(origin.requests("b").is_empty());
    relay.stop().await;
}
