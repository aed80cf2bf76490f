//! The three feeds the compression benchmark publishes, each a made-up but typical event stream
//! written here from a seeded generator (no third-party data): JSON market ticks (~150 B), an
//! LLM answer streamed as chat-completion delta chunks (`{"choices":[{"delta":{"content":…}}]}`),
//! and 30 KB JSON snapshots of a service dashboard in which every row's figures move a little
//! between snapshots. Every event's JSON opens with `{"seq":<n>,"sent":<publish ns>,` so the
//! client can check order and take latency (client/sequence.rs); this module only makes the
//! text after `"sent":<ns>`.

use std::fmt::Write as _;

/// A feed.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum FeedKind {
    /// JSON ticks, ~150 B each.
    Ticks,
    /// LLM-style chat-completion delta chunks, a word or three each.
    Deltas,
    /// 30 KB JSON snapshots.
    Snapshots,
}

impl FeedKind {
    /// Every feed, in run order.
    pub const ALL: [FeedKind; 3] = [Self::Ticks, Self::Deltas, Self::Snapshots];

    /// Name (also the channel's prefix).
    pub fn name(self) -> &'static str {
        match self {
            Self::Ticks => "ticks",
            Self::Deltas => "deltas",
            Self::Snapshots => "snapshots",
        }
    }
}

/// Ticker symbols of the ticks feed (their prices start at `100 + 7 × index` dollars).
const SYMBOLS: [&str; 24] = [
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "AVGO", "ORCL", "ADBE", "CRM", "AMD",
    "INTC", "CSCO", "QCOM", "TXN", "IBM", "NFLX", "PYPL", "SHOP", "UBER", "ABNB", "SNOW", "PLTR",
];
/// Trading venues of the ticks feed.
const VENUES: [&str; 4] = ["XNAS", "XNYS", "BATS", "ARCX"];
/// Words the deltas feed's answer is made of.
const WORDS: [&str; 48] = [
    "the",
    "relay",
    "keeps",
    "one",
    "subscription",
    "per",
    "topic",
    "and",
    "writes",
    "each",
    "event",
    "to",
    "every",
    "subscriber",
    "so",
    "that",
    "origin",
    "serves",
    "a",
    "single",
    "stream",
    "while",
    "thousands",
    "of",
    "browsers",
    "watch",
    "it",
    "over",
    "HTTP/2",
    "which",
    "carries",
    "many",
    "streams",
    "on",
    "connection",
    "compression",
    "shares",
    "bytes",
    "between",
    "readers",
    "in",
    "order",
    "without",
    "adding",
    "latency",
    "because",
    "blocks",
    "flush",
];
/// Regions of the snapshots feed's services.
const REGIONS: [&str; 6] = [
    "eu-west-1",
    "eu-central-1",
    "us-east-1",
    "us-west-2",
    "ap-south-1",
    "ap-northeast-1",
];
/// Services of the snapshots feed, each run in many shards.
const SERVICES: [&str; 8] = [
    "checkout",
    "search",
    "catalog",
    "payments",
    "auth",
    "inventory",
    "shipping",
    "reviews",
];
/// How large a snapshot is made, at least (bytes).
const SNAPSHOT_BYTES: usize = 30_000;

/// splitmix64: a small seeded generator, so every run publishes the same feeds.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A step in `-k..=k`.
    fn step(&mut self, k: i64) -> i64 {
        self.below(2 * k as u64 + 1) as i64 - k
    }
}

/// One row of the snapshots feed: a service shard and its figures (fixed point, hundredths).
struct Row {
    rps: i64,
    p50: i64,
    p99: i64,
    cpu: i64,
    mem_mb: i64,
    errors: i64,
    pods: i64,
}

/// A feed's generator: the text of each next event after its `"sent":<ns>`.
pub struct Feed {
    kind: FeedKind,
    rng: Rng,
    /// Ticks: each symbol's last price, cents. Snapshots: unused.
    prices: Vec<i64>,
    /// Snapshots: the rows.
    rows: Vec<Row>,
    /// A synthetic clock, ms since 2026-12-07 00:00 UTC.
    clock_ms: u64,
}

