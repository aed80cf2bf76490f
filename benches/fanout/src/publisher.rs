//! The one publisher both targets share: HTTP/1.1 POSTs (keep-alive) to nchan's publisher
//! location on loopback. Each event's data is `<seq> <publish time, ns> <padding>`, the time
//! taken just before the request is written. It also reads nchan's channel info (subscriber
//! count), which tells when subscribers (or the relay's one upstream) are in place.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::client::now_ns;

/// Publishes to and queries nchan's plain-HTTP publisher location.
pub struct Publisher {
    client: Client<HttpConnector, Full<Bytes>>,
    port: u16,
    padding: String,
}

impl Publisher {
    /// A publisher for nchan on `port`; events carry `payload_bytes` of padding.
    pub fn new(port: u16, payload_bytes: usize) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new()).build(http),
            port,
            padding: "x".repeat(payload_bytes),
        }
    }

    /// Publishes event `seq` to `channel`.
    pub async fn publish(&self, channel: &str, seq: u64) -> Result<()> {
        let body = format!("{seq} {} {}", now_ns(), self.padding);
        self.publish_data(channel, body).await
    }

    /// Publishes an event whose data is `body` to `channel` (the caller puts its sequence
    /// number and publish time in it).
    pub async fn publish_data(&self, channel: &str, body: String) -> Result<()> {
        let (status, text) = self.request("POST", channel, body).await?;
        if status != 201 && status != 202 {
            bail!("nchan publish answered {status}: {text}");
        }
        Ok(())
    }

    /// nchan's subscriber count on `channel` (0 while the channel does not exist).
    pub async fn subscribers(&self, channel: &str) -> Result<u64> {
        let (status, text) = self.request("GET", channel, String::new()).await?;
        match status {
            404 => Ok(0),
            200 => {
                let info: serde_json::Value =
                    serde_json::from_str(&text).context("nchan channel info")?;
                info["subscribers"]
                    .as_u64()
                    .with_context(|| format!("no subscriber count in {text}"))
            }
            _ => bail!("nchan channel info answered {status}: {text}"),
        }
    }

    /// Waits until nchan counts exactly `n` subscribers on `channel`.
    pub async fn wait_subscribers(&self, channel: &str, n: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = self.subscribers(channel).await?;
            if now == n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("nchan counts {now} subscribers on {channel}, expected {n}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn request(&self, method: &str, channel: &str, body: String) -> Result<(u16, String)> {
        let request = Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{}/pub/{channel}", self.port))
            .header(ACCEPT, "text/json")
            .header(CONTENT_TYPE, "text/plain")
            .body(Full::new(Bytes::from(body)))?;
        let response = self
            .client
            .request(request)
            .await
            .context("nchan request")?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }
}

/// A publisher that does not wait for answers: HTTP/1.1 requests pipelined on one connection
/// (nginx answers them in order, so events keep their order), each written at its own time.
/// Used where the publish rate must not depend on how long nchan takes to answer (sustained
/// rate, bursts).
pub struct Pipeline {
    writer: tokio::net::tcp::OwnedWriteHalf,
    answers: tokio::task::JoinHandle<Result<u64>>,
    answered: std::sync::Arc<std::sync::atomic::AtomicU64>,
    port: u16,
    padding: String,
    sent: u64,
}

impl Pipeline {
    /// Connects to nchan on `port`.
    pub async fn connect(port: u16, payload_bytes: usize) -> Result<Self> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        tcp.set_nodelay(true)?;
        let (reader, writer) = tcp.into_split();
        let answered = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let answers = tokio::spawn(read_answers(reader, answered.clone()));
        Ok(Self {
            writer,
            answers,
            answered,
            port,
            padding: "x".repeat(payload_bytes),
            sent: 0,
        })
    }

    /// Writes the requests publishing events `seqs` to `channel` in one write.
    pub async fn publish(&mut self, channel: &str, seqs: std::ops::Range<u64>) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let mut out = String::new();
        for seq in seqs {
            let body = format!("{seq} {} {}", now_ns(), self.padding);
            out.push_str(&format!(
                "POST /pub/{channel} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAccept: text/json\r\n\
                 Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                self.port,
                body.len()
            ));
            self.sent += 1;
        }
        self.writer.write_all(out.as_bytes()).await?;
        Ok(())
    }

    /// Requests answered so far (all 201/202, or the reader fails).
    pub fn answered(&self) -> u64 {
        self.answered.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Waits until every request was answered with 201/202; returns when that was seen
    /// ([`now_ns`], 1 ms resolution).
    pub async fn finish(self, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        while self.answered() < self.sent {
            if self.answers.is_finished() || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let done = now_ns();
        let (sent, answered) = (self.sent, self.answered());
        if answered < sent {
            let error = if self.answers.is_finished() {
                match self.answers.await {
                    Ok(Err(e)) => format!("{e:#}"),
                    _ => "connection closed".into(),
                }
            } else {
                self.answers.abort();
                format!("timed out after {timeout:?}")
            };
            bail!("nchan answered {answered} of {sent} publish requests: {error}");
        }
        self.answers.abort();
        Ok(done)
    }
}

async fn read_answers(
    mut reader: tokio::net::tcp::OwnedReadHalf,
    answered: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Result<u64> {
    use tokio::io::AsyncReadExt;
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut count = 0u64;
    loop {
        let mut consumed = 0;
        while let Some(end) = buf[consumed..].windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[consumed..consumed + end])?;
            let status: u16 = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("not an HTTP answer: {head:?}"))?;
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .context("publish answer without Content-Length")?;
            if buf.len() < consumed + end + 4 + length {
                break;
            }
            if status != 201 && status != 202 {
                bail!("nchan publish answered {status}");
            }
            consumed += end + 4 + length;
            count += 1;
            answered.store(count, std::sync::atomic::Ordering::Release);
        }
        buf.drain(..consumed);
        let mut chunk = [0u8; 16 * 1024];
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            return Ok(count);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
