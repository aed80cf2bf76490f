//! An in-process origin whose event streams answer POSTs (an LLM or MCP-like origin): a real
//! hyper server on 127.0.0.1:0 that counts the POSTs it gets and hands each one to the test
//! as an [`Answer`], whose frames the test writes and whose end it decides; it also sees when
//! the relay drops an answer. `POST /json` is answered with a small JSON document instead.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Mutex};

use super::{EventReader, H2Client, WAIT};

/// One POST's answer, written by the test.
pub struct Answer {
    frames: mpsc::Sender<Bytes>,
    /// The POST's headers as the origin got them.
    pub headers: http::HeaderMap,
    /// The POST's body.
    pub body: Bytes,
}

impl Answer {
    /// Writes `text` (raw event-stream bytes) to the answer.
    pub async fn send(&self, text: &str) {
        self.frames
            .send(Bytes::from(text.to_string()))
            .await
            .expect("the answer is still being read");
    }

    /// Ends the answer (the body ends cleanly).
    pub fn end(self) {}

    /// Waits until the relay dropped the answer (its connection to the origin closed): the
    /// origin writes a comment every 20 ms, as an origin streaming tokens would, until a write
    /// fails. Panics after [`WAIT`].
    pub async fn dropped(&self) {
        tokio::time::timeout(WAIT, async {
            while self.frames.send(Bytes::from_static(b":\n\n")).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the relay drops the answer within the wait");
    }
}

/// The origin.
pub struct AnswerOrigin {
    pub addr: SocketAddr,
    posts: Arc<AtomicUsize>,
    answers: Mutex<mpsc::UnboundedReceiver<Answer>>,
}

impl AnswerOrigin {
    /// Starts the origin on a free loopback port.
    pub async fn start() -> AnswerOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().unwrap();
        let posts = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::unbounded_channel();
        let counted = posts.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (posts, tx) = (counted.clone(), tx.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let (posts, tx) = (posts.clone(), tx.clone());
                        async move { Ok::<_, Infallible>(respond(req, &posts, &tx).await) }
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                });
            }
        });
        AnswerOrigin {
            addr,
            posts,
            answers: Mutex::new(rx),
        }
    }

    /// The URL of `path` on this origin.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs received, count.
    pub fn posts(&self) -> usize {
        self.posts.load(Ordering::SeqCst)
    }

    /// The next POST's answer (panics after [`WAIT`]).
    pub async fn next_answer(&self) -> Answer {
        let mut answers = self.answers.lock().await;
        tokio::time::timeout(WAIT, answers.recv())
            .await
            .expect("a POST within the wait")
            .expect("the origin runs")
    }
}

async fn respond(
    req: Request<Incoming>,
    posts: &AtomicUsize,
    answers: &mpsc::UnboundedSender<Answer>,
) -> Response<BoxBody<Bytes, Infallible>> {
    if req.method() != http::Method::POST {
        return Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .body(Full::new(Bytes::from_static(b"post only\n")).boxed())
            .unwrap();
    }
    posts.fetch_add(1, Ordering::SeqCst);
    let json = req.uri().path() == "/json";
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if json {
        return Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(b"{\"ok\":true}")).boxed())
            .unwrap();
    }
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let _ = answers.send(Answer {
        frames: tx,
        headers: parts.headers,
        body,
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let frame = rx.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(frame)), rx))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("x-origin", "answers")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap()
}

/// POSTs a chat request (JSON) on `path` and reads the answer as an event stream.
pub async fn post(client: &mut H2Client, path: &str) -> EventReader {
    post_with(client, path, &[]).await
}

/// [`post`] with extra request headers.
pub async fn post_with(client: &mut H2Client, path: &str, headers: &[(&str, &str)]) -> EventReader {
    let mut request = Request::builder()
        .method(http::Method::POST)
        .uri(format!("https://localhost{path}"))
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = Full::new(Bytes::from_static(b"{\"stream\":true}")).boxed();
    EventReader::new(client.send_streaming(request.body(body).unwrap()).await)
}

/// The resume URL a kept stream's answer names (`Content-Location`).
pub fn location(reader: &EventReader) -> String {
    reader.headers["content-location"]
        .to_str()
        .expect("a kept stream names its resume URL")
        .to_string()
}
