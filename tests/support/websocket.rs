//! WebSocket helpers for tests: the in-process origin's echo endpoint (`/ws/echo`, served with
//! hyper's upgrade and tokio-tungstenite; `/ws/refuse` answers 403) and a WebSocket client over
//! TLS (ALPN http/1.1) to a [`super::TestRelay`].

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A WebSocket client connection to the relay.
pub type Client = WebSocketStream<TlsStream<TcpStream>>;

/// The text message that makes the echo endpoint close the connection itself.
pub const CLOSE_ME: &str = "close me";

/// The reason the echo endpoint gives when it closes.
pub const ORIGIN_BYE: &str = "origin says bye";

/// What the origin's WebSocket endpoints saw, in order: `handshake`, `closed by client: CODE
/// REASON`, `ended`.
#[derive(Default)]
pub struct WsLog(Mutex<Vec<String>>);

impl WsLog {
    fn push(&self, entry: String) {
        self.0.lock().unwrap().push(entry);
    }

    /// Every entry so far.
    pub fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

type OriginBody = BoxBody<Bytes, std::io::Error>;

/// The origin's answer on `/ws/...`: an echo WebSocket on `/ws/echo` (RFC 6455 §4.2.2
/// handshake), 403 on `/ws/refuse`, 400 for a request that is not a WebSocket handshake.
pub fn respond(log: &Arc<WsLog>, mut req: Request<Incoming>) -> Response<OriginBody> {
    if req.uri().path() == "/ws/refuse" {
        return text(StatusCode::FORBIDDEN, "no websockets here\n");
    }
    let headers = req.headers();
    let upgrade = headers
        .get("upgrade")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let key = headers.get("sec-websocket-key").map(|v| v.as_bytes());
    let (true, Some(key)) = (upgrade, key) else {
        return text(StatusCode::BAD_REQUEST, "not a websocket handshake\n");
    };
    let accept = derive_accept_key(key);
    log.push("handshake".into());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let log = log.clone();
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        echo(ws, &log).await;
        log.push("ended".into());
    });
    let mut response = text(StatusCode::SWITCHING_PROTOCOLS, "");
    let h = response.headers_mut();
    h.remove("content-type");
    h.insert("connection", "Upgrade".parse().unwrap());
    h.insert("upgrade", "websocket".parse().unwrap());
    h.insert("sec-websocket-accept", accept.parse().unwrap());
    response
}

/// Echoes text and binary messages; on [`CLOSE_ME`] closes with [`ORIGIN_BYE`].
async fn echo<S>(mut ws: WebSocketStream<S>, log: &WsLog)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(message)) = ws.next().await {
        let reply = match message {
            Message::Text(t) if t.as_str() == CLOSE_ME => Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: ORIGIN_BYE.into(),
            })),
            Message::Text(_) | Message::Binary(_) => message,
            Message::Close(frame) => {
                let (code, reason) = frame.map_or((0, String::new()), |f| {
                    (u16::from(f.code), f.reason.to_string())
                });
                log.push(format!("closed by client: {code} {reason}"));
                continue;
            }
            _ => continue,
        };
        if ws.send(reply).await.is_err() {
            return;
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<OriginBody> {
    let body = Full::new(Bytes::from_static(body.as_bytes()))
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", "text/plain".parse().unwrap());
    response
}

/// Opens a WebSocket to `path` on the relay at `addr` (TLS with the relay's certificate,
/// ALPN http/1.1): the client, or the handshake's error (e.g. the origin's refusal as
/// `Error::Http`).
pub async fn connect(
    addr: std::net::SocketAddr,
    cert: &std::path::Path,
    path: &str,
) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
    let tls = super::tls_connect(addr, cert, b"http/1.1").await;
    let url = format!("wss://localhost:{}{path}", addr.port());
    let (client, _response) = tokio_tungstenite::client_async(url, tls).await?;
    Ok(client)
}
