//! Subscribers in the same position on a topic (joined at the same moment, resumed from the
//! same id), one of each kind of `Accept-Encoding` over each protocol: by the contract they
//! read the same stream, so each one's decoded bytes must equal the identity subscriber's,
//! byte for byte, at every step and at the end.

use sse_relay::sse::{Item, Parser};

use super::{Clients, Proto, Stream};

/// What a kind of client sends as `Accept-Encoding`, and the coding it must be answered in.
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    pub name: &'static str,
    pub accept: Option<&'static str>,
    pub coding: Option<&'static str>,
}

/// No `Accept-Encoding`: identity.
pub const IDENTITY: Ask = Ask {
    name: "identity",
    accept: None,
    coding: None,
};
/// What Chromium sends over plain http (no br or zstd there): gzip.
pub const GZIP: Ask = Ask {
    name: "gzip",
    accept: Some("gzip, deflate, br"),
    coding: Some("gzip"),
};
/// zstd alone.
pub const ZSTD: Ask = Ask {
    name: "zstd",
    accept: Some("zstd"),
    coding: Some("zstd"),
};
/// What Chromium sends over https: the relay's first coding, gzip by default.
pub const BROWSER: Ask = Ask {
    name: "browser",
    accept: Some("gzip, deflate, br, zstd"),
    coding: Some("gzip"),
};

/// Every kind, identity first.
pub const ALL: [Ask; 4] = [IDENTITY, GZIP, ZSTD, BROWSER];

/// Subscribers in the same position; `streams[0]` (identity over the first protocol) is the
/// reference the others are compared with.
pub struct Group {
    pub streams: Vec<Stream>,
    pub asks: Vec<Ask>,
}

impl Group {
    /// One subscriber of each of `asks` over each of `protos` to `path`, with `headers`
    /// besides; checks each answer's headers.
    pub async fn open(
        clients: &mut Clients<'_>,
        name: &str,
        path: &str,
        headers: &[(&str, &str)],
        protos: &[Proto],
        asks: &[Ask],
    ) -> Group {
        assert!(
            asks[0].accept.is_none(),
            "the reference is an identity stream"
        );
        let mut group = Group {
            streams: Vec::new(),
            asks: Vec::new(),
        };
        for &proto in protos {
            for ask in asks {
                let label = format!("{name}/{}", ask.name);
                let stream = clients.open(proto, &label, path, ask.accept, headers).await;
                check_headers(&stream, ask);
                group.streams.push(stream);
                group.asks.push(*ask);
            }
        }
        group
    }

    /// Remembers where each stream is (its chunk count), before the next step.
    pub fn mark(&mut self) {
        self.streams.iter_mut().for_each(Stream::mark);
    }

    /// Reads the reference until `done` holds, then every other stream as far, and checks
    /// each decoded what the reference got so far, byte for byte.
    pub async fn until(&mut self, what: &str, done: impl Fn(&[u8]) -> bool) {
        let (reference, others) = self.streams.split_first_mut().expect("a reference");
        reference.until(what, done).await;
        let target = reference.plain.clone();
        for other in others {
            other.until(what, |p| p.len() >= target.len()).await;
            assert_eq!(
                String::from_utf8_lossy(&other.plain[..target.len()]),
                String::from_utf8_lossy(&target),
                "{} decodes to what {} got",
                other.name,
                reference.name
            );
        }
    }

    /// Reads until the last event every stream got is `id`.
    pub async fn until_id(&mut self, id: impl ToString) {
        let id = id.to_string();
        self.until(&format!("event {id}"), |p| {
            last_id(p).as_deref() == Some(&id)
        })
        .await;
    }

    /// Reads every stream to its end (the decoder judging it whole) and checks each is the
    /// reference's byte for byte.
    pub async fn until_end(&mut self) {
        for stream in &mut self.streams {
            stream.until_end().await;
        }
        let reference = self.streams[0].text();
        for other in &self.streams[1..] {
            assert_eq!(
                other.text(),
                reference,
                "{} decodes to the identity stream",
                other.name
            );
        }
    }

    /// The streams that asked for `coding`.
    pub fn of(&self, coding: &str) -> Vec<&Stream> {
        self.streams
            .iter()
            .zip(&self.asks)
            .filter(|(_, a)| a.coding == Some(coding))
            .map(|(s, _)| s)
            .collect()
    }
}

/// A 200 `text/event-stream` in the coding `ask` must get, with `Vary: Accept-Encoding`
/// (a relay with compression on).
pub fn check_headers(stream: &Stream, ask: &Ask) {
    let name = &stream.name;
    assert_eq!(stream.status, 200, "{name}");
    assert!(
        stream
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream")),
        "{name}: {:?}",
        stream.headers
    );
    assert_eq!(
        stream.coding.as_deref(),
        ask.coding,
        "{name}: Content-Encoding for Accept-Encoding {:?}",
        ask.accept
    );
    // With compression on, every answer varies by it, identity ones included.
    let vary = stream
        .header("vary")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        vary.contains("accept-encoding"),
        "{name}: the answer varies by Accept-Encoding: {:?}",
        stream.headers
    );
}

/// The id of the last event in `plain`.
pub fn last_id(plain: &[u8]) -> Option<String> {
    let mut items = Vec::new();
    Parser::new(1 << 20).feed(plain, &mut items);
    items.into_iter().rev().find_map(|item| match item {
        Item::Event(e) => e.id,
        _ => None,
    })
}

/// Pseudo-random hex (a fixed xorshift from `seed`): text that compresses poorly.
pub fn noise(seed: usize, len: usize) -> String {
    let mut x = (seed as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from_digit((x % 16) as u32, 16).unwrap_or('0')
        })
        .collect()
}

/// The origin's `i`th event: several lines, a type, non-ASCII text, repetitive or noisy
/// data, by turns.
pub fn origin_frame(i: usize) -> String {
    match i % 5 {
        0 => format!("id: {i}\ndata: line one of {i}\ndata: line two\n\n"),
        1 => format!(
            "id: {i}\nevent: tick\ndata: {{\"seq\":{i},\"price\":{}.{:02}}}\n\n",
            100 + i % 7,
            i % 100
        ),
        2 => format!("id: {i}\ndata: données ✓ n°{i}\n\n"),
        3 => format!("id: {i}\ndata: {}\n\n", "abc ".repeat(100)),
        _ => format!("id: {i}\ndata: {}\n\n", noise(i, 300)),
    }
}
