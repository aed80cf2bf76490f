//! Tests of loading, validation and overrides.

use super::*;

/// Parses and validates (as `Settings::parse` does); returns the raw model for its values.
fn parse(text: &str) -> Result<Config, ConfigError> {
    let path = Path::new("relay.toml");
    let config = Config::parse(text, path)?;
    validated(config, path)
}

fn validated(config: Config, path: &Path) -> Result<Config, ConfigError> {
    Settings::try_from(config.clone()).map_err(|issue| ConfigError {
        file: path.to_owned(),
        key: issue.key,
        reason: issue.reason,
    })?;
    Ok(config)
}

const ROUTE: &str =
    "[[route]]\npath = \"/events/{topic}\"\nupstream = \"http://127.0.0.1:8081/sub/{topic}\"\n";

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(ROUTE).expect("valid");
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8443");
    assert_eq!(c.replay.max_events, 1024);
    assert_eq!(c.downstream.lag_policy, LagPolicy::Disconnect);
    assert!(!c.demo_origin.enabled);
}

#[test]
fn unknown_key_is_named() {
    let e = parse(&format!("{ROUTE}[server]\nlisten_addr = \"x\"\n")).unwrap_err();
    assert_eq!(e.key, "server.listen_addr");
    assert!(e.reason.contains("listen_addr"), "{e}");
}

#[test]
fn bad_address_is_named() {
    let e = parse(&format!("{ROUTE}[server]\nlisten = \"nowhere\"\n")).unwrap_err();
    assert_eq!(e.key, "server.listen");
}

#[test]
fn template_variable_must_be_in_path() {
    let e =
        parse("[[route]]\npath = \"/e/{topic}\"\nupstream = \"http://o/{room}\"\n").unwrap_err();
    assert_eq!(e.key, "route[0].upstream");
    assert!(e.reason.contains("room"), "{e}");
}

#[test]
fn cert_without_key_is_rejected() {
    let e = parse(&format!("{ROUTE}[server]\ntls_cert = \"/nonexistent\"\n")).unwrap_err();
    assert_eq!(e.key, "server.tls_key");
}

