//! Real decoders for the relay's compressed event streams (tests/acceptance_compression.rs):
//! each compressed subscriber's body is read chunk by chunk as the client received it (hyper
//! without decompression, h2 or HTTP/1.1 over TLS), and every chunk is handed at once to a
//! Python process of its own (`tests/decoders/decode.py`: the zlib module for gzip, the
//! `zstandard` package, libzstd, for zstd), whose output is the stream the client sees.
//!
//! A missing python3 or zstandard fails the test (never skips it).
#![allow(dead_code)]

pub mod group;
pub mod judge;

use std::process::Stdio;

use base64::Engine as _;
use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use super::support::{H2Client, TestRelay, WAIT};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/decoders/decode.py");
const INSTALL: &str = "pip install -r tests/decoders/requirements.txt";

/// Fails the test unless python3 with the `zstandard` package is there.
pub fn require_decoders() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import zlib, zstandard"])
        .output()
        .unwrap_or_else(|e| panic!("acceptance test needs python3 ({e}); then {INSTALL}"));
    assert!(
        probe.status.success(),
        "acceptance test needs Python's zstandard package: {INSTALL}\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
}

/// How a stream's end was judged by the decoder.
#[derive(Debug)]
pub struct End {
    /// gzip: the member ended with a valid trailer; zstd: the last frame ended; and nothing
    /// followed.
    pub complete: bool,
    /// The decoder's words (the frames counted, or what was wrong).
    pub detail: String,
    /// The whole stream decoded again in one piece.
    pub whole: Vec<u8>,
}

/// One stream's decoder: `decode.py CODING`, fed chunk by chunk.
struct Decoder {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Decoder {
    async fn spawn(coding: &str) -> Decoder {
        let mut child = tokio::process::Command::new("python3")
            .arg(SCRIPT)
            .arg(coding)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("needs python3 to run {SCRIPT}: {e}"));
        let stdin = child.stdin.take().expect("decoder stdin");
        let stdout = BufReader::new(child.stdout.take().expect("decoder stdout")).lines();
        Decoder {
            _child: child,
            stdin,
            stdout,
        }
    }

    async fn ask(&mut self, line: String) -> Value {
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("write to the decoder");
        self.stdin.flush().await.expect("flush to the decoder");
        let answer = tokio::time::timeout(WAIT, self.stdout.next_line())
            .await
            .expect("the decoder answers")
            .expect("read the decoder")
            .unwrap_or_else(|| panic!("the decoder exited; needs {INSTALL}"));
        serde_json::from_str(&answer).expect("a JSON answer")
    }

    /// What `chunk` decodes to at once; `Err` with the decoder's error.
    async fn chunk(&mut self, chunk: &[u8]) -> Result<Vec<u8>, String> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let answer = self.ask(format!("c {}\n", b64.encode(chunk))).await;
        match answer["plain"].as_str() {
            Some(plain) => Ok(b64.decode(plain).expect("base64")),
            None => Err(answer["error"].as_str().unwrap_or("?").to_string()),
        }
    }

    async fn end(&mut self) -> End {
        let b64 = base64::engine::general_purpose::STANDARD;
        let answer = self.ask("e\n".into()).await;
        End {
            complete: answer["complete"].as_bool().expect("complete"),
            detail: answer["detail"].as_str().unwrap_or_default().to_string(),
            whole: b64
                .decode(answer["whole"].as_str().unwrap_or_default())
                .expect("base64"),
        }
    }
}

/// The protocol a subscriber speaks to the relay (over TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    H2,
    Http1,
}

/// Opens subscribers to one relay: h2 ones share a connection, each HTTP/1.1 one has its own.
pub struct Clients<'a> {
    relay: &'a TestRelay,
    h2: Option<H2Client>,
}

impl<'a> Clients<'a> {
    pub fn new(relay: &'a TestRelay) -> Self {
        Clients { relay, h2: None }
    }

    /// A subscriber of `path` over `proto`, asking for `accept` (`None`: no
    /// `Accept-Encoding`), with `headers` besides.
    pub async fn open(
        &mut self,
        proto: Proto,
        name: &str,
        path: &str,
        accept: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Stream {
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        all.extend(accept.map(|a| ("accept-encoding", a)));
        let response = match proto {
            Proto::H2 => {
                if self.h2.is_none() {
                    self.h2 = Some(self.relay.h2().await);
                }
                let conn = self.h2.as_mut().expect("h2 connection");
                conn.get(path, &all).await
            }
            Proto::Http1 => self.relay.h1().await.get(path, &all).await,
        };
        Stream::open(format!("{name} ({proto:?})"), response, true).await
    }
}

/// One subscriber's stream: the chunks as received and what they decoded to.
pub struct Stream {
    pub name: String,
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    /// The response's `Content-Encoding` (`None`: identity).
    pub coding: Option<String>,
    body: Incoming,
    decoder: Option<Decoder>,
    /// Every body chunk, as received.
    pub chunks: Vec<Bytes>,
    /// The stream as the client reads it: the chunks decoded (identity: as they came).
    pub plain: Vec<u8>,
    /// Each chunk must decode at once to whole frames (off for a stream whose chunks a small
    /// flow-control window splits).
    pub strict: bool,
    /// The stream's end, once it came (the decoder's judgement for a compressed one).
    pub end: Option<End>,
    /// Chunk counts at the test's steps ([`Stream::mark`]).
    pub marks: Vec<usize>,
}

impl Stream {
    /// Reads `response` as an event stream, decoding it by its `Content-Encoding`.
    pub async fn open(name: String, response: Response<Incoming>, strict: bool) -> Stream {
        let (parts, body) = response.into_parts();
        let coding = parts
            .headers
            .get(http::header::CONTENT_ENCODING)
            .map(|v| v.to_str().expect("ASCII Content-Encoding").to_string());
        let decoder = match coding.as_deref() {
            None => None,
            Some(c @ ("gzip" | "zstd")) => Some(Decoder::spawn(c).await),
            Some(other) => panic!("{name}: a coding the relay does not offer: {other}"),
        };
        Stream {
            name,
            status: parts.status,
            headers: parts.headers,
            coding,
            body,
            decoder,
            chunks: Vec::new(),
            plain: Vec::new(),
            strict,
            end: None,
            marks: Vec::new(),
        }
    }

