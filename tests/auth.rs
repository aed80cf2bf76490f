//! Authorization on every subscribe and resume: JWTs (bearer or cookie, pinned algorithms,
//! `exp` required, `subscribe` patterns on the canonical path), tokens refused in the query,
//! bypass attempts through encodings denied, streams ended when their token expires, and
//! credentials never forwarded to the origin.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use sse_relay::config::{AuthMode, JwtConfig};
use sse_relay::edge::DenialKind;
use support::{eventually, TestOrigin, TestRelay};

const SECRET: &[u8] = b"an-hs256-test-secret-of-32-bytes-or-more";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(alg: Algorithm, key: &EncodingKey, claims: serde_json::Value) -> String {
    encode(&Header::new(alg), &claims, key).unwrap()
}

fn hs256(claims: serde_json::Value) -> String {
    token(Algorithm::HS256, &EncodingKey::from_secret(SECRET), claims)
}

fn grant(patterns: &[&str], ttl_secs: u64) -> serde_json::Value {
    serde_json::json!({ "exp": now() + ttl_secs, "subscribe": patterns, "iss": "https://auth.example", "aud": "sse-relay" })
}

/// `[auth.jwt]` for HS256 tokens signed with [`SECRET`] by `https://auth.example` for
/// `sse-relay`.
fn hs256_auth() -> JwtConfig {
    let secret = support::temp_dir("jwt").join("jwt.key");
    std::fs::write(&secret, SECRET).unwrap();
    JwtConfig {
        secret_file: Some(secret),
        issuer: Some("https://auth.example".into()),
        audience: Some("sse-relay".into()),
        ..support::jwt_config(&["HS256"])
    }
}

