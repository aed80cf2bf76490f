//! Reading what the browser scripts (`tests/browser/*.mjs`) report: one JSON line per phase on
//! their stdout, other lines echoed for the test's log. It only reads; starting node and
//! Chromium is each test's own.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{BufReader, Lines};
use tokio::process::ChildStdout;

/// The script's next line reporting `phase` (`"phase":"<phase>"`), as JSON; the lines before it
/// are echoed. Fails the test when the script ends first or nothing comes within `wait`.
pub async fn next_phase(
    lines: &mut Lines<BufReader<ChildStdout>>,
    phase: &str,
    wait: Duration,
) -> Value {
    let wanted = format!("\"phase\":\"{phase}\"");
    tokio::time::timeout(wait, async {
        while let Some(line) = lines.next_line().await.expect("node stdout") {
            if line.contains(&wanted) {
                return serde_json::from_str::<Value>(&line).expect("a JSON line");
            }
            eprintln!("  | {line}");
        }
        panic!("the browser script ended without reporting {phase}")
    })
    .await
    .unwrap_or_else(|_| panic!("the browser script did not report {phase} in time"))
}
