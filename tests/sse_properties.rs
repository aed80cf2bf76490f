//! Property tests for the SSE parser and encoder: chunking never changes what is parsed, and
//! every encoded frame parses back to exactly the event it came from.

use proptest::prelude::*;
use sse_relay::sse::*;

/// Feeds `input` split at `cuts` (positions taken modulo the length), then returns the items and
/// the last event id.
fn parse_split(max: usize, input: &[u8], cuts: &[usize]) -> (Vec<Item>, Option<String>) {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.push(input.len());
    points.sort_unstable();
    let mut parser = Parser::new(max);
    let mut out = Vec::new();
    let mut start = 0;
    for end in points {
        parser.feed(&input[start..end], &mut out);
        start = end;
    }
    (out, parser.last_event_id().map(str::to_owned))
}

fn parse_whole(max: usize, input: &[u8]) -> (Vec<Item>, Option<String>) {
    parse_split(max, input, &[])
}

/// One SSE-ish line: fields the parser knows, near-misses, comments, blanks and noise.
fn sse_line() -> impl Strategy<Value = Vec<u8>> {
    let text = "[a-z0-9 :\u{e9}\u{1F600}]{0,12}";
    prop_oneof![
        text.prop_map(|t| format!("data: {t}").into_bytes()),
        text.prop_map(|t| format!("data:{t}").into_bytes()),
        Just(b"data".to_vec()),
        text.prop_map(|t| format!("id: {t}").into_bytes()),
        Just(b"id: a\0b".to_vec()),
        Just(b"id".to_vec()),
        text.prop_map(|t| format!("event: {t}").into_bytes()),
        "[0-9]{0,22}".prop_map(|d| format!("retry: {d}").into_bytes()),
        text.prop_map(|t| format!("retry: {t}").into_bytes()),
        text.prop_map(|t| format!(":{t}").into_bytes()),
        Just(Vec::new()),
        Just(Vec::new()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just(b"\xEF\xBB".to_vec()),
        prop::collection::vec(any::<u8>(), 0..8),
    ]
}

fn terminator() -> impl Strategy<Value = &'static [u8]> {
    prop_oneof![Just(&b"\n"[..]), Just(&b"\r"[..]), Just(&b"\r\n"[..])]
}

/// A stream of SSE-ish lines, optionally behind a BOM, possibly without a final terminator.
fn sse_stream() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            Just(&b""[..]),
            Just(&b"\xEF\xBB\xBF"[..]),
            Just(&b"\xEF\xBB"[..])
        ],
        prop::collection::vec((sse_line(), terminator()), 0..24),
        any::<bool>(),
    )
        .prop_map(|(bom, lines, terminate_last)| {
            let mut out = bom.to_vec();
            let count = lines.len();
            for (i, (line, end)) in lines.into_iter().enumerate() {
                out.extend_from_slice(&line);
                if terminate_last || i + 1 < count {
                    out.extend_from_slice(end);
                }
            }
            out
        })
}

fn any_stream() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        prop::collection::vec(
            prop_oneof![
                Just(b'\r'),
                Just(b'\n'),
                Just(b':'),
                Just(b' '),
                Just(0xEF),
                Just(0xBB),
                Just(0xBF),
                any::<u8>(),
            ],
            0..256
        ),
        sse_stream(),
    ]
}

/// A valid event: id without CR/LF/NUL, non-empty type without CR/LF, data lines without CR/LF;
/// or an id-only event.
fn valid_event() -> impl Strategy<Value = Event> {
    let id = "[^\r\n\0]{0,16}";
    let full = (
        prop::option::of(id),
        prop::option::of("[^\r\n]{1,12}"),
        prop::collection::vec("[^\r\n]{0,24}", 1..5),
    )
        .prop_map(|(id, event_type, lines)| Event {
            id,
            event_type,
            data: Some(lines.join("\n")),
        });
    let id_only = id.prop_map(|id| Event {
        id: Some(id),
        event_type: None,
        data: None,
    });
    prop_oneof![4 => full, 1 => id_only]
}

/// One frame of a relayed stream and the item it must parse back to (None for comments).
fn frame() -> impl Strategy<Value = (bytes::Bytes, Option<Item>)> {
    prop_oneof![
        8 => valid_event().prop_map(|e| (encode(&e), Some(Item::Event(e)))),
        1 => any::<u64>().prop_map(|ms| (encode_retry(ms), Some(Item::Retry(ms)))),
        1 => "[^\0]{0,12}".prop_map(|t| (encode_comment(&t), None)),
    ]
}

proptest! {
    #[test]
    fn chunking_never_changes_the_items(
        input in any_stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        max in prop_oneof![0usize..48, Just(1usize << 20)],
    ) {
        let whole = parse_whole(max, &input);
        prop_assert_eq!(&parse_split(max, &input, &cuts), &whole);
        let bytewise: Vec<usize> = (0..input.len()).collect();
        prop_assert_eq!(&parse_split(max, &input, &bytewise), &whole);
    }

    #[test]
    fn encoded_event_parses_back_to_itself(event in valid_event()) {
        let (items, last_id) = parse_whole(1 << 20, &encode(&event));
        prop_assert_eq!(last_id, event.id.clone());
        prop_assert_eq!(items, vec![Item::Event(event)]);
    }

    #[test]
    fn encoded_stream_round_trips_in_order_under_any_chunking(
        frames in prop::collection::vec(frame(), 0..24),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        let stream: Vec<u8> = frames.iter().flat_map(|(b, _)| b.iter().copied()).collect();
        let expected: Vec<Item> = frames.iter().filter_map(|(_, item)| item.clone()).collect();
        let expected_id = expected.iter().rev().find_map(|item| match item {
            Item::Event(Event { id: Some(id), .. }) => Some(id.clone()),
            _ => None,
        });
        let (items, last_id) = parse_split(1 << 20, &stream, &cuts);
        prop_assert_eq!(items, expected);
        prop_assert_eq!(last_id, expected_id);
    }
}