#[test]
fn missing_cert_file_is_rejected() {
    let e = parse(&format!(
        "{ROUTE}[server]\ntls_cert = \"/nonexistent.crt\"\ntls_key = \"/nonexistent.key\"\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "server.tls_cert");
}

#[test]
fn zero_and_inverted_ranges_are_rejected() {
    let e = parse(&format!("{ROUTE}[replay]\nmax_events = 0\n")).unwrap_err();
    assert_eq!(e.key, "replay.max_events");
    let e = parse(&format!(
        "{ROUTE}[upstream]\nbackoff_min_ms = 500\nbackoff_max_ms = 10\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "upstream.backoff_max_ms");
}

/// RFC 9113 §6.5.2 and §6.9.1 bound the windows and the frame size; a connection window
/// below the 65535 every connection starts with, and a stream window of 0, are refused too.
#[test]
fn h2_windows_and_frame_size_out_of_bounds_are_rejected() {
    for (text, key) in [
        (
            "initial_stream_window_size = 0",
            "server.h2.initial_stream_window_size",
        ),
        (
            "initial_stream_window_size = 2147483648",
            "server.h2.initial_stream_window_size",
        ),
        (
            "initial_connection_window_size = 65534",
            "server.h2.initial_connection_window_size",
        ),
        (
            "initial_connection_window_size = 2147483648",
            "server.h2.initial_connection_window_size",
        ),
        ("max_frame_size = 16383", "server.h2.max_frame_size"),
        ("max_frame_size = 16777216", "server.h2.max_frame_size"),
    ] {
        let e = parse(&format!("{ROUTE}[server.h2]\n{text}\n")).unwrap_err();
        assert_eq!(e.key, key, "{text}");
    }
    let extremes = format!(
        "{ROUTE}[server.h2]\ninitial_stream_window_size = 2147483647\n\
         initial_connection_window_size = 65535\nmax_frame_size = 16777215\n"
    );
    let h2 = Settings::parse(&extremes, Path::new("relay.toml"))
        .expect("the bounds themselves are valid")
        .server
        .h2;
    assert_eq!(h2.initial_stream_window_size, 2_147_483_647);
    assert_eq!(h2.initial_connection_window_size, 65_535);
    assert_eq!(h2.max_frame_size, 16_777_215);
}

#[test]
fn bad_lag_policy_is_named() {
    let e = parse(&format!("{ROUTE}[downstream]\nlag_policy = \"queue\"\n")).unwrap_err();
    assert_eq!(e.key, "downstream.lag_policy");
}

#[test]
fn cors_wildcard_with_credentials_is_rejected() {
    let e = parse(&format!(
        "{ROUTE}[cors]\nallowed_origins = [\"*\"]\nallow_credentials = true\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "cors.allow_credentials");
}

fn with_env(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let path = Path::new("relay.toml");
    let config = Config::parse_with_env(text, path, env.collect::<Vec<_>>().into_iter())?;
    validated(config, path)
}

#[test]
fn environment_overrides_any_key() {
    let c = with_env(
        ROUTE,
        &[
            ("SSE_RELAY__SERVER__LISTEN", "0.0.0.0:9443"),
            ("SSE_RELAY__REPLAY__MAX_EVENTS", "7"),
            ("SSE_RELAY__ROUTE__0__QUERY_PARAMS", "[\"lang\"]"),
            ("SSE_RELAY__ROUTE__1__PATH", "/other/{t}"),
            ("SSE_RELAY__ROUTE__1__UPSTREAM", "http://o/{t}"),
            ("SSE_RELAY_LOG", "debug"),
        ],
    )
    .unwrap();
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:9443");
    assert_eq!(c.replay.max_events, 7);
    assert_eq!(c.routes[0].query_params, ["lang"]);
    assert_eq!(c.routes[1].upstream, "http://o/{t}");
}

#[test]
fn bad_environment_override_is_named() {
    let e = with_env(ROUTE, &[("SSE_RELAY__REPLAY__MAX_EVENTS", "many")]).unwrap_err();
    assert_eq!(e.key, "replay.max_events");
    assert!(e.reason.contains("environment"), "{e}");
    let e = with_env(ROUTE, &[("SSE_RELAY__ROUTE__5__PATH", "/x")]).unwrap_err();
    assert_eq!(e.key, "env SSE_RELAY__ROUTE__5__PATH");
}

#[test]
fn drain_timeout_must_cover_delay_and_window() {
    let e = parse(&format!("{ROUTE}[server]\ndrain_timeout_ms = 1000\n")).unwrap_err();
    assert_eq!(e.key, "server.drain_timeout_ms");
}

#[test]
fn passthrough_upstream_must_be_an_origin() {
    let e = parse(&format!(
        "{ROUTE}[passthrough]\nupstream = \"http://o/app\"\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "passthrough.upstream");
}

#[test]
fn auth_backends_are_validated() {
    let jwt_route = "[[route]]\npath = \"/e/{t}\"\nupstream = \"http://o/{t}\"\nauth = \"jwt\"\n";
    let e = parse(jwt_route).unwrap_err();
    assert_eq!(e.key, "route[0].auth");
    assert_eq!(e.reason, "needs a [auth.jwt] section");
    let e = parse(&format!(
        "{jwt_route}[auth.jwt]\nalgorithms = [\"HS999\"]\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "auth.jwt.algorithms");
    let e = parse(&format!(
        "{jwt_route}[auth.jwt]\nalgorithms = [\"HS256\"]\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "auth.jwt.secret_file");
    let short = std::env::temp_dir().join(format!("sse-relay-short-{}.key", std::process::id()));
    std::fs::write(&short, b"short").unwrap();
    let e = parse(&format!(
        "{jwt_route}[auth.jwt]\nalgorithms = [\"HS256\"]\nsecret_file = {:?}\n",
        short.display().to_string()
    ))
    .unwrap_err();
    assert!(e.reason.contains("32 bytes"), "{e}");
    let mixed = format!("{jwt_route}[auth.jwt]\nalgorithms = [\"HS256\", \"RS256\"]\n");
    let e = parse(&mixed).unwrap_err();
    assert!(e.reason.contains("mixes"), "{e}");
    let fwd = jwt_route.replace("\"jwt\"", "\"forward\"");
    let e = parse(&format!("{fwd}[auth.forward]\nurl = \"ftp://x\"\n")).unwrap_err();
    assert_eq!(e.key, "auth.forward.url");
    let forward = format!("{fwd}[auth.forward]\nurl = \"http://127.0.0.1:1/auth\"\n");
    let e = parse(&format!("{forward}reauthorize_after_ms = 999\n")).unwrap_err();
    assert_eq!(e.key, "auth.forward.reauthorize_after_ms");
    assert!(parse(&format!("{forward}reauthorize_after_ms = 1000\n")).is_ok());
    assert!(parse(&format!("{forward}reauthorize_after_ms = 0\n")).is_ok());
}

#[test]
fn no_route_is_rejected() {
    let e = parse("").unwrap_err();
    assert_eq!(e.key, "route");
}

#[test]
fn a_query_param_fixed_in_the_upstream_cannot_come_from_clients() {
    let e = parse(
        "[[route]]\npath = \"/e/{topic}\"\nupstream = \"http://o/{topic}?lang=en\"\n\
         query_params = [\"lang\"]\n",
    )
    .unwrap_err();
    assert_eq!(e.key, "route[0].query_params");
    assert!(e.reason.contains("lang"), "{e}");
}

#[test]
fn always_on_topics_must_match_a_route() {
    let ok = parse(&format!(
        "{ROUTE}[topics]\nalways_on = [\"/events/clock\"]\n"
    ))
    .expect("valid");
    assert_eq!(ok.topics.always_on, ["/events/clock"]);
    let e = parse(&format!(
        "{ROUTE}[topics]\nalways_on = [\"/events/clock\", \"/nope/x\"]\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "topics.always_on[1]");
    assert!(e.reason.contains("/nope/x"), "{e}");
}

#[test]
fn defaults_pass_large_events_and_refuse_no_one_behind_a_shared_address() {
    let c = parse(ROUTE).expect("valid");
    assert!(c.limits.max_event_bytes >= 1 << 20, "at least 1 MiB");
    assert!(c.replay.max_bytes >= c.limits.max_event_bytes);
    assert_eq!(
        c.limits.max_connections_per_ip, 0,
        "no per-IP cap by default"
    );
}

#[test]
fn an_event_limit_over_the_replay_buffer_is_rejected() {
    let e = parse(&format!("{ROUTE}[replay]\nmax_bytes = 65536\n")).unwrap_err();
    assert_eq!(e.key, "limits.max_event_bytes");
    assert!(e.reason.contains("replay.max_bytes"), "{e}");
    let ok = parse(&format!(
        "{ROUTE}[replay]\nmax_bytes = 65536\n[limits]\nmax_event_bytes = 65536\n"
    ));
    assert!(ok.is_ok(), "an event limit equal to the buffer fits");
}

#[test]
fn upstream_headers_are_checked_at_load() {
    let dir = std::env::temp_dir().join(format!("sse-relay-cfg-hdr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("token");
    std::fs::write(&secret, "Bearer t\n").unwrap();
    let with = |headers: &str| format!("{ROUTE}[route.upstream_headers]\n{headers}\n");
    let ok = parse(&with(&format!(
        "X-Api-Key = \"k-123\"\nAuthorization = {{ file = \"{}\" }}",
        secret.display()
    )))
    .expect("a literal and a file");
    assert_eq!(ok.routes[0].upstream_headers.len(), 2);
    for (headers, key, reason) in [
        (
            "\"Bad Name\" = \"x\"",
            "route[0].upstream_headers.Bad Name",
            "header name",
        ),
        (
            "Host = \"x\"",
            "route[0].upstream_headers.Host",
            "set by the relay",
        ),
        (
            "X-Key = \"a\\nb\"",
            "route[0].upstream_headers.X-Key",
            "header value",
        ),
        (
            "X-Key = { file = \"/nonexistent/secret\" }",
            "route[0].upstream_headers.X-Key",
            "/nonexistent/secret",
        ),
    ] {
        let e = parse(&with(headers)).unwrap_err();
        assert_eq!(e.key, key, "{headers}");
        assert!(e.reason.contains(reason), "{headers}: {e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_client_certificate_needs_its_key() {
    let e = parse(&format!(
        "{ROUTE}[upstream]\nclient_cert_file = \"/etc/hostname\"\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "upstream.client_key_file");
    let e = parse(&format!(
        "{ROUTE}[upstream]\nclient_key_file = \"/nonexistent.key\"\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "upstream.client_key_file");
    assert!(e.reason.contains("does not exist"), "{e}");
}

#[test]
fn a_jwt_claim_in_the_upstream_needs_jwt_auth() {
    let route =
        "[[route]]\npath = \"/me/events\"\nupstream = \"http://app/users/{jwt.sub}/events\"\n";
    let e = parse(route).unwrap_err();
    assert_eq!(e.key, "route[0].upstream");
    assert!(e.reason.contains("auth = \"jwt\""), "{e}");
    let e = parse(&route.replace("{jwt.sub}", "{jwt.}")).unwrap_err();
    assert_eq!(e.key, "route[0].upstream");
}

#[test]
fn catch_up_is_on_by_default_and_its_bounds_are_checked() {
    let c = parse(ROUTE).expect("valid");
    assert!(
        c.replay.catch_up,
        "resumes past the ring ask the origin by default"
    );
    assert!(c.replay.catch_up_max_bytes >= c.limits.max_event_bytes);
    let e = parse(&format!("{ROUTE}[replay]\ncatch_up_max_bytes = 1024\n")).unwrap_err();
    assert_eq!(e.key, "replay.catch_up_max_bytes");
    assert!(e.reason.contains("limits.max_event_bytes"), "{e}");
    let e = parse(&format!("{ROUTE}[replay]\ncatch_up_timeout_ms = 0\n")).unwrap_err();
    assert_eq!(e.key, "replay.catch_up_timeout_ms");
    let off = "[replay]\ncatch_up = false\ncatch_up_timeout_ms = 0\n";
    assert!(
        parse(&format!("{ROUTE}{off}")).is_ok(),
        "bounds of a disabled catch-up are unused"
    );
}

#[test]
fn a_cluster_needs_its_listener_address_and_files() {
    let e = parse(&format!("{ROUTE}[cluster]\npeers = [\"10.0.0.1:9443\"]\n")).unwrap_err();
    assert_eq!(e.key, "cluster.peer_listen");
    let e = parse(&format!(
        "{ROUTE}[cluster]\npeers = [\"10.0.0.1:9443\"]\npeer_listen = \"0.0.0.0:9443\"\n\
         self = \"10.0.0.2:9443\"\nca_file = \"/nonexistent/ca.pem\"\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "cluster.ca_file");
    assert!(e.reason.contains("does not exist"), "{e}");
    let e = parse(&format!("{ROUTE}[cluster]\npeers = [\"10.0.0.1\"]\n")).unwrap_err();
    assert_eq!(e.key, "cluster.peers[0]");
    let e = parse(&format!(
        "{ROUTE}[cluster]\npeer_listen = \"0.0.0.0:9443\"\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "cluster.peer_listen", "set without peers: {e}");
    let e = parse(&format!(
        "{ROUTE}[cluster]\npeers = [\"10.0.0.1:9443\"]\npeer_listen = \"0.0.0.0:9443\"\n\
         self = \"0.0.0.0:9443\"\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "cluster.self", "peers cannot dial 0.0.0.0: {e}");
    let single = parse(ROUTE).expect("valid");
    assert!(single.cluster.peers.is_empty() && single.cluster.dns_name.is_none());
}

#[test]
fn a_variable_host_is_accepted_with_its_hosts_and_only_in_the_host() {
    let route = "[[route]]\npath = \"/t/{topic}\"\nupstream = \"http://{topic}.api.example/sub\"\n";
    let e = parse(route).unwrap_err();
    assert_eq!(e.key, "route[0].upstream");
    assert!(e.reason.contains("upstream_hosts"), "{e}");
    parse(&format!("{route}upstream_hosts = [\"a.api.example\"]\n")).expect("listed hosts");
    let port = "[[route]]\npath = \"/t/{topic}\"\nupstream = \"http://o:{topic}/sub\"\n";
    let e = parse(&format!("{port}upstream_hosts = [\"o\"]\n")).unwrap_err();
    assert_eq!(e.key, "route[0].upstream");
    let fixed = format!("{ROUTE}upstream_hosts = [\"a.example\"]\n");
    assert_eq!(parse(&fixed).unwrap_err().key, "route[0].upstream_hosts");
}

#[test]
fn a_zero_topic_variable_cap_is_rejected() {
    let e = parse(&format!("{ROUTE}[limits]\nmax_topic_variable_bytes = 0\n")).unwrap_err();
    assert_eq!(e.key, "limits.max_topic_variable_bytes");
}

#[test]
fn the_per_client_topic_share_is_a_percentage_of_the_cap() {
    for bad in ["0", "101"] {
        let toml = format!("{ROUTE}[limits]\nmax_topics_per_client_percent = {bad}\n");
        let e = parse(&toml).unwrap_err();
        assert_eq!(e.key, "limits.max_topics_per_client_percent");
        assert!(e.reason.contains("1 to 100"), "{}", e.reason);
    }
    let budget = |toml: &str| {
        let config = Config::parse(&format!("{ROUTE}{toml}"), Path::new("relay.toml")).unwrap();
        Settings::try_from(config)
            .unwrap()
            .hub
            .max_topics_per_client
    };
    assert_eq!(budget(""), 5000, "half of the default cap");
    assert_eq!(budget("[limits]\nmax_topics = 5\n"), 2, "rounded down");
    assert_eq!(budget("[limits]\nmax_topics = 1\n"), 1, "never below one");
    let all = "[limits]\nmax_topics = 8\nmax_topics_per_client_percent = 100\n";
    assert_eq!(budget(all), 8);
}

#[test]
fn compression_is_on_with_gzip_then_zstd_and_its_values_are_checked() {
    use crate::compress::Coding;
    let settings = Settings::try_from(parse(ROUTE).expect("valid")).expect("settings");
    let compression = settings.hub.compression;
    let offered: Vec<_> = compression.offered().collect();
    assert_eq!(offered, [Coding::Gzip, Coding::Zstd]);
    assert_eq!((compression.gzip_level, compression.zstd_level), (9, 12));
    assert_eq!(compression.segment.events, 1024);
    let zstd_first = parse(&format!(
        "{ROUTE}[compression]\nencodings = [\"zstd\", \"gzip\"]\n"
    ))
    .expect("valid");
    let offered: Vec<_> = Settings::try_from(zstd_first)
        .unwrap()
        .hub
        .compression
        .offered()
        .collect();
    assert_eq!(offered, [Coding::Zstd, Coding::Gzip]);
    let off = parse(&format!("{ROUTE}[compression]\nenabled = false\n")).expect("valid");
    assert!(!Settings::try_from(off).unwrap().hub.compression.enabled());
    let rejected = [
        (
            "encodings = [\"br\"]",
            "compression.encodings",
            "cannot be shared",
        ),
        (
            "encodings = [\"lz4\"]",
            "compression.encodings",
            "unknown coding",
        ),
        (
            "encodings = [\"gzip\", \"GZIP\"]",
            "compression.encodings",
            "twice",
        ),
        ("gzip_level = 0", "compression.gzip_level", "1 to 9"),
        ("zstd_level = 20", "compression.zstd_level", "1 to 19"),
        (
            "segment_events = 0",
            "compression.segment_events",
            "greater than 0",
        ),
        ("segment_ms = 0", "compression.segment_ms", "greater than 0"),
    ];
    for (line, key, reason) in rejected {
        let e = parse(&format!("{ROUTE}[compression]\n{line}\n")).unwrap_err();
        assert_eq!(e.key, key, "{line}");
        assert!(e.reason.contains(reason), "{line}: {e}");
    }
}
