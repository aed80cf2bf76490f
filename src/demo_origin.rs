//! The built-in demo origin: a small SSE server on loopback so the relay can be tried without an
//! origin of one's own. `GET /sub/{topic}` streams events with ids; `clock` ticks every second,
//! `ticker` four times a second, any other topic every second. It honours `Last-Event-ID` by
//! replaying (up to 100) ticks, since every tick's event is a pure function of its number.
//!
//! It runs on the relay's own serving layer ([`crate::server`]). This module owns the demo
//! only; the relay never depends on it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::server::{
    plain_text, Handler, Peer, RequestBody, Server, ServerMetrics, ServerSettings,
};
use crate::sse::{encode, Event};

/// Replayed ticks at most, count.
const MAX_REPLAY: u64 = 100;

/// Serves the demo origin on `listener` (with the relay's connection settings) until the task
/// is dropped.
pub async fn serve(listener: TcpListener, settings: ServerSettings) {
    let demo = DemoOrigin {
        started: Instant::now(),
        started_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    };
    let server = Server::new(demo, settings, Arc::new(ServerMetrics::unexported()));
    server
        .serve(listener, None, std::future::pending::<()>())
        .await;
}

/// The demo's clock: ticks count from its start.
#[derive(Clone, Copy)]
struct DemoOrigin {
    /// When the demo started, for the tick schedule.
    started: Instant,
    /// When the demo started, since the Unix epoch, for `clock`'s wall-clock times.
    started_unix: Duration,
}

impl Handler for DemoOrigin {
    type Body = BoxBody<Bytes, Infallible>;
    type Error = Infallible;

    async fn handle(self, request: Request<RequestBody>, _peer: Peer) -> Response<Self::Body> {
        respond(&request, self.started, self.started_unix)
    }
}

/// How often `topic` ticks.
fn period(topic: &str) -> Duration {
    match topic {
        "ticker" => Duration::from_millis(250),
        _ => Duration::from_secs(1),
    }
}

/// `topic`'s event for `tick`, the same every time it is asked for (so replays match).
fn event(topic: &str, tick: u64, started_unix: Duration) -> Event {
    let data = match topic {
        "clock" => {
            let at = started_unix + period(topic) * tick as u32;
            format!("{{\"unix_ms\":{}}}", at.as_millis())
        }
        "ticker" => {
            // A deterministic pseudo-random walk, so a replayed tick equals the original.
            let wiggle = (tick.wrapping_mul(2_654_435_761) % 200) as f64 / 100.0 - 1.0;
            format!("{{\"symbol\":\"SSE\",\"price\":{:.2}}}", 100.0 + wiggle)
        }
        _ => format!("{{\"tick\":{tick}}}"),
    };
    Event {
        id: Some(tick.to_string()),
        event_type: Some(topic.to_string()),
        data: Some(data),
    }
}

/// A `/sub/{topic}` stream from the tick after the request's `Last-Event-ID` (at most
/// [`MAX_REPLAY`] back), else from the next tick; anything else is a 404.
fn respond(
    request: &Request<RequestBody>,
    started: Instant,
    started_unix: Duration,
) -> Response<BoxBody<Bytes, Infallible>> {
    let Some(topic) = request.uri().path().strip_prefix("/sub/") else {
        return plain_text(StatusCode::NOT_FOUND, "try /sub/clock\n");
    };
    let topic = topic.to_string();
    let every = period(&topic);
    let now_tick = (started.elapsed().as_millis() / every.as_millis()) as u64;
    let next = request
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .map_or(now_tick + 1, |last| {
            (last + 1).max(now_tick.saturating_sub(MAX_REPLAY))
        });
    let stream = futures_util::stream::unfold(next, move |tick| {
        let topic = topic.clone();
        async move {
            tokio::time::sleep_until(started + every * tick as u32).await;
            let frame = Frame::data(encode(&event(&topic, tick, started_unix)));
            Some((Ok::<_, Infallible>(frame), tick + 1))
        }
    });
    let mut response = Response::new(StreamBody::new(stream).boxed());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    response
}
