//! The "what you would get without us" target: a minimal SSE fan-out server written
//! directly on hyper 1 (its auto h1/h2 server builder), tokio-rustls and one
//! `tokio::sync::broadcast` channel per topic, as a user would write it in an afternoon. Each
//! topic opens one plain HTTP/1.1 subscription to nchan (`/sub/<topic>`) on its first subscriber
//! and forwards every event block (the bytes up to a blank line) unparsed to every subscriber.
//! No replay, no heartbeats, no limits, no metrics: the floor the relay's costs are read against.
//!
//! It runs as its own process (the benchmark re-executed with [`ARG`]), so its RSS and CPU
//! are measured apart from the load client's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::broadcast;

use crate::procs::{free_port, wait_for_port, Cert, Child};

/// The flag that makes the fanout bench binary serve as the minimal server:
/// `fanout --serve-hyper-minimal <listen addr> <cert.pem> <key.pem> <nchan plain port>`.
pub const ARG: &str = "--serve-hyper-minimal";

/// Events a slow subscriber may fall behind before it skips ahead (count).
const CHANNEL_EVENTS: usize = 1024;

/// The minimal server as the bench starts it: this bench binary re-executed with [`ARG`], on
/// 127.0.0.1, with nchan's plain port as its origin.
pub struct Minimal {
    /// The process.
    pub child: Child,
    /// TLS port.
    pub port: u16,
}

impl Minimal {
    /// Starts it (its output in `dir`; under `wrapper` when one is given, e.g. `env
    /// LD_PRELOAD=…` for a heap profiler) and waits until it accepts.
    ///
    /// # Errors
    /// When it cannot be started or does not accept within 15 s.
    pub fn start(dir: &Path, cert: &Cert, origin_port: u16, wrapper: &[String]) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let port = free_port()?;
        let exe = std::env::current_exe()?;
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = std::process::Command::new(program);
                c.args(args).arg(exe);
                c
            }
            None => std::process::Command::new(exe),
        };
        command
            .arg(ARG)
            .arg(format!("127.0.0.1:{port}"))
            .arg(&cert.cert_pem)
            .arg(&cert.key_pem)
            .arg(origin_port.to_string());
        let mut child = Child::spawn("hyper-minimal", &mut command, dir.join("minimal.out"))?;
        wait_for_port(&mut child, port, std::time::Duration::from_secs(15))?;
        Ok(Self { child, port })
    }
}

type Topics = Arc<Mutex<HashMap<String, broadcast::Sender<Bytes>>>>;

/// Serves until killed (`args`: what follows [`ARG`]).
pub fn serve(args: &[String]) -> Result<()> {
    let [listen, cert, key, origin_port] = args else {
        anyhow::bail!("usage: {ARG} <listen addr> <cert.pem> <key.pem> <nchan plain port>");
    };
    let listen: SocketAddr = listen.parse().context("listen address")?;
    let origin_port: u16 = origin_port.parse().context("nchan port")?;
    let tls = tls_config(Path::new(cert), Path::new(key))?;
    tokio::runtime::Runtime::new()?.block_on(run(listen, tls, origin_port))
}

fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(std::fs::File::open(cert)?))
        .collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(std::fs::File::open(key)?))?
        .context("no private key")?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

async fn run(listen: SocketAddr, tls: rustls::ServerConfig, origin_port: u16) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let topics: Topics = Arc::default();
    loop {
        let (tcp, _) = listener.accept().await?;
        let (acceptor, topics) = (acceptor.clone(), topics.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                let topics = topics.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(req, &topics, origin_port)) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

type SseBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

fn answer(
    req: Request<hyper::body::Incoming>,
    topics: &Topics,
    origin_port: u16,
) -> Response<SseBody> {
    let Some(topic) = req.uri().path().strip_prefix("/events/") else {
        let mut response = Response::new(Empty::new().boxed());
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    };
    let receiver = {
        let mut topics = topics.lock().unwrap_or_else(|e| e.into_inner());
        match topics.get(topic) {
            Some(sender) => sender.subscribe(),
            None => {
                let (sender, receiver) = broadcast::channel(CHANNEL_EVENTS);
                topics.insert(topic.to_string(), sender.clone());
                tokio::spawn(follow(topic.to_string(), sender, origin_port));
                receiver
            }
        }
    };
    let events = futures_util::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(event) => return Some((Ok(Frame::data(event)), receiver)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(StreamBody::new(events).boxed())
        .unwrap_or_else(|_| Response::new(Empty::new().boxed()))
}

/// Reads nchan's stream of `topic`, reconnecting every second when it ends, and sends each
/// event block to `sender`.
async fn follow(topic: String, sender: broadcast::Sender<Bytes>, origin_port: u16) {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let uri: hyper::Uri = match format!("http://127.0.0.1:{origin_port}/sub/{topic}").parse() {
        Ok(uri) => uri,
        Err(_) => return,
    };
    loop {
        if let Ok(request) = Request::get(uri.clone())
            .header("accept", "text/event-stream")
            .body(Empty::new())
        {
            if let Ok(response) = client.request(request).await {
                let mut body = response.into_body();
                let mut pending = BytesMut::new();
                while let Some(Ok(frame)) = body.frame().await {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    pending.extend_from_slice(&data);
                    while let Some(end) = find_blank_line(&pending) {
                        let event = pending.split_to(end).freeze();
                        let _ = sender.send(event);
                    }
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// The length of the first event block in `buf` including its blank line, if complete.
fn find_blank_line(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2)
}