impl Feed {
    /// A feed of `kind`, seeded the same every run.
    pub fn new(kind: FeedKind) -> Self {
        let mut feed = Self {
            kind,
            rng: Rng(0x5EED_0000 + kind as u64),
            prices: (0..SYMBOLS.len() as i64)
                .map(|i| 10_000 + 700 * i)
                .collect(),
            rows: Vec::new(),
            clock_ms: 14 * 3_600_000,
        };
        if kind == FeedKind::Snapshots {
            feed.grow_snapshot();
        }
        feed
    }

    /// The text of the next event after `{"seq":<n>,"sent":<ns>` (it ends the JSON object).
    pub fn next_rest(&mut self) -> String {
        match self.kind {
            FeedKind::Ticks => self.tick(),
            FeedKind::Deltas => self.delta(),
            FeedKind::Snapshots => self.snapshot(),
        }
    }

    /// The whole event data of `seq` published at `sent` ns, as the publisher sends it.
    pub fn event(seq: u64, sent: u64, rest: &str) -> String {
        format!("{{\"seq\":{seq},\"sent\":{sent}{rest}")
    }

    fn timestamp(&mut self, step_ms: u64) -> String {
        self.clock_ms += 1 + self.rng.below(step_ms);
        let ms = self.clock_ms;
        let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
        format!("2026-12-07T{h:02}:{m:02}:{s:02}.{milli:03}Z")
    }

    fn tick(&mut self) -> String {
        let i = self.rng.below(SYMBOLS.len() as u64) as usize;
        self.prices[i] = (self.prices[i] + self.rng.step(12)).max(100);
        let last = self.prices[i];
        let spread = 1 + self.rng.below(4) as i64;
        let size = 100 * (1 + self.rng.below(20));
        let volume = 1_000_000 + self.rng.below(40_000_000);
        let venue = VENUES[self.rng.below(VENUES.len() as u64) as usize];
        let ts = self.timestamp(60);
        format!(
            ",\"sym\":\"{}\",\"bid\":{},\"ask\":{},\"last\":{},\"size\":{size},\"volume\":{volume},\
             \"venue\":\"{venue}\",\"ts\":\"{ts}\"}}",
            SYMBOLS[i],
            cents(last - spread),
            cents(last + spread),
            cents(last),
        )
    }

    fn delta(&mut self) -> String {
        let mut content = String::new();
        for _ in 0..1 + self.rng.below(3) {
            content.push(' ');
            content.push_str(WORDS[self.rng.below(WORDS.len() as u64) as usize]);
        }
        match self.rng.below(12) {
            0 => content.push('.'),
            1 => content.push(','),
            _ => {}
        }
        format!(
            ",\"id\":\"chatcmpl-b7Qx2LrT9mKc4VwZ8sNd\",\"object\":\"chat.completion.chunk\",\
             \"created\":1796654003,\"model\":\"gpt-4o-mini-2024-07-18\",\
             \"system_fingerprint\":\"fp_51e4c3a7d2\",\"choices\":[{{\"index\":0,\
             \"delta\":{{\"content\":\"{content}\"}},\"logprobs\":null,\"finish_reason\":null}}]}}"
        )
    }

    /// Adds rows until a snapshot is at least [`SNAPSHOT_BYTES`].
    fn grow_snapshot(&mut self) {
        while self.snapshot_text().len() < SNAPSHOT_BYTES {
            let rps = 20_000 + self.rng.below(500_000) as i64;
            let p50 = 300 + self.rng.below(2_000) as i64;
            self.rows.push(Row {
                rps,
                p50,
                p99: p50 * 4 + self.rng.below(5_000) as i64,
                cpu: 500 + self.rng.below(8_000) as i64,
                mem_mb: 256 + self.rng.below(3_800) as i64,
                errors: self.rng.below(20) as i64,
                pods: 2 + self.rng.below(10) as i64,
            });
        }
    }

