//! Spec vectors and edge cases of the parser and the encoder.

use super::*;

fn parse_chunks(max: usize, chunks: &[&[u8]]) -> (Vec<Item>, Parser) {
    let mut parser = Parser::new(max);
    let mut out = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, &mut out);
    }
    (out, parser)
}

fn parse(input: &str) -> Vec<Item> {
    parse_chunks(1 << 20, &[input.as_bytes()]).0
}

fn data(d: &str) -> Item {
    event(None, None, Some(d))
}

fn event(id: Option<&str>, event_type: Option<&str>, data: Option<&str>) -> Item {
    Item::Event(Event {
        id: id.map(str::to_owned),
        event_type: event_type.map(str::to_owned),
        data: data.map(str::to_owned),
    })
}

#[test]
fn spec_stock_example_joins_data_lines() {
    assert_eq!(
        parse("data: YHOO\ndata: +2\ndata: 10\n\n"),
        [data("YHOO\n+2\n10")]
    );
}

#[test]
fn spec_four_block_example() {
    let input = ": test stream\n\ndata: first event\nid: 1\n\n\
                 data:second event\nid\n\ndata:  third event\n";
    let (items, mut parser) = parse_chunks(1 << 20, &[input.as_bytes()]);
    assert_eq!(
        items,
        [
            event(Some("1"), None, Some("first event")),
            event(Some(""), None, Some("second event")),
        ]
    );
    assert_eq!(parser.last_event_id(), Some(""));
    parser.finish();
    assert_eq!(parser.last_event_id(), Some(""));
    // With the final blank line the third event keeps both leading spaces but one.
    assert_eq!(parse("data:  third event\n\n"), [data(" third event")]);
}

#[test]
fn spec_two_block_example_data_colon_forms() {
    assert_eq!(
        parse("data\n\ndata\ndata\n\ndata:\n"),
        [data(""), data("\n")]
    );
    assert_eq!(
        parse("data:test\n\ndata: test\n\n"),
        [data("test"), data("test")]
    );
}

