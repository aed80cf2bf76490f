//! One stream's events, checked: complete events are cut at blank lines, each one's sequence
//! number must follow the previous one's, and its latency is receive − publish time.

/// One stream's events and their order: splits the body at blank lines, reads `<seq> <publish
/// ns>` (or a JSON feed's `{"seq":…,"sent":…`) from each event's `data:` line (comments and
/// `retry:` hints carry none and are skipped)
/// and counts every event whose sequence number is not the one after the previous event's
/// (the first must be 0): a lost, duplicated or reordered event each counts.
#[derive(Default)]
pub struct SequenceCheck {
    /// Bytes of an event not yet complete.
    buf: Vec<u8>,
    pub(super) next_seq: u64,
}

/// What one body frame held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fed {
    /// Events completed by this frame, count.
    pub events: u64,
    /// Of those, events out of sequence, count.
    pub out_of_sequence: u64,
}

impl SequenceCheck {
    /// A check whose stream's first event must be `seq` (a stream opened after events were
    /// published, which gets live events only).
    pub fn starting_at(seq: u64) -> Self {
        Self {
            next_seq: seq,
            ..Self::default()
        }
    }

    /// Feeds one body frame received at `now` (ns, [`super::now_ns`]); pushes each completed event's
    /// latency (µs: `now` − its publish time) to `latencies`.
    pub fn feed(&mut self, data: &[u8], now: u64, latencies: &mut Vec<u64>) -> Fed {
        self.buf.extend_from_slice(data);
        let mut fed = Fed::default();
        let mut consumed = 0;
        while let Some(end) = find_blank_line(&self.buf[consumed..]) {
            let block = &self.buf[consumed..consumed + end];
            consumed += end + 2;
            let Some((seq, sent)) = parse_event(block) else {
                continue; // a comment, a retry hint
            };
            if seq != self.next_seq {
                fed.out_of_sequence += 1;
            }
            self.next_seq = seq + 1;
            fed.events += 1;
            latencies.push(now.saturating_sub(sent) / 1_000);
        }
        self.buf.drain(..consumed);
        fed
    }
}

fn find_blank_line(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\n\n")
}

/// `data: <seq> <publish ns> [padding]`, or a JSON feed's `data: {"seq":<seq>,"sent":<publish
/// ns>,…` → (seq, publish ns).
fn parse_event(block: &[u8]) -> Option<(u64, u64)> {
    let line = block
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"data:"))?;
    let text = std::str::from_utf8(line).ok()?.trim_start_matches(' ');
    if let Some(json) = text.strip_prefix("{\"seq\":") {
        let (seq, rest) = json.split_once(',')?;
        let rest = rest.strip_prefix("\"sent\":")?;
        let end = rest.find(|c: char| !c.is_ascii_digit())?;
        return Some((seq.parse().ok()?, rest[..end].parse().ok()?));
    }
    let mut parts = text.split_whitespace();
    let seq = parts.next()?.parse().ok()?;
    let sent = parts.next()?.parse().ok()?;
    Some((seq, sent))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event as both targets send it: `data: <seq> <publish ns> <padding>`.
    fn event(seq: u64, sent_ns: u64) -> String {
        format!("id: {seq}\ndata: {seq} {sent_ns} xxxxxxxx\n\n")
    }

    fn feed_all(check: &mut SequenceCheck, body: &str, piece: usize) -> (Fed, Vec<u64>) {
        let mut latencies = Vec::new();
        let mut total = Fed::default();
        for chunk in body.as_bytes().chunks(piece) {
            let fed = check.feed(chunk, 10_000_000, &mut latencies);
            total.events += fed.events;
            total.out_of_sequence += fed.out_of_sequence;
        }
        (total, latencies)
    }

    #[test]
    fn in_order_events_pass_in_any_split_and_preamble_is_skipped() {
        let body = format!(
            ": sse-relay\nretry: 2000\n\n{}{}:\n\n{}",
            event(0, 1_000_000),
            event(1, 2_000_000),
            event(2, 9_000_000)
        );
        for piece in [1, 2, 7, body.len()] {
            let (fed, latencies) = feed_all(&mut SequenceCheck::default(), &body, piece);
            assert_eq!(
                fed,
                Fed {
                    events: 3,
                    out_of_sequence: 0
                },
                "piece {piece}"
            );
            // Received at 10 ms: latencies in µs.
            assert_eq!(latencies, vec![9_000, 8_000, 1_000], "piece {piece}");
        }
    }

    #[test]
    fn json_events_carry_their_sequence_number_and_publish_time_first() {
        let body = format!(
            "{}data: {{\"seq\":1,\"sent\":3000000,\"sym\":\"X\"}}\n\n",
            event(0, 1_000_000)
        );
        let (fed, latencies) = feed_all(&mut SequenceCheck::default(), &body, 3);
        assert_eq!(fed.events, 2);
        assert_eq!(fed.out_of_sequence, 0);
        assert_eq!(latencies, vec![9_000, 7_000]);
        assert_eq!(parse_event(b"data: {\"seq\":1}"), None, "no publish time");
    }

    #[test]
    fn a_lost_event_is_out_of_sequence() {
        let body = format!("{}{}{}", event(0, 1), event(2, 1), event(3, 1));
        let (fed, _) = feed_all(&mut SequenceCheck::default(), &body, 5);
        assert_eq!(fed.events, 3);
        assert_eq!(fed.out_of_sequence, 1);
    }

    #[test]
    fn a_duplicated_or_reordered_event_is_out_of_sequence() {
        let duplicated = format!("{}{}{}", event(0, 1), event(1, 1), event(1, 1));
        let (fed, _) = feed_all(&mut SequenceCheck::default(), &duplicated, 64);
        assert_eq!(fed.out_of_sequence, 1);
        let reordered = format!("{}{}{}", event(0, 1), event(2, 1), event(1, 1));
        let (fed, _) = feed_all(&mut SequenceCheck::default(), &reordered, 64);
        assert_eq!(fed.out_of_sequence, 2);
    }

    #[test]
    fn a_stream_that_starts_late_is_out_of_sequence() {
        let (fed, _) = feed_all(&mut SequenceCheck::default(), &event(1, 1), 64);
        assert_eq!(fed.out_of_sequence, 1);
    }

    #[test]
    fn a_stream_opened_later_starts_at_the_next_event() {
        let body = format!("{}{}", event(7, 1), event(8, 1));
        let (fed, _) = feed_all(&mut SequenceCheck::starting_at(7), &body, 64);
        assert_eq!(fed.out_of_sequence, 0);
        let (fed, _) = feed_all(&mut SequenceCheck::starting_at(6), &body, 64);
        assert_eq!(fed.out_of_sequence, 1, "event 6 lost");
    }

    #[test]
    fn an_incomplete_event_waits_for_its_blank_line() {
        let mut check = SequenceCheck::default();
        let mut latencies = Vec::new();
        let whole = event(0, 1);
        let (head, tail) = whole.split_at(whole.len() - 1);
        assert_eq!(check.feed(head.as_bytes(), 5_000, &mut latencies).events, 0);
        assert_eq!(check.feed(tail.as_bytes(), 5_000, &mut latencies).events, 1);
    }
}