/// A relay whose route takes subscribers with a JWT verified by `jwt`.
async fn jwt_relay(origin: &TestOrigin, jwt: JwtConfig) -> TestRelay {
    TestRelay::start(origin, |c| {
        c.routes[0].auth = AuthMode::Jwt;
        c.auth.jwt = Some(jwt);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_from_bearer_or_cookie_grants_matching_topics_only() {
    let origin = TestOrigin::start().await;
    let relay = jwt_relay(&origin, hs256_auth()).await;
    let mut conn = relay.h2().await;
    let good = hs256(grant(&["/events/stock-*"], 3600));
    let bearer = format!("Bearer {good}");
    let cookie = format!("theme=dark; sse_token={good}");

    let mut by_header = conn
        .subscribe("/events/stock-acme", &[("authorization", &bearer)])
        .await;
    let mut by_cookie = conn
        .subscribe("/events/stock-acme", &[("cookie", &cookie)])
        .await;
    assert_eq!(
        (by_header.status.as_u16(), by_cookie.status.as_u16()),
        (200, 200)
    );
    eventually("subscribed", || origin.open("stock-acme") == 1).await;
    origin.publish("stock-acme", "1", "up");
    assert_eq!(by_header.data(1).await, ["up"]);
    assert_eq!(by_cookie.data(1).await, ["up"]);

    let status = |r: &support::EventReader| r.status.as_u16();
    let other = conn
        .subscribe("/events/bond-x", &[("authorization", &bearer)])
        .await;
    assert_eq!(status(&other), 403, "valid token, topic not granted");
    let none = conn.subscribe("/events/stock-acme", &[]).await;
    assert_eq!(status(&none), 401);
    assert!(none.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let in_query = conn
        .subscribe(&format!("/events/stock-acme?access_token={good}"), &[])
        .await;
    assert_eq!(status(&in_query), 401, "never from the query string");

    let rejected = [
        (
            "expired",
            hs256(
                serde_json::json!({"exp": now() - 3600, "subscribe": ["/events/*"], "iss": "https://auth.example", "aud": "sse-relay"}),
            ),
        ),
        (
            "no exp",
            hs256(
                serde_json::json!({"subscribe": ["/events/*"], "iss": "https://auth.example", "aud": "sse-relay"}),
            ),
        ),
        (
            "wrong issuer",
            hs256(
                serde_json::json!({"exp": now() + 60, "subscribe": ["/events/*"], "iss": "https://evil", "aud": "sse-relay"}),
            ),
        ),
        (
            "wrong audience",
            hs256(
                serde_json::json!({"exp": now() + 60, "subscribe": ["/events/*"], "iss": "https://auth.example", "aud": "other"}),
            ),
        ),
        (
            "other algorithm",
            token(
                Algorithm::HS384,
                &EncodingKey::from_secret(SECRET),
                grant(&["/events/*"], 60),
            ),
        ),
        (
            "other secret",
            token(
                Algorithm::HS256,
                &EncodingKey::from_secret(b"another-secret-another-secret-xx"),
                grant(&["/events/*"], 60),
            ),
        ),
        (
            "not yet valid",
            hs256(
                serde_json::json!({"exp": now() + 7200, "nbf": now() + 3600, "subscribe": ["/events/*"], "iss": "https://auth.example", "aud": "sse-relay"}),
            ),
        ),
        ("garbage", "not.a.jwt".to_string()),
    ];
    for (what, bad) in rejected {
        let r = conn
            .subscribe(
                "/events/stock-acme",
                &[("authorization", &format!("Bearer {bad}"))],
            )
            .await;
        assert_eq!(status(&r), 401, "{what}");
    }
    assert_eq!(origin.requests("bond-x").len(), 0);
    assert!(
        relay
            .metrics
            .edge
            .auth_denied
            .get(DenialKind::Unauthorized)
            .get()
            >= 10
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoding_tricks_never_reach_an_ungranted_topic() {
    let origin = TestOrigin::start().await;
    let relay = jwt_relay(&origin, hs256_auth()).await;
    let mut conn = relay.h2().await;
    let bearer = format!("Bearer {}", hs256(grant(&["/events/stock-*"], 3600)));
    let attempts = [
        "/events/%62ond-x",
        "/events/stock-a%2F..%2Fbond-x",
        "/events/stock-a%2f%2e%2e%2fbond-x",
        "/events/stock-a/../bond-x",
        "/events/%2e%2e/events/bond-x",
        "/events//bond-x",
        "//events/bond-x",
        "/events/./bond-x",
        "/EVENTS/bond-x",
        "/events/bond-x/",
        "/events/bond-x?x=/events/stock-a",
        "/events/Bond-x",
    ];
    for path in attempts {
        let r = conn.subscribe(path, &[("authorization", &bearer)]).await;
        assert_ne!(r.status, 200, "{path} must be denied");
    }
    // The canonical form of an allowed topic still works, however it is encoded.
    let ok = conn
        .subscribe("/events/stock-%61cme", &[("authorization", &bearer)])
        .await;
    assert_eq!(ok.status, 200);
    eventually("subscribed", || origin.open("stock-acme") == 1).await;
    for topic in ["bond-x", "Bond-x", ".."] {
        assert!(
            origin.requests(topic).is_empty(),
            "{topic} reached the origin"
        );
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_ends_with_a_retry_hint_when_its_token_expires() {
    let origin = TestOrigin::start().await;
    let relay = jwt_relay(
        &origin,
        JwtConfig {
            clock_skew_ms: 0,
            ..hs256_auth()
        },
    )
    .await;
    let mut conn = relay.h2().await;
    let short = hs256(grant(&["/events/*"], 2));
    let mut r = conn
        .subscribe(
            "/events/a",
            &[("authorization", &format!("Bearer {short}"))],
        )
        .await;
    assert_eq!(r.status, 200);
    eventually("subscribed", || origin.open("a") == 1).await;
    origin.publish("a", "1", "before expiry");
    assert_eq!(r.data(1).await, ["before expiry"]);
    r.until_end().await;
    assert!(String::from_utf8_lossy(&r.raw).ends_with("retry: 2000\n\n"));
    // The client reconnects with a fresh token and resumes.
    let fresh = hs256(grant(&["/events/*"], 3600));
    let mut again = conn
        .subscribe(
            "/events/a",
            &[
                ("authorization", &format!("Bearer {fresh}")),
                ("last-event-id", "1"),
            ],
        )
        .await;
    origin.publish("a", "2", "after");
    assert_eq!(again.data(1).await, ["after"]);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_tokens_verify_with_a_public_key_file() {
    let origin = TestOrigin::start().await;
    let dir = support::temp_dir("es256");
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let public = dir.join("jwt.pub");
    std::fs::write(&public, pair.public_key_pem()).unwrap();
    let relay = jwt_relay(
        &origin,
        JwtConfig {
            public_key_file: Some(public),
            ..support::jwt_config(&["ES256"])
        },
    )
    .await;
    let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    let jwt = token(
        Algorithm::ES256,
        &key,
        serde_json::json!({"exp": now() + 60, "subscribe": ["/events/a"]}),
    );
    let mut conn = relay.h2().await;
    let ok = conn
        .subscribe("/events/a", &[("authorization", &format!("Bearer {jwt}"))])
        .await;
    assert_eq!(ok.status, 200);
    let hs = hs256(grant(&["/events/a"], 60));
    let refused = conn
        .subscribe("/events/a", &[("authorization", &format!("Bearer {hs}"))])
        .await;
    assert_eq!(refused.status, 401, "algorithm pinned to ES256");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_of_authorized_clients_never_reach_the_origin() {
    let origin = TestOrigin::start().await;
    let relay = jwt_relay(&origin, hs256_auth()).await;
    let jwt = hs256(grant(&["/events/*"], 3600));
    let _r = relay
        .h2()
        .await
        .subscribe(
            "/events/a",
            &[
                ("authorization", &format!("Bearer {jwt}")),
                ("cookie", &format!("sse_token={jwt}")),
            ],
        )
        .await;
    eventually("subscribed", || origin.open("a") == 1).await;
    let seen = &origin.requests("a")[0].headers;
    assert!(seen.get("authorization").is_none() && seen.get("cookie").is_none());
    assert!(!format!("{seen:?}").contains(&jwt));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_route_with_query_params_the_token_must_name_the_query() {
    let origin = TestOrigin::start().await;
    let relay = TestRelay::start(&origin, |c| {
        c.routes[0].query_params = vec!["room".into()];
        c.routes[0].auth = AuthMode::Jwt;
        c.auth.jwt = Some(hs256_auth());
    })
    .await;
    let conn = relay.h2().await;
    let status = |token: String, path: &'static str| {
        let mut conn = conn.clone();
        async move {
            conn.subscribe(path, &[("authorization", &format!("Bearer {token}"))])
                .await
                .status
                .as_u16()
        }
    };
    let path_only = hs256(grant(&["/events/x"], 60));
    assert_eq!(status(path_only.clone(), "/events/x").await, 200);
    assert_eq!(
        status(path_only, "/events/x?room=private").await,
        403,
        "a grant of the path alone does not open a query-keyed topic"
    );
    let team = hs256(grant(&["/events/x?room=team-*"], 60));
    assert_eq!(status(team.clone(), "/events/x?room=team-a").await, 200);
    assert_eq!(status(team, "/events/x?room=private").await, 403);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_claims_in_the_upstream_give_each_user_their_own_topic() {
    let origin = TestOrigin::start().await;
    let jwt = hs256_auth();
    let relay = TestRelay::start_with(
        &format!("http://{}/sub/user-{{jwt.sub}}", origin.addr),
        |c| {
            c.routes[0].path = "/me/events".into();
            c.routes[0].auth = AuthMode::Jwt;
            c.auth.jwt = Some(jwt);
        },
    )
    .await;
    let token_of = |sub: &str| {
        let mut claims = grant(&["/me/events"], 600);
        claims["sub"] = sub.into();
        format!("Bearer {}", hs256(claims))
    };
    let (alice, bob) = (token_of("alice"), token_of("bob/../x"));
    let mut conn = relay.h2().await;
    let mut alice_tabs = [
        conn.subscribe("/me/events", &[("authorization", &alice)])
            .await,
        conn.subscribe("/me/events", &[("authorization", &alice)])
            .await,
    ];
    let mut bob_tab = conn
        .subscribe("/me/events", &[("authorization", &bob)])
        .await;
    eventually("one upstream per user", || {
        origin.open("user-alice") == 1 && origin.open("user-bob%2F..%2Fx") == 1
    })
    .await;
    assert_eq!(
        relay.metrics.hub.topics.get(),
        2,
        "two users, two topics, three tabs"
    );
    origin.publish("user-alice", "1", "for alice");
    origin.publish("user-bob%2F..%2Fx", "1", "for bob");
    for tab in &mut alice_tabs {
        assert_eq!(tab.data(1).await, ["for alice"]);
    }
    assert_eq!(
        bob_tab.data(1).await,
        ["for bob"],
        "bob never sees alice's stream"
    );

    let no_sub = format!("Bearer {}", hs256(grant(&["/me/events"], 600)));
    let refused = conn.get("/me/events", &[("authorization", &no_sub)]).await;
    assert_eq!(
        refused.status(),
        403,
        "a token without the claim gets no topic"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_that_are_dot_segments_or_empty_get_no_topic() {
    let origin = TestOrigin::start().await;
    let jwt = hs256_auth();
    let relay = TestRelay::start_with(
        &format!("http://{}/sub/{{jwt.sub}}/feed", origin.addr),
        |c| {
            c.routes[0].path = "/me/events".into();
            c.routes[0].auth = AuthMode::Jwt;
            c.auth.jwt = Some(jwt);
        },
    )
    .await;
    let mut conn = relay.h2().await;
    for sub in ["..", ".", ""] {
        let mut claims = grant(&["/me/events"], 600);
        claims["sub"] = sub.into();
        let bearer = format!("Bearer {}", hs256(claims));
        let refused = conn.get("/me/events", &[("authorization", &bearer)]).await;
        assert_eq!(refused.status(), 403, "sub = {sub:?}");
    }
    assert_eq!(
        relay
            .metrics
            .edge
            .rejected
            .get(sse_relay::edge::RejectReason::Claim)
            .get(),
        3
    );
    assert_eq!(relay.metrics.hub.topics.get(), 0, "no topic was opened");
    relay.stop().await;
}
