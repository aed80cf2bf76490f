//! Routing: canonical matching, shadowed spellings, topic keys.

use super::*;

fn router(query_params: &[&str]) -> Router {
    let path = PathTemplate::parse("/events/{topic}").unwrap();
    let upstream = UpstreamTemplate::parse("http://127.0.0.1:8081/sub/{topic}", &path).unwrap();
    let params = query_params.iter().map(|s| s.to_string()).collect();
    Router::new(vec![Route::new(path, upstream, params, AuthMode::None)])
}

#[test]
fn path_variable_renders_into_upstream() {
    let t = router(&[]).resolve("/events/clock", None).unwrap();
    assert_eq!(t.upstream, "http://127.0.0.1:8081/sub/clock");
}

#[test]
fn traversal_and_encoded_segments_do_not_match() {
    let r = router(&[]);
    for path in [
        "/events/..",
        "/events/.",
        "/events/%2e%2e",
        "/events/%2E",
        "/events/a%2Fb",
        "/events/a%2fb",
        "/events/",
        "/events//a",
        "/events/a/",
        "/events/a/b",
        "/events/./a",
        "/events/a%00",
        "/events/a%zz",
        "/EVENTS/a",
        "//events/a",
    ] {
        assert_eq!(r.resolve(path, None), Err(RouteMiss::NoRoute), "{path}");
    }
}

#[test]
fn other_spellings_of_sse_paths_are_shadowed_but_other_paths_are_not() {
    let r = router(&[]);
    for path in [
        "/events/a/",
        "/events//a",
        "//events/a",
        "/EVENTS/a",
        "/Events/a",
        "/events/a;x=1",
        "/events;x/a",
        "/events/./a",
        "/events/b/../a",
        "/%65vents/a",
        "/events/a%2f",
        "/events/%2e%2e%2fx",
        "/events\\a",
        "/events%2Fa",
        "/events%5ca",
        "/x/..%2Fevents/a",
        "/x/%2E%2E/events/a",
    ] {
        assert!(r.shadows_sse_path(path), "{path}");
    }
    for path in [
        "/events/a",
        "/events",
        "/events/a/b",
        "/other/a",
        "/",
        "/eventsx/a",
        "/events%2Fa%2Fhistory",
    ] {
        assert!(!r.shadows_sse_path(path), "{path}");
    }
}

#[test]
fn encoded_unreserved_characters_are_the_same_topic() {
    let r = router(&[]);
    let plain = r.resolve("/events/abc", None).unwrap();
    let encoded = r.resolve("/events/%61b%63", None).unwrap();
    assert_eq!(plain, encoded);
    assert_eq!(encoded.path, "/events/abc");
}

#[test]
fn only_declared_query_params_split_topics_in_sorted_order() {
    let r = router(&["lang", "area"]);
    let a = r.resolve("/events/x", Some("lang=en&x=1&area=eu")).unwrap();
    let b = r.resolve("/events/x", Some("area=eu&lang=en")).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.upstream, "http://127.0.0.1:8081/sub/x?area=eu&lang=en");
    let c = r.resolve("/events/x", Some("lang=de&area=eu")).unwrap();
    assert_ne!(a.key, c.key);
    let dup = r
        .resolve("/events/x", Some("lang=en&lang=de&area=%65u"))
        .unwrap();
    assert_eq!(dup, a, "first value wins; encodings are canonicalised");
    assert_eq!(a.query, "area=eu&lang=en");
}

#[test]
fn unknown_variable_in_upstream_is_rejected() {
    let p = PathTemplate::parse("/e/{topic}").unwrap();
    assert!(UpstreamTemplate::parse("http://o/{room}", &p).is_err());
    assert!(UpstreamTemplate::parse("ftp://o/{topic}", &p).is_err());
}

#[test]
fn claims_that_are_dot_segments_or_empty_are_missing() {
    let path = PathTemplate::parse("/me/events").unwrap();
    let upstream = UpstreamTemplate::parse("http://o/users/{jwt.sub}/events", &path).unwrap();
    let r = Router::new(vec![Route::new(path, upstream, vec![], AuthMode::None)]);
    for sub in ["", ".", ".."] {
        let mut claims = serde_json::Map::new();
        claims.insert("sub".into(), sub.into());
        let target = r.matched("/me/events", None).unwrap().target(Some(&claims));
        assert_eq!(target.unwrap_err(), RouteMiss::MissingClaim, "{sub:?}");
    }
}

/// A route `/rooms/{room}` whose upstream takes the token's `sub` claim.
fn per_user_router() -> Router {
    let path = PathTemplate::parse("/rooms/{room}").unwrap();
    let upstream = UpstreamTemplate::parse("http://o/users/{jwt.sub}/rooms/{room}", &path).unwrap();
    Router::new(vec![Route::new(path, upstream, vec![], AuthMode::Jwt)])
}

fn target_of(r: &Router, sub: &str) -> TopicTarget {
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), sub.into());
    r.matched("/rooms/lobby", None)
        .unwrap()
        .target(Some(&claims))
        .unwrap()
}

#[test]
fn a_per_user_key_is_shown_with_its_claim_hashed_and_stays_the_key() {
    let r = per_user_router();
    let alice = target_of(&r, "alice@example.com");
    assert_eq!(
        alice.key,
        "0 http://o/users/alice%40example.com/rooms/lobby"
    );
    let shown = alice
        .shown
        .clone()
        .expect("a per-user key is shown otherwise");
    assert!(!shown.contains("alice"), "{shown}");
    let (before, after) = shown.split_once("{jwt.sub:").expect(&shown);
    assert_eq!(before, "0 http://o/users/");
    let (hash, rest) = after.split_once('}').expect(&shown);
    assert_eq!(hash.len(), SHOWN_HASH_HEX);
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(rest, "/rooms/lobby", "the path variable is shown as it is");

    assert_eq!(target_of(&r, "alice@example.com").shown, alice.shown);
    assert_ne!(target_of(&r, "bob@example.com").shown, alice.shown);
    assert_eq!(router(&[]).resolve("/events/a", None).unwrap().shown, None);
}

#[test]
fn a_peer_shows_a_per_user_key_as_the_requester_did() {
    let r = per_user_router();
    let direct = target_of(&r, "alice@example.com");
    let via_peer = r.peer_target(&direct.key, &direct.path).unwrap();
    assert_eq!(via_peer.key, direct.key);
    assert_eq!(via_peer.shown, direct.shown);
    let hops = format!("{} hops=1", direct.key);
    let via_peer = r.peer_target(&hops, "not the path").unwrap();
    let shown = via_peer.shown.unwrap();
    assert!(
        !shown.contains("alice") && shown.ends_with(" hops=1"),
        "{shown}"
    );
}
