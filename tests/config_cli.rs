//! The binary rejects bad configs before binding anything: exit code 2 and a message naming
//! the file, the key and the reason.

mod support;

use std::process::Command;

const ROUTE: &str =
    "[[route]]\npath = \"/events/{topic}\"\nupstream = \"http://127.0.0.1:8081/sub/{topic}\"\n";

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sse-relay"))
        .args(args)
        .output()
        .expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes `text` to a config file whose `[server] listen` is a port held by this test, so a
/// relay that bound anything before validating would be caught.
fn rejected(name: &str, text: &str, key: &str, reason_part: &str) {
    let path = support::temp_dir("config").join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    let file = path.to_str().unwrap();
    for args in [vec!["--config", file], vec!["check-config", file]] {
        let (code, _, stderr) = run(&args);
        assert_eq!(code, 2, "{name}: exit code 2; stderr: {stderr}");
        assert!(stderr.contains(file), "{name}: names the file: {stderr}");
        assert!(
            stderr.contains(key),
            "{name}: names the key {key}: {stderr}"
        );
        assert!(
            stderr.contains(reason_part),
            "{name}: says why ({reason_part}): {stderr}"
        );
        assert!(
            !stderr.contains("listening"),
            "{name}: nothing bound: {stderr}"
        );
    }
}

#[test]
fn unknown_key_is_rejected() {
    rejected(
        "unknown",
        &format!("{ROUTE}[server]\nlisten_on = \"127.0.0.1:1\"\n"),
        "server",
        "listen_on",
    );
}

#[test]
fn bad_address_is_rejected() {
    rejected(
        "address",
        &format!("[server]\nlisten = \"localhost\"\n{ROUTE}"),
        "server.listen",
        "address",
    );
}

#[test]
fn missing_cert_file_is_rejected() {
    rejected(
        "cert",
        &format!("[server]\ntls_cert = \"/no/such.crt\"\ntls_key = \"/no/such.key\"\n{ROUTE}"),
        "server.tls_cert",
        "/no/such.crt",
    );
}

#[test]
fn template_variable_not_in_path_is_rejected() {
    rejected(
        "template",
        "[[route]]\npath = \"/events/{topic}\"\nupstream = \"http://127.0.0.1:8081/sub/{room}\"\n",
        "route[0].upstream",
        "{room}",
    );
}

#[test]
fn a_variable_in_the_upstream_host_needs_the_list_of_hosts() {
    for upstream in [
        "http://{topic}:8081/sub",
        "http://{topic}.api.example/sub",
        "http://127.0.0.1:{topic}/sub",
        "http://{topic}@127.0.0.1/sub",
    ] {
        rejected(
            "ssrf",
            &format!("[[route]]\npath = \"/t/{{topic}}\"\nupstream = \"{upstream}\"\n"),
            "route[0].upstream",
            "upstream_hosts",
        );
    }
}

#[test]
fn bad_values_are_rejected() {
    rejected(
        "zero",
        &format!("{ROUTE}[replay]\nmax_events = 0\n"),
        "replay.max_events",
        "greater than 0",
    );
    rejected(
        "policy",
        &format!("{ROUTE}[downstream]\nlag_policy = \"queue\"\n"),
        "downstream.lag_policy",
        "queue",
    );
    rejected(
        "type",
        &format!("{ROUTE}[limits]\nmax_event_bytes = \"big\"\n"),
        "limits.max_event_bytes",
        "expected usize",
    );
    rejected("syntax", "[[route]\n", "(file)", "line 1");
    rejected("none", "", "route", "at least one");
}

#[test]
fn unreadable_file_is_rejected() {
    let (code, _, stderr) = run(&["--config", "/no/such/relay.toml"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("/no/such/relay.toml") && stderr.contains("cannot read"),
        "{stderr}"
    );
}

#[test]
fn shipped_config_is_valid() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/relay.toml");
    let (code, stdout, stderr) = run(&["check-config", shipped]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("ok"));
}

#[test]
fn an_admin_token_file_that_is_missing_or_empty_is_rejected() {
    rejected(
        "admin-token-missing",
        &format!("{ROUTE}[admin]\ntoken_file = \"/no/such/admin-token\"\n"),
        "admin.token_file",
        "cannot read /no/such/admin-token",
    );
    let empty = support::temp_dir("config").join("admin-token");
    std::fs::write(&empty, " \n").unwrap();
    let empty = empty.to_str().unwrap();
    rejected(
        "admin-token-empty",
        &format!("{ROUTE}[admin]\ntoken_file = {empty:?}\n"),
        "admin.token_file",
        &format!("{empty} is empty"),
    );
}