    fn snapshot(&mut self) -> String {
        for r in 0..self.rows.len() {
            let (rps, p50, p99, cpu) = (
                self.rng.step(900),
                self.rng.step(20),
                self.rng.step(150),
                self.rng.step(120),
            );
            let errors = i64::from(self.rng.below(8) == 0) * self.rng.step(2);
            let row = &mut self.rows[r];
            row.rps = (row.rps + rps).max(100);
            row.p50 = (row.p50 + p50).max(50);
            row.p99 = (row.p99 + p99).max(row.p50);
            row.cpu = (row.cpu + cpu).clamp(10, 10_000);
            row.errors = (row.errors + errors).max(0);
        }
        self.timestamp(1000);
        self.snapshot_text()
    }

    fn snapshot_text(&self) -> String {
        let ms = self.clock_ms;
        let mut s = format!(
            ",\"kind\":\"snapshot\",\"generated\":\"2026-12-07T{:02}:{:02}:{:02}Z\",\"services\":[",
            ms / 3_600_000,
            ms / 60_000 % 60,
            ms / 1000 % 60
        );
        for (i, row) in self.rows.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(
                s,
                "{{\"name\":\"{}-{:03}\",\"region\":\"{}\",\"status\":\"{}\",\"rps\":{},\
                 \"p50_ms\":{},\"p99_ms\":{},\"cpu_pct\":{},\"mem_mb\":{},\"errors\":{},\
                 \"pods\":{},\"version\":\"v2.{}.{}\"}}",
                SERVICES[i % SERVICES.len()],
                i,
                REGIONS[i % REGIONS.len()],
                if row.errors > 15 { "degraded" } else { "ok" },
                cents(row.rps),
                cents(row.p50),
                cents(row.p99),
                cents(row.cpu),
                row.mem_mb,
                row.errors,
                row.pods,
                30 + i % 4,
                i % 7,
            );
        }
        s.push_str("]}");
        s
    }
}

/// Hundredths as a decimal: 12345 → `123.45`.
fn cents(v: i64) -> String {
    format!("{}.{:02}", v / 100, v % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(kind: FeedKind, n: usize) -> Vec<String> {
        let mut feed = Feed::new(kind);
        (0..n)
            .map(|i| Feed::event(i as u64, 1_234_567_890_123, &feed.next_rest()))
            .collect()
    }

    #[test]
    fn every_event_is_one_line_of_json_that_opens_with_its_seq_and_publish_time() {
        for kind in FeedKind::ALL {
            for (i, e) in sample(kind, 20).iter().enumerate() {
                assert!(!e.contains('\n'), "{kind:?}: one data line");
                let v: serde_json::Value = serde_json::from_str(e).unwrap();
                assert_eq!(v["seq"], i as u64, "{kind:?}");
                assert!(e.starts_with(&format!("{{\"seq\":{i},\"sent\":1234567890123,")));
            }
        }
    }

    #[test]
    fn the_feeds_have_the_sizes_the_issue_names() {
        let mean = |kind| {
            let s = sample(kind, 200);
            s.iter().map(String::len).sum::<usize>() / s.len()
        };
        let ticks = mean(FeedKind::Ticks);
        assert!((130..=170).contains(&ticks), "ticks {ticks} B");
        let deltas = mean(FeedKind::Deltas);
        assert!((200..=300).contains(&deltas), "deltas {deltas} B");
        let snapshots = mean(FeedKind::Snapshots);
        assert!(
            (30_000..=31_000).contains(&snapshots),
            "snapshots {snapshots} B"
        );
    }

    #[test]
    fn a_feed_is_the_same_every_run_and_its_events_differ() {
        let (a, b) = (sample(FeedKind::Ticks, 5), sample(FeedKind::Ticks, 5));
        assert_eq!(a, b);
        assert_ne!(a[1][20..], a[2][20..]);
        let s = sample(FeedKind::Snapshots, 2);
        assert_ne!(s[0][20..], s[1][20..]);
    }
}
