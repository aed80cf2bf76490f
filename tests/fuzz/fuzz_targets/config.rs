//! Fuzz target: the config loader. Arbitrary text (and environment overrides derived from it)
//! must give validated settings or a named error, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sse_relay::config::Settings;

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    let _ = Settings::parse(&text, Path::new("fuzz.toml"));
    // The last line, if it looks like NAME=VALUE, also becomes an environment override.
    if let Some((name, value)) = text.lines().last().and_then(|l| l.split_once('=')) {
        let env = vec![(format!("SSE_RELAY__{name}"), value.to_string())];
        let _ = Settings::parse_with_env(&text, Path::new("fuzz.toml"), env.into_iter());
    }
});
