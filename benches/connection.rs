//! The delivery path of one multiplexed h2 connection, end to end in one process: an event
//! published on a hub topic reaches 100 SSE streams of one h2 connection (the relay's server
//! layer with its h2 engine on the `h2` crate, `EventStreamBody`, h2c over loopback TCP) and every stream's
//! client has read it. Guards the one-task-per-connection delivery that the fan-out benchmark
//! (`benches/fanout/`) measures against nchan and the minimal hyper server (see RESULTS.md).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http_body_util::{BodyExt, Empty};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sse_relay::downstream::{DownstreamFrames, DownstreamMetrics, EventStreamBody, LagPolicy};
use sse_relay::hub::Hub;
use sse_relay::server::{
    ConnectionLimits, H2Settings, Handler, Peer, RequestBody, Server, ServerMetrics, ServerSettings,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

#[path = "fixtures/hub.rs"]
mod fixture;
use fixture::{hub, spec};

/// Streams of the one connection, count.
const STREAMS: u64 = 100;

/// Answers every request with a live event stream of the benchmark's one topic.
#[derive(Clone)]
struct Subscribe {
    hub: Hub,
    frames: Arc<DownstreamFrames>,
    metrics: Arc<DownstreamMetrics>,
}

impl Handler for Subscribe {
    type Body = EventStreamBody;
    type Error = Infallible;

    async fn handle(
        self,
        _request: Request<RequestBody>,
        _peer: Peer,
    ) -> Response<EventStreamBody> {
        let subscription = self.hub.subscribe(spec(), None).expect("subscribe");
        Response::new(EventStreamBody::live(
            subscription,
            self.frames.clone(),
            LagPolicy::Disconnect,
            self.metrics.clone(),
        ))
    }
}

/// The relay's defaults where they matter here (h2 limits, watchdogs far away).
fn server_settings() -> ServerSettings {
    ServerSettings {
        h2: H2Settings {
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
            max_header_list_size: 16 << 10,
            header_table_size: 0,
            keep_alive_interval: None,
            keep_alive_timeout: Duration::from_secs(20),
            max_send_buf_size: 400 << 10,
            initial_stream_window_size: 1 << 20,
            initial_connection_window_size: 1 << 20,
            max_frame_size: 16 << 10,
        },
        max_streams_per_connection: 256,
        tls_handshake_timeout: Duration::from_secs(10),
        max_connections: 100,
        max_connections_per_ip: None,
        connection: ConnectionLimits {
            first_request_timeout: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(3600),
            max_streams_lifetime: u64::MAX,
            close_grace: Duration::from_secs(1),
        },
        drain_timeout: Duration::from_secs(1),
    }
}

/// Event frames all streams' clients have read, and a signal when it reaches `expected`.
#[derive(Default)]
struct Received {
    frames: AtomicU64,
    expected: AtomicU64,
    reached: Notify,
}

impl Received {
    async fn wait_for(&self, frames: u64) {
        loop {
            let reached = self.reached.notified();
            if self.frames.load(Ordering::Acquire) >= frames {
                return;
            }
            reached.await;
        }
    }
}

/// Starts the server on loopback (plaintext: h2c with prior knowledge).
async fn serve(hub: Hub) -> SocketAddr {
    let registry = prometheus::Registry::new();
    let handler = Subscribe {
        hub,
        frames: Arc::new(DownstreamFrames::new(3000)),
        metrics: Arc::new(DownstreamMetrics::new(&registry).expect("metrics")),
    };
    let metrics = Arc::new(ServerMetrics::new(&registry).expect("metrics"));
    let server = Server::new(handler, server_settings(), metrics);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        server
            .serve(listener, None, std::future::pending::<()>())
            .await
    });
    addr
}

/// Opens `STREAMS` subscriptions on one h2 connection; each stream's reader counts the event
/// frames it reads (its first frame, the preamble, is not one).
async fn subscribe(addr: SocketAddr, received: Arc<Received>) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let (send, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
        .await
        .expect("h2 handshake");
    tokio::spawn(connection);
    for _ in 0..STREAMS {
        let request = Request::get(format!("http://{addr}/t"))
            .body(Empty::new())
            .expect("request");
        let mut response = send.clone().send_request(request).await.expect("response");
        let received = received.clone();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = response.body_mut().frame().await {
                let is_event = frame.data_ref().is_some_and(|d| d.starts_with(b"id: "));
                if is_event {
                    let now = received.frames.fetch_add(1, Ordering::AcqRel) + 1;
                    if now == received.expected.load(Ordering::Acquire) {
                        received.reached.notify_waiters();
                    }
                }
            }
        });
    }
}

fn connection(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let _entered = runtime.enter();
    let hub = hub();
    // The bench's own handle on the topic (never read: the ring holds its place).
    let own = hub.subscribe(spec(), None).expect("subscribe");
    let topic = own.topic().clone();
    let received = Arc::new(Received::default());
    runtime.block_on(async {
        let addr = serve(hub.clone()).await;
        subscribe(addr, received.clone()).await;
    });
    let mut seq = 0u64;
    let mut group = c.benchmark_group("connection");
    group.throughput(Throughput::Elements(STREAMS));
    group.bench_function("one_event_to_100_streams_of_one_h2_connection", |b| {
        b.iter(|| {
            seq += 1;
            let expected = seq * STREAMS;
            received.expected.store(expected, Ordering::Release);
            let data = format!("id: {seq}\ndata: {seq} {}\n\n", "x".repeat(64));
            topic.publish(Some(&seq.to_string()), Bytes::from(data));
            runtime.block_on(received.wait_for(expected));
        })
    });
    group.finish();
    drop(own);
}

criterion_group!(benches, connection);
criterion_main!(benches);
