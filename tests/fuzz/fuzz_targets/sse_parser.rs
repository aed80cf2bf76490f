//! Fuzz target: the WHATWG SSE parser. Arbitrary bytes, fed whole and in chunks chosen by the
//! input itself, must never panic and must give the same items either way (chunking
//! invariance); every parsed event must survive encode → parse unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sse_relay::sse::{encode, Item, Parser};

fuzz_target!(|input: &[u8]| {
    let Some((&control, data)) = input.split_first() else {
        return;
    };
    // The limit ranges from tiny (exercising the oversized path) to generous.
    let limit = 16 + usize::from(control) * 8;
    let mut whole = Parser::new(limit);
    let mut expected = Vec::new();
    whole.feed(data, &mut expected);
    whole.finish();

    // Chunk lengths cycle through the input's own bytes, so the fuzzer controls the splits.
    let mut chunked = Parser::new(limit);
    let mut got = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let len = (usize::from(data[i % data.len()]) % 7 + 1).min(rest.len());
        chunked.feed(&rest[..len], &mut got);
        rest = &rest[len..];
        i += 1;
    }
    chunked.finish();
    assert_eq!(expected, got, "chunking changed the items");
    assert_eq!(whole.last_event_id(), chunked.last_event_id());

    for item in &expected {
        if let Item::Event(event) = item {
            let mut again = Parser::new(usize::MAX);
            let mut items = Vec::new();
            again.feed(&encode(event), &mut items);
            assert_eq!(items, vec![Item::Event(event.clone())], "encode → parse round trip");
        }
    }
});
