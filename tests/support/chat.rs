//! An in-process OpenAI-compatible origin for the real-client acceptance tests: a hyper server
//! on 127.0.0.1:0 whose `POST /v1/chat/completions` answers every request with the same
//! `text/event-stream` chat completion, paced: [`ChatOrigin::chunks`] chunks
//! (`data: {"object":"chat.completion.chunk",…,"choices":[{"delta":{"content":"tok N"}}]}`, the
//! last with `"finish_reason":"stop"`), then `data: [DONE]`. It counts the POSTs it got and the
//! answers it wrote to their end (an answer whose reader went away stops short of it). Started
//! with [`ChatOrigin::start_held`], every answer waits after a given chunk until the test calls
//! [`ChatOrigin::release`] (so a test knows the answer is still running at some point).
//! `GET /chat.html` serves a blank page of a chat web app on this origin (the browser test runs
//! its script there; the relay is then another origin, reached with CORS).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The completion's path on the origin (and on the relay's stream route).
pub const COMPLETIONS: &str = "/v1/chat/completions";

/// The content of chunk `n` (1-based).
pub fn content(n: usize) -> String {
    format!("tok {n}")
}

/// The JSON of chunk `n` of `chunks` (about 130 bytes: an OpenAI `chat.completion.chunk`).
pub fn chunk_json(n: usize, chunks: usize) -> String {
    let finish = if n == chunks { "\"stop\"" } else { "null" };
    format!(
        "{{\"id\":\"chatcmpl-relay\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\
         \"model\":\"relay-test\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{}\"}},\
         \"finish_reason\":{finish}}}]}}",
        content(n)
    )
}

#[derive(Default)]
struct Counts {
    posts: AtomicUsize,
    /// Answers whose every chunk and `[DONE]` were written and whose body then ended.
    completed: AtomicUsize,
    /// Chunks handed to the connection, all answers together.
    written: AtomicUsize,
}

/// The origin.
pub struct ChatOrigin {
    pub addr: SocketAddr,
    /// Chunks per answer (before `[DONE]`).
    pub chunks: usize,
    counts: Arc<Counts>,
    gate: watch::Sender<bool>,
}

/// How every answer is written.
#[derive(Clone)]
struct Script {
    chunks: usize,
    pace: Duration,
    /// Waits after this chunk until the gate opens.
    hold_after: Option<usize>,
    gate: watch::Receiver<bool>,
}

impl ChatOrigin {
    /// Starts the origin on a free loopback port; each answer is `chunks` chunks, `pace` apart.
    pub async fn start(chunks: usize, pace: Duration) -> ChatOrigin {
        Self::start_script(chunks, pace, None).await
    }

    /// As [`ChatOrigin::start`], but every answer stops after chunk `hold_after` until
    /// [`ChatOrigin::release`].
    pub async fn start_held(chunks: usize, pace: Duration, hold_after: usize) -> ChatOrigin {
        Self::start_script(chunks, pace, Some(hold_after)).await
    }

    async fn start_script(chunks: usize, pace: Duration, hold_after: Option<usize>) -> ChatOrigin {
        let (gate, opened) = watch::channel(false);
        let script = Script {
            chunks,
            pace,
            hold_after,
            gate: opened,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(Counts::default());
        let shared = counts.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (counts, script) = (shared.clone(), script.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let (counts, script) = (counts.clone(), script.clone());
                        async move { Ok::<_, Infallible>(respond(req, counts, script).await) }
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                });
            }
        });
        ChatOrigin {
            addr,
            chunks,
            counts,
            gate,
        }
    }

    /// Lets held answers go on past their hold.
    pub fn release(&self) {
        self.gate.send_replace(true);
    }

    /// `http://127.0.0.1:PORT` (no trailing slash): the page's origin.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// POSTs received on the completions path, count.
    pub fn posts(&self) -> usize {
        self.counts.posts.load(Ordering::SeqCst)
    }

    /// Answers written to their end (every chunk, `[DONE]`, the body's end), count.
    pub fn completed(&self) -> usize {
        self.counts.completed.load(Ordering::SeqCst)
    }

    /// Chunks handed to connections so far, all answers together.
    pub fn written(&self) -> usize {
        self.counts.written.load(Ordering::SeqCst)
    }
}

fn small(
    status: StatusCode,
    content_type: &str,
    body: &'static str,
) -> Response<BoxBody<Bytes, Infallible>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from_static(body.as_bytes())).boxed())
        .unwrap()
}

async fn respond(
    req: Request<Incoming>,
    counts: Arc<Counts>,
    script: Script,
) -> Response<BoxBody<Bytes, Infallible>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/chat.html") => {
            return small(
                StatusCode::OK,
                "text/html; charset=utf-8",
                "<!doctype html><title>chat</title><p>A chat web app whose API is the relay.</p>\n",
            )
        }
        (&Method::POST, COMPLETIONS) => {}
        _ => return small(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
    counts.posts.fetch_add(1, Ordering::SeqCst);
    // The request is read whole first, as a model server parses it before answering.
    let _ = req.into_body().collect().await;
    // Frame n (1..=chunks) is a chunk, chunks + 1 is `[DONE]`; polled once more, the body
    // ends and the answer counts as completed.
    let chunks = script.chunks;
    let stream = futures_util::stream::unfold(1usize, move |n| {
        let (counts, mut script) = (counts.clone(), script.clone());
        async move {
            if n > chunks + 1 {
                counts.completed.fetch_add(1, Ordering::SeqCst);
                return None;
            }
            if script.hold_after.is_some_and(|after| n == after + 1) {
                // Held until released (or until the origin is gone: then the answer ends).
                script.gate.wait_for(|open| *open).await.ok()?;
            }
            if n > 1 {
                tokio::time::sleep(script.pace).await;
            }
            let text = if n <= chunks {
                counts.written.fetch_add(1, Ordering::SeqCst);
                format!("data: {}\n\n", chunk_json(n, chunks))
            } else {
                "data: [DONE]\n\n".to_string()
            };
            Some((Ok::<_, Infallible>(Frame::data(Bytes::from(text))), n + 1))
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap()
}
