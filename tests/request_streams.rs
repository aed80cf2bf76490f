//! Request streams: a POST on a `[[stream_route]]` answered with an event stream becomes a
//! stream the relay keeps, resumable at its `Content-Location` after the client went away,
//! shared by viewers, cancellable; all against a real in-process origin over real TLS.

mod support;

use http::{Method, StatusCode};
use sse_relay::config::{AuthMode, Config, JwtConfig, StreamRouteConfig};
use sse_relay::edge::streams::{CancelledBy, OnDisconnect, StartOutcome, StreamProtocol};
use support::answers::{location, post, post_with, AnswerOrigin};
use support::{eventually, http_get, sample, TestRelay};

/// A relay with one stream route `/v1/chat/completions` → `origin`, after `configure`.
async fn relay(origin: &AnswerOrigin, configure: impl FnOnce(&mut Config)) -> TestRelay {
    let upstream = origin.url("/v1/chat/completions");
    TestRelay::start_with("http://127.0.0.1:9/sub/{topic}", |c| {
        c.stream_routes.push(StreamRouteConfig {
            path: "/v1/chat/completions".into(),
            upstream,
            resume_path: "/streams/{stream}".into(),
            protocol: Default::default(),
            on_disconnect: OnDisconnect::Detach,
            auth: Default::default(),
        });
        configure(c);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_left_by_its_client_is_read_to_its_end_and_resumed_from_the_last_id() {
    let origin = AnswerOrigin::start().await;
    let relay = relay(&origin, |_| {}).await;
    let mut client = relay.h2().await;
    let mut started = post(&mut client, "/v1/chat/completions").await;
    assert_eq!(started.status, StatusCode::OK);
    let url = location(&started);
    assert!(url.starts_with("/streams/"), "{url}");
    let stream = url.trim_start_matches("/streams/").to_string();
    assert!(stream.len() >= 22, "at least 128 random bits: {stream}");
    let answer = origin.next_answer().await;
    assert_eq!(
        &answer.body[..],
        b"{\"stream\":true}",
        "the body reached the origin"
    );
    for n in 1..=3 {
        answer.send(&format!("data: chunk {n}\n\n")).await;
    }
    let mut last_id = String::new();
    for n in 1..=3 {
        let event = started.next_event().await.expect("event");
        assert_eq!(event.data.as_deref(), Some(format!("chunk {n}").as_str()));
        last_id = event.id.expect("the relay gives events without an id one");
    }
    assert_eq!(
        last_id,
        format!("{stream}.3"),
        "an id names the stream and the position"
    );
    drop(started);
    drop(client);
    let states = |text: &str| {
        ["open", "detached", "retained"]
            .map(|state| sample(text, &format!("sse_relay_request_streams_{state}")))
    };
    let mut scraped = String::new();
    for _ in 0..400 {
        scraped = http_get(relay.admin_addr, "/metrics").await.1;
        if states(&scraped)[1] == Some(1.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(
        states(&scraped),
        [Some(1.0), Some(1.0), Some(0.0)],
        "open and detached once the client left"
    );
    // The client is gone: the relay reads on, to the answer's end.
    for n in 4..=6 {
        answer.send(&format!("data: chunk {n}\n\n")).await;
    }
    answer.end();
    let mut viewer = relay.h2().await;
    let mut resumed = viewer.subscribe(&url, &[("last-event-id", &last_id)]).await;
    assert_eq!(resumed.status, StatusCode::OK);
    assert_eq!(resumed.data(3).await, ["chunk 4", "chunk 5", "chunk 6"]);
    assert!(
        resumed.next_event().await.is_none(),
        "then the stream's end"
    );
    let done = format!("{stream}.6");
    let after = viewer.get(&url, &[("last-event-id", &done)]).await;
    assert_eq!(
        after.status(),
        StatusCode::NO_CONTENT,
        "nothing after the last event of a finished stream: 204, so EventSource stops"
    );
    let mut whole = viewer.subscribe(&url, &[]).await;
    let all = whole.data(6).await;
    assert_eq!(
        all[0], "chunk 1",
        "without an id, a viewer gets the whole answer"
    );
    assert_eq!(origin.posts(), 1, "the origin saw one POST");
    let (_, scraped) = http_get(relay.admin_addr, "/metrics").await;
    assert_eq!(
        states(&scraped)[2],
        Some(1.0),
        "retained once the answer ended"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_share_a_live_stream_and_the_origins_own_ids_pass_unchanged() {
    let origin = AnswerOrigin::start().await;
    let relay = relay(&origin, |_| {}).await;
    let mut client = relay.h2().await;
    let mut started = post(&mut client, "/v1/chat/completions").await;
    let url = location(&started);
    let answer = origin.next_answer().await;
    answer.send("id: a1\ndata: one\n\n").await;
    assert_eq!(started.data(1).await, ["one"]);
    let (status, listed) = http_get(relay.admin_addr, "/topics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        listed.contains("\"/v1/chat/completions stream 1\""),
        "{listed}"
    );
    let id = url.trim_start_matches("/streams/");
    assert!(
        !listed.contains(id),
        "/topics never shows a stream's id: {listed}"
    );
    let mut second = relay.h2().await;
    let mut follower = second.subscribe(&url, &[("last-event-id", "a1")]).await;
    answer.send("id: a2\ndata: two\n\n").await;
    let (a, b) = (
        started.next_event().await.unwrap(),
        follower.next_event().await.unwrap(),
    );
    assert_eq!(
        (a.id.as_deref(), a.data.as_deref()),
        (Some("a2"), Some("two"))
    );
    assert_eq!(
        (b.id.as_deref(), b.data.as_deref()),
        (Some("a2"), Some("two"))
    );
    answer.end();
    assert!(started.next_event().await.is_none());
    assert!(follower.next_event().await.is_none());
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_get_404_and_a_delete_ends_the_origin_request_for_every_viewer() {
    let origin = AnswerOrigin::start().await;
    let relay = relay(&origin, |_| {}).await;
    let mut client = relay.h2().await;
    let unknown = client.get("/streams/AAAAAAAAAAAAAAAAAAAAAA", &[]).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let mut started = post(&mut client, "/v1/chat/completions").await;
    let url = location(&started);
    let answer = origin.next_answer().await;
    answer.send("data: one\n\n").await;
    assert_eq!(started.data(1).await, ["one"]);
    let mut other = relay.h2().await;
    let deleted = other.request(Method::DELETE, &url, &[]).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    answer.dropped().await;
    started.until_end().await;
    let gone = other.get(&url, &[]).await;
    assert_eq!(
        gone.status(),
        StatusCode::NOT_FOUND,
        "a cancelled stream is gone"
    );
    let cancelled = &relay.metrics.streams.cancelled;
    assert_eq!(cancelled.get(CancelledBy::Delete).get(), 1);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_disconnect_cancel_drops_the_origin_request_once_the_last_viewer_left() {
    let origin = AnswerOrigin::start().await;
    let relay = relay(&origin, |c| {
        c.stream_routes[0].on_disconnect = OnDisconnect::Cancel;
        c.downstream.heartbeat_interval_ms = 200;
    })
    .await;
    let mut client = relay.h2().await;
    let mut started = post(&mut client, "/v1/chat/completions").await;
    let answer = origin.next_answer().await;
    answer.send("data: one\n\n").await;
    assert_eq!(started.data(1).await, ["one"]);
    drop(started);
    answer.dropped().await;
    eventually("counted as dropped", || {
        relay.metrics.streams.dropped.get() == 1
    })
    .await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_origin_gets_heartbeats_and_the_bytes_are_otherwise_the_origins() {
    let origin = AnswerOrigin::start().await;
    let relay = relay(&origin, |c| c.downstream.heartbeat_interval_ms = 100).await;
    let mut client = relay.h2().await;
    let mut started = post(&mut client, "/v1/chat/completions").await;
    let answer = origin.next_answer().await;
    // Silent (an LLM thinking): the relay keeps the connection alive with comments.
    started.until_raw_contains(":\n\n").await;
    let sent = "id: 1\ndata: {\"delta\":\"Hel\"}\n\nid: 2\ndata: {\"delta\":\"lo\"}\n\nid: 3\ndata: [DONE]\n\n";
    answer.send(sent).await;
    answer.end();
    started.until_end().await;
    let got = String::from_utf8(started.raw.clone()).unwrap();
    let events: String = got
        .split_inclusive("\n\n")
        .filter(|block| !block.starts_with(':'))
        .collect();
    assert_eq!(events, sent, "only comments were added");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_past_its_bytes_keeps_live_viewers_whole_and_tells_a_late_resume_of_the_gap() {
    let origin = AnswerOrigin::start().await;
    let relay = relay(&origin, |c| {
        c.limits.max_event_bytes = 64;
        c.streams.max_stream_bytes = 128;
    })
    .await;
    let mut client = relay.h2().await;
    let mut started = post(&mut client, "/v1/chat/completions").await;
    let url = location(&started);
    let answer = origin.next_answer().await;
    let mut live = Vec::new();
    for n in 1..=10 {
        answer
            .send(&format!("id: e{n}\ndata: event number {n}\n\n"))
            .await;
        live.push(started.next_event().await.unwrap().data.unwrap());
    }
    assert_eq!(live.len(), 10, "the live viewer got every event");
    let mut late = relay.h2().await;
    let mut resumed = late.subscribe(&url, &[("last-event-id", "e1")]).await;
    resumed.until_raw_contains("event: sse-relay-gap").await;
    answer.end();
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_is_not_an_event_stream_passes_through_and_nothing_is_kept() {
    let origin = AnswerOrigin::start().await;
    let relay = relay(&origin, |c| {
        c.stream_routes[0].upstream = origin.url("/json");
    })
    .await;
    let mut client = relay.h2().await;
    let mut answer = post(&mut client, "/v1/chat/completions").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.headers.get("content-location").is_none());
    answer.until_end().await;
    assert_eq!(answer.raw, b"{\"ok\":true}");
    let started = &relay.metrics.streams.started;
    assert_eq!(started.get(StartOutcome::NotEventStream).get(), 1);
    assert_eq!(started.get(StartOutcome::Kept).get(), 0);
    relay.stop().await;
}

const SECRET: &[u8] = b"an-hs256-test-secret-of-32-bytes-or-more";

/// A bearer token of subject `sub` that grants the stream route.
fn bearer(sub: &str) -> String {
    bearer_for(sub, "/v1/chat/completions")
}

/// A bearer token of subject `sub` that grants the stream route at `path`.
fn bearer_for(sub: &str, path: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = serde_json::json!({ "sub": sub, "exp": exp, "subscribe": [path] });
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET);
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
    format!("Bearer {token}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_bound_to_the_identity_that_started_it_and_hidden_from_others() {
    let origin = AnswerOrigin::start().await;
    let secret = support::temp_dir("jwt").join("jwt.key");
    std::fs::write(&secret, SECRET).unwrap();
    let relay = relay(&origin, |c| {
        c.stream_routes[0].auth = AuthMode::Jwt;
        c.auth.jwt = Some(JwtConfig {
            secret_file: Some(secret),
            ..support::jwt_config(&["HS256"])
        });
    })
    .await;
    let mut client = relay.h2().await;
    let refused = post(&mut client, "/v1/chat/completions").await;
    assert_eq!(
        refused.status,
        StatusCode::UNAUTHORIZED,
        "no token, no stream"
    );
    assert_eq!(origin.posts(), 0);
    let alice = bearer("alice");
    let mut started = post_with(
        &mut client,
        "/v1/chat/completions",
        &[("authorization", &alice)],
    )
    .await;
    let url = location(&started);
    let answer = origin.next_answer().await;
    answer.send("data: for alice\n\n").await;
    assert_eq!(started.data(1).await, ["for alice"]);
    let bob = bearer("bob");
    let other = client.get(&url, &[("authorization", &bob)]).await;
    assert_eq!(
        other.status(),
        StatusCode::NOT_FOUND,
        "another identity is told nothing exists, not 403"
    );
    let cancel = client
        .request(Method::DELETE, &url, &[("authorization", &bob)])
        .await;
    assert_eq!(
        cancel.status(),
        StatusCode::NOT_FOUND,
        "nor may it cancel it"
    );
    let mut own = client.subscribe(&url, &[("authorization", &alice)]).await;
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(own.data(1).await, ["for alice"]);
    answer.end();
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_streams_an_answer_still_reaches_its_client_unkept() {
    let origin = AnswerOrigin::start().await;
    let relay = relay(&origin, |c| c.streams.max_streams = 1).await;
    let mut client = relay.h2().await;
    let mut kept = post(&mut client, "/v1/chat/completions").await;
    let first = origin.next_answer().await;
    first.send("data: kept\n\n").await;
    assert_eq!(kept.data(1).await, ["kept"]);
    let mut unkept = post(&mut client, "/v1/chat/completions").await;
    assert_eq!(unkept.status, StatusCode::OK);
    assert!(
        unkept.headers.get("content-location").is_none(),
        "not resumable, so no resume URL"
    );
    let second = origin.next_answer().await;
    second.send("data: passed\n\n").await;
    second.end();
    assert_eq!(unkept.data(1).await, ["passed"]);
    let started = &relay.metrics.streams.started;
    assert_eq!(started.get(StartOutcome::NotKept).get(), 1);
    first.end();
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_resume_follows_only_a_stream_of_its_own_session() {
    let origin = AnswerOrigin::start().await;
    let relay = relay(&origin, |c| {
        c.stream_routes[0].protocol = StreamProtocol::Mcp;
    })
    .await;
    let mut client = relay.h2().await;
    let mut started = post_with(
        &mut client,
        "/v1/chat/completions",
        &[("mcp-session-id", "session-a")],
    )
    .await;
    let answer = origin.next_answer().await;
    answer.send("data: {\"progress\":1}\n\n").await;
    let first = started.next_event().await.unwrap();
    let id = first.id.expect("a relay id");
    answer.send("data: {\"progress\":2}\n\n").await;
    assert_eq!(started.data(1).await, ["{\"progress\":2}"]);
    drop(started);
    let mut other = relay.h2().await;
    let foreign = other
        .get(
            "/v1/chat/completions",
            &[("mcp-session-id", "session-b"), ("last-event-id", &id)],
        )
        .await;
    assert_eq!(
        foreign.status(),
        StatusCode::METHOD_NOT_ALLOWED,
        "another session's resume is the server's to answer (this origin takes POSTs only)"
    );
    let mut own = other
        .subscribe(
            "/v1/chat/completions",
            &[("mcp-session-id", "session-a"), ("last-event-id", &id)],
        )
        .await;
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(
        own.data(1).await,
        ["{\"progress\":2}"],
        "the rest of its own stream"
    );
    answer.end();
    assert!(own.next_event().await.is_none());
    relay.stop().await;
}

/// `/tail?topic=` for the stream shown as `shown`.
fn tail_path(shown: &str) -> String {
    let encoded: String = form_urlencoded::byte_serialize(shown.as_bytes()).collect();
    format!("/tail?topic={encoded}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_tails_a_stream_anyone_started_but_not_a_users_own() {
    let origin = AnswerOrigin::start().await;
    let secret = support::temp_dir("jwt").join("jwt.key");
    std::fs::write(&secret, SECRET).unwrap();
    let relay = relay(&origin, |c| {
        let mut personal = c.stream_routes[0].clone();
        personal.path = "/v1/personal".into();
        personal.resume_path = "/mine/{stream}".into();
        personal.auth = AuthMode::Jwt;
        c.stream_routes.push(personal);
        c.auth.jwt = Some(JwtConfig {
            secret_file: Some(secret),
            ..support::jwt_config(&["HS256"])
        });
    })
    .await;
    let mut client = relay.h2().await;
    let mut open = post(&mut client, "/v1/chat/completions").await;
    let answer = origin.next_answer().await;
    answer.send("data: seen by the operator\n\n").await;
    assert_eq!(open.data(1).await, ["seen by the operator"]);
    let token = bearer_for("alice", "/v1/personal");
    let mut own = post_with(&mut client, "/v1/personal", &[("authorization", &token)]).await;
    let alices = origin.next_answer().await;
    alices.send("data: alice's\n\n").await;
    assert_eq!(own.data(1).await, ["alice's"]);

    let (_, listed) = http_get(relay.admin_addr, "/topics").await;
    let doc: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let rows = doc["request_streams"].as_array().unwrap();
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["key"].as_str().unwrap().starts_with(name))
            .unwrap()
            .clone()
    };
    let (anyones, users) = (
        row("/v1/chat/completions stream"),
        row("/v1/personal stream"),
    );
    assert_eq!(
        (anyones["tailable"].as_bool(), users["tailable"].as_bool()),
        (Some(true), Some(false))
    );

    let mut tail = support::http_stream(
        relay.admin_addr,
        &tail_path(anyones["key"].as_str().unwrap()),
    )
    .await;
    assert_eq!(tail.status, StatusCode::OK);
    let shown = tail.next_event().await.expect("a tail event");
    assert_eq!(shown.event_type.as_deref(), Some("tail"));
    let shown: serde_json::Value = serde_json::from_str(&shown.data.unwrap()).unwrap();
    assert_eq!(shown["data"], "seen by the operator");
    let refused =
        support::http_stream(relay.admin_addr, &tail_path(users["key"].as_str().unwrap())).await;
    assert_eq!(
        refused.status,
        StatusCode::FORBIDDEN,
        "a user's own stream is not shown"
    );
    answer.end();
    alices.end();
    relay.stop().await;
}