    /// Remembers the chunk count: what comes next is the next step's.
    pub fn mark(&mut self) {
        self.marks.push(self.chunks.len());
    }

    /// The bytes received from mark `step` to the next mark (or to now).
    pub fn step_bytes(&self, step: usize) -> Vec<u8> {
        let from = self.marks[step];
        let to = self
            .marks
            .get(step + 1)
            .copied()
            .unwrap_or(self.chunks.len());
        self.chunks[from..to].concat()
    }

    /// The response header `name`, if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Reads and decodes one more chunk; false once the stream ended.
    pub async fn read_chunk(&mut self) -> bool {
        if self.end.is_some() {
            return false;
        }
        let frame = match self.body.frame().await {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => panic!("{}: the stream broke: {e}", self.name),
            None => {
                self.finish().await;
                return false;
            }
        };
        let Ok(chunk) = frame.into_data() else {
            return true;
        };
        let plain = match &mut self.decoder {
            None => chunk.to_vec(),
            Some(decoder) => decoder.chunk(&chunk).await.unwrap_or_else(|e| {
                panic!(
                    "{}: chunk {} ({} bytes: {:02x?}) does not decode: {e}",
                    self.name,
                    self.chunks.len(),
                    chunk.len(),
                    &chunk[..chunk.len().min(64)]
                )
            }),
        };
        self.chunks.push(chunk);
        self.plain.extend_from_slice(&plain);
        if self.strict {
            assert!(
                self.plain.is_empty() || self.plain.ends_with(b"\n\n"),
                "{}: chunk {} decoded to a partial frame: the stream so far ends {:?}",
                self.name,
                self.chunks.len() - 1,
                tail(&self.plain)
            );
        }
        true
    }

    async fn finish(&mut self) {
        let end = match &mut self.decoder {
            Some(decoder) => decoder.end().await,
            None => End {
                complete: true,
                detail: "identity".into(),
                whole: self.plain.clone(),
            },
        };
        self.end = Some(end);
    }

    /// Reads until `done(plain)` holds (panics if the stream ends first, or after [`WAIT`]).
    pub async fn until(&mut self, what: &str, done: impl Fn(&[u8]) -> bool) {
        let outcome = tokio::time::timeout(WAIT, async {
            while !done(&self.plain) {
                if !self.read_chunk().await {
                    return false;
                }
            }
            true
        })
        .await;
        let so_far = tail(&self.plain);
        match outcome {
            Ok(true) => {}
            Ok(false) => panic!(
                "{}: the stream ended before {what}; it ends {so_far:?}",
                self.name
            ),
            Err(_) => panic!(
                "{}: no {what} within {WAIT:?}; the stream ends {so_far:?}",
                self.name
            ),
        }
    }

    /// Reads until the decoded stream contains `needle`.
    pub async fn until_contains(&mut self, needle: &str) {
        let what = format!("{needle:?}");
        self.until(&what, |p| contains(p, needle.as_bytes())).await;
    }

    /// Reads to the stream's end and checks the decoder's judgement of it: a gzip stream ends
    /// with a valid trailer, a zstd stream with a whole frame, and decoding it in one piece
    /// gives what the chunks gave.
    pub async fn until_end(&mut self) {
        tokio::time::timeout(WAIT, async { while self.read_chunk().await {} })
            .await
            .unwrap_or_else(|_| panic!("{}: the stream did not end within {WAIT:?}", self.name));
        let end = self.end.as_ref().expect("ended");
        assert!(
            end.complete,
            "{}: the stream did not end whole: {} (last chunk {:02x?})",
            self.name,
            end.detail,
            self.chunks.last().map(|c| &c[c.len().saturating_sub(32)..])
        );
        assert_eq!(
            String::from_utf8_lossy(&end.whole),
            String::from_utf8_lossy(&self.plain),
            "{}: decoded in one piece it is what its chunks decoded to",
            self.name
        );
    }

    /// The decoded stream as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.plain).into_owned()
    }

    /// The decoded stream's frames (each ending with its blank line), asserting it ends on a
    /// frame's end.
    pub fn frames(&self) -> Vec<String> {
        frames(&self.text())
    }
}

/// `text` split after each blank line; it must end with one (or be empty).
pub fn frames(text: &str) -> Vec<String> {
    assert!(
        text.is_empty() || text.ends_with("\n\n"),
        "a partial frame at the end: {text:?}"
    );
    text.split_inclusive("\n\n").map(str::to_string).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The last bytes of `plain`, as text, for messages.
fn tail(plain: &[u8]) -> String {
    String::from_utf8_lossy(&plain[plain.len().saturating_sub(120)..]).into_owned()
}
