//! The log lines of a per-user topic (a route whose upstream takes a `{jwt.*}` claim) carry
//! the claim's hash, never the claim. Alone in its binary: the log subscriber it sets is the
//! process's.

mod per_user;
mod support;

use std::sync::{Arc, Mutex};

use per_user::{bearer_of, per_user_relay, sub_hash};
use support::origin::Canned;
use support::{eventually, TestOrigin};

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn a_per_user_topics_log_lines_carry_the_hash_not_the_claim() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let origin = TestOrigin::start().await;
    let relay = per_user_relay(&origin).await;
    origin.answer("user-alice%40example.com", Canned::status(204, ""));
    let alice = bearer_of("alice@example.com");
    let ended = relay
        .h2()
        .await
        .get("/me/events", &[("authorization", &alice)])
        .await;
    assert_eq!(ended.status(), 204, "the origin's 204 reaches the client");
    eventually("the topic's close logged", || {
        captured.text().contains("origin answered 204")
    })
    .await;
    let text = captured.text();
    let line = text
        .lines()
        .find(|l| l.contains("origin answered 204"))
        .unwrap();
    assert!(line.contains("{jwt.sub:"), "the topic's span in:\n{text}");
    sub_hash(line);
    assert!(!text.contains("alice"), "a claim in the log:\n{text}");
    relay.stop().await;
}