#[test]
fn one_leading_bom_is_stripped_even_split() {
    let (items, _) = parse_chunks(64, &[b"\xEF", b"\xBB", b"\xBFdata: a\n\n"]);
    assert_eq!(items, [data("a")]);
    // A second BOM is content: it becomes part of the field name, an unknown field.
    let (items, _) = parse_chunks(64, &[b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: b\n\n"]);
    assert_eq!(items, [data("b")]);
}

#[test]
fn partial_bom_is_replayed_as_content() {
    let (items, _) = parse_chunks(64, &[b"\xEF\xBB", b"data: a\n\n"]);
    assert_eq!(items, []);
    let (items, _) = parse_chunks(64, &[b"data: \xEF\xBB\n\n"]);
    let bad = Item::Malformed(Malformed::InvalidUtf8);
    assert_eq!(items, [bad, data("\u{FFFD}")]);
}

#[test]
fn cr_lf_and_crlf_all_end_lines() {
    assert_eq!(
        parse("data: a\rdata: b\r\n\rdata: c\n\r\n"),
        [data("a\nb"), data("c")]
    );
}

#[test]
fn crlf_split_across_chunks_is_one_line_end() {
    let (items, _) = parse_chunks(64, &[b"data: a\r", b"\ndata: b\r", b"", b"\n\r", b"\n"]);
    assert_eq!(items, [data("a\nb")]);
}

#[test]
fn invalid_utf8_split_mid_sequence_decodes_lossily() {
    let (items, _) = parse_chunks(64, &[b"data: \xE2\x82", b"\xAC \xFF\n\n"]);
    let bad = Item::Malformed(Malformed::InvalidUtf8);
    assert_eq!(items, [bad, data("\u{20AC} \u{FFFD}")]);
}

#[test]
fn id_with_nul_is_ignored() {
    let (items, parser) = parse_chunks(64, &[b"id: 7\n\nid: a\0b\ndata: x\n\n"]);
    let bad = Item::Malformed(Malformed::NulInId);
    assert_eq!(items, [event(Some("7"), None, None), bad, data("x")]);
    assert_eq!(parser.last_event_id(), Some("7"));
}

#[test]
fn retry_must_be_all_digits() {
    assert_eq!(
        parse("retry: 1500\nretry: 15x\nretry:\nretry: -1\nretry: 99999999999999999999999\n"),
        [
            Item::Retry(1500),
            Item::Malformed(Malformed::BadRetry),
            Item::Malformed(Malformed::BadRetry),
            Item::Malformed(Malformed::BadRetry),
            Item::Retry(u64::MAX)
        ]
    );
}

#[test]
fn finish_reports_whether_an_event_was_cut() {
    let mut parser = Parser::new(64);
    let mut out = Vec::new();
    parser.feed(b"data: a\n\n: comment", &mut out);
    assert!(!parser.finish(), "a clean end (a cut comment is no event)");
    parser.feed(b"data: a\n\ndata: b", &mut out);
    assert!(parser.finish(), "cut mid-line");
    parser.feed(b"id: 3\ndata: b\n", &mut out);
    assert!(parser.finish(), "cut before the blank line");
}

#[test]
fn id_only_block_moves_last_event_id_and_is_forwarded() {
    let (items, parser) = parse_chunks(64, &[b"id: 42\nevent: ignored\n\n"]);
    assert_eq!(items, [event(Some("42"), None, None)]);
    assert_eq!(parser.last_event_id(), Some("42"));
}

#[test]
fn later_blocks_without_id_keep_last_event_id_but_report_none() {
    let (items, parser) = parse_chunks(64, &[b"id: 1\ndata: a\n\ndata: b\n\n"]);
    assert_eq!(items, [event(Some("1"), None, Some("a")), data("b")]);
    assert_eq!(parser.last_event_id(), Some("1"));
}

#[test]
fn unterminated_block_is_discarded_by_finish() {
    let (items, mut parser) = parse_chunks(64, &[b"id: 1\n\nid: 2\ndata: half\n"]);
    assert_eq!(items, [event(Some("1"), None, None)]);
    parser.finish();
    assert_eq!(parser.last_event_id(), Some("1"));
    // A new connection: BOM allowed again, the discarded id does not leak into dispatch.
    let mut out = Vec::new();
    parser.feed(b"\xEF\xBB\xBFdata: next\n\n", &mut out);
    assert_eq!(out, [data("next")]);
    assert_eq!(parser.last_event_id(), Some("1"));
}

#[test]
fn finish_drops_unterminated_line_and_pending_cr() {
    let mut parser = Parser::new(64);
    let mut out = Vec::new();
    parser.feed(b"data: a\r", &mut out);
    parser.finish();
    parser.feed(b"\ndata: b\n\n", &mut out);
    assert_eq!(out, [data("b")]);
}

#[test]
fn empty_data_field_gives_empty_string() {
    assert_eq!(parse("data:\n\n"), [data("")]);
}

#[test]
fn empty_event_field_means_message() {
    assert_eq!(
        parse("event:\ndata: a\n\nevent: tick\ndata: b\n\n"),
        [data("a"), event(None, Some("tick"), Some("b"))]
    );
}

#[test]
fn field_without_colon_has_empty_value() {
    assert_eq!(
        parse("data\nevent\nunknown\nid\n\n"),
        [event(Some(""), None, Some(""))]
    );
}

#[test]
fn comments_and_unknown_fields_are_ignored() {
    assert_eq!(
        parse(": keep-alive\nfoo: bar\nDATA: no\ndata : no\ndata: yes\n\n"),
        [data("yes")]
    );
}

#[test]
fn oversized_block_is_dropped_and_stream_continues() {
    let big = format!("id: 9\ndata: {}\nretry: 5\n\ndata: ok\n\n", "x".repeat(40));
    let (items, parser) = parse_chunks(32, &[big.as_bytes()]);
    assert_eq!(
        items,
        [
            Item::Retry(5),
            Item::Oversized { bytes: 5 + 46 + 8 },
            event(Some("9"), None, None),
            data("ok"),
        ]
    );
    assert_eq!(parser.last_event_id(), Some("9"));
}

#[test]
fn oversized_block_without_id_emits_only_oversized() {
    let input = "data: 0123456789\ndata: 0123456789\n\n";
    assert_eq!(
        parse_chunks(20, &[input.as_bytes()]).0,
        [Item::Oversized { bytes: 32 }]
    );
}

#[test]
fn oversized_unterminated_line_is_bounded() {
    let mut parser = Parser::new(16);
    let mut out = Vec::new();
    parser.feed(b"data: ", &mut out);
    for _ in 0..1000 {
        parser.feed(&[b'y'; 1024], &mut out);
    }
    assert!(parser.line.capacity() <= 1024 + 16);
    assert_eq!(parser.line.len(), 16);
    parser.feed(b"\n\ndata: after\n\n", &mut out);
    assert_eq!(
        out,
        [
            Item::Oversized {
                bytes: 6 + 1000 * 1024
            },
            data("after"),
        ]
    );
}

#[test]
fn long_comments_do_not_count_toward_the_limit() {
    let input = format!(":{}\n: ping\ndata: ok\n\n", "c".repeat(100));
    assert_eq!(parse_chunks(16, &[input.as_bytes()]).0, [data("ok")]);
}

#[test]
fn encode_writes_canonical_frame() {
    let e = Event {
        id: Some("7".into()),
        event_type: Some("tick".into()),
        data: Some("a\n\n b".into()),
    };
    assert_eq!(
        &encode(&e)[..],
        b"id: 7\nevent: tick\ndata: a\ndata: \ndata:  b\n\n"
    );
    let (items, _) = parse_chunks(1024, &[&encode(&e)]);
    assert_eq!(items, [Item::Event(e)]);
}

#[test]
fn encode_id_only_event() {
    let e = Event {
        id: Some("5".into()),
        event_type: None,
        data: None,
    };
    assert_eq!(&encode(&e)[..], b"id: 5\n\n");
}

#[test]
fn encode_splits_cr_in_data_and_sanitises_id() {
    let e = Event {
        id: Some("a\nb".into()),
        event_type: None,
        data: Some("x\r\ny\rz".into()),
    };
    assert_eq!(&encode(&e)[..], b"id: a b\ndata: x\ndata: y\ndata: z\n\n");
}

#[test]
fn encode_retry_frame() {
    assert_eq!(&encode_retry(3000)[..], b"retry: 3000\n\n");
    assert_eq!(
        parse("retry: 18446744073709551615\n"),
        [Item::Retry(u64::MAX)]
    );
}

#[test]
fn encode_comment_sanitises_cr_lf() {
    assert_eq!(&encode_comment("a\r\nb\nc")[..], b": a  b c\n\n");
    assert_eq!(
        parse(std::str::from_utf8(&encode_comment("x\ny")).unwrap()),
        []
    );
}
