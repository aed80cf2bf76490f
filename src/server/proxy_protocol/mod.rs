//! PROXY protocol on the relay's client listeners (HAProxy's "The PROXY protocol", versions 1
//! and 2, haproxy.org `proxy-protocol.txt`): who may send a header ([`ProxyProtocol::allows`],
//! `server.proxy_protocol_from`), reading it from an accepted socket under a deadline, framing
//! it ([`frame`]: v1 up to 107 bytes ending in CRLF, §2.1; v2 the 16-byte fixed part and its
//! length, §2.2), taking the declared source address from it ([`parse`], the field parsing
//! itself by the `ppp` crate), and handing the bytes read past the header back through
//! [`Rewind`](super::Rewind) so TLS, HTTP/1.1 or h2c continue on the same stream.
//!
//! This module owns the header only: it never decides what a connection may do after it (the
//! caps, TLS and the connection driver do), and it never writes to the socket.

#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::Rewind;
use crate::ops::metrics::Label;

/// The v2 signature, the first 12 bytes of every binary header (spec §2.2).
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// The v1 prefix, `PROXY` and its one space (spec §2.1).
const V1_PREFIX: &[u8] = b"PROXY ";

/// The longest v1 header, CRLF included, bytes (spec §2.1: "a 108-byte buffer" holds 107
/// characters and a NUL).
pub const V1_MAX_BYTES: usize = 107;

/// The v2 fixed part: signature, version/command, family/protocol and the length, bytes
/// (spec §2.2).
const V2_FIXED_BYTES: usize = 16;

/// The longest v2 header accepted, fixed part included, bytes. The spec allows a 65535-byte
/// address and TLV block; the addresses take at most 216 (AF_UNIX) and balancers' TLVs (AWS,
/// Azure and GCP connection ids, ALPN, authority) a few hundred more, so 4 KiB is ample, and it
/// bounds what a connection may make the relay hold before it is known to be a client.
pub const V2_MAX_BYTES: usize = 4096;

/// How much is asked of the socket per read while the header is incomplete, bytes.
const READ_CHUNK: usize = 512;

/// Why a connection was closed before it got a hearing
/// (`sse_relay_proxy_protocol_rejected_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The header did not complete within `server.proxy_protocol_timeout_ms`.
    #[error("no complete PROXY header within the timeout")]
    Timeout,
    /// The first bytes are not a PROXY header, or the header is malformed or too long.
    #[error("not a valid PROXY protocol v1 or v2 header")]
    Invalid,
    /// The peer closed (or reset) the connection before the header was complete.
    #[error("connection closed before the PROXY header was complete")]
    Closed,
    /// The socket's peer is outside `server.proxy_protocol_from`.
    #[error("peer is not in server.proxy_protocol_from")]
    NotAllowed,
}

impl Label for Rejection {
    const ALL: &'static [Self] = &[Self::Timeout, Self::Invalid, Self::Closed, Self::NotAllowed];

    fn label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Invalid => "invalid",
            Self::Closed => "closed",
            Self::NotAllowed => "not_allowed",
        }
    }
}

/// How far the bytes read so far go toward a header ([`frame`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Could still become a header: read more.
    Incomplete,
    /// The header is the first this many bytes.
    Complete(usize),
    /// Cannot become a header, whatever follows.
    Invalid,
}

/// Finds the end of a v1 or v2 header at the start of `buf` without parsing its fields: v2 when
/// `buf` starts with (a prefix of) [`V2_SIGNATURE`], its length from bytes 14–15 (big-endian,
/// spec §2.2) and at most [`V2_MAX_BYTES`] in all; v1 when it starts with (a prefix of)
/// `"PROXY "`, up to the first CRLF within [`V1_MAX_BYTES`] (spec §2.1); anything else is
/// [`Framing::Invalid`].
pub fn frame(buf: &[u8]) -> Framing {
    let start = |prefix: &[u8]| prefix.starts_with(&buf[..buf.len().min(prefix.len())]);
    if buf.is_empty() {
        Framing::Incomplete
    } else if start(V2_SIGNATURE) {
        if buf.len() < V2_FIXED_BYTES {
            return Framing::Incomplete;
        }
        let total = V2_FIXED_BYTES + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        match total {
            t if t > V2_MAX_BYTES => Framing::Invalid,
            t if buf.len() < t => Framing::Incomplete,
            t => Framing::Complete(t),
        }
    } else if start(V1_PREFIX) {
        let window = &buf[..buf.len().min(V1_MAX_BYTES)];
        match window.windows(2).position(|w| w == b"\r\n") {
            Some(cr) => Framing::Complete(cr + 2),
            None if buf.len() >= V1_MAX_BYTES => Framing::Invalid,
            None => Framing::Incomplete,
        }
    } else {
        Framing::Invalid
    }
}

/// The source address a complete header (as framed by [`frame`]) declares: `Some` for v1
/// `TCP4`/`TCP6` and v2 `PROXY` over IPv4/IPv6; `None` where the spec says to keep the
/// connection's own endpoints (v1 `UNKNOWN`, §2.1; v2 `LOCAL`, or an unspecified or AF_UNIX
/// family, §2.2). IPv4-mapped IPv6 addresses are given as IPv4.
///
/// # Errors
/// [`Rejection::Invalid`] when the fields do not follow the spec (the `ppp` crate's parse).
pub fn parse(header: &[u8]) -> Result<Option<SocketAddr>, Rejection> {
    let source = |ip: IpAddr, port| Some(SocketAddr::new(ip.to_canonical(), port));
    if header.starts_with(V2_SIGNATURE) {
        use ppp::v2::{Addresses, Command, Header};
        let h = Header::try_from(header).map_err(|_| Rejection::Invalid)?;
        if h.len() != header.len() {
            return Err(Rejection::Invalid);
        }
        Ok(match (h.command, h.addresses) {
            (Command::Local, _) => None,
            (Command::Proxy, Addresses::IPv4(a)) => source(a.source_address.into(), a.source_port),
            (Command::Proxy, Addresses::IPv6(a)) => source(a.source_address.into(), a.source_port),
            (Command::Proxy, Addresses::Unspecified | Addresses::Unix(_)) => None,
        })
    } else {
        use ppp::v1::{Addresses, Header};
        let h = Header::try_from(header).map_err(|_| Rejection::Invalid)?;
        if h.header.len() != header.len() {
            return Err(Rejection::Invalid);
        }
        Ok(match h.addresses {
            Addresses::Tcp4(a) => source(a.source_address.into(), a.source_port),
            Addresses::Tcp6(a) => source(a.source_address.into(), a.source_port),
            Addresses::Unknown => None,
        })
    }
}

/// A header read from a connection: what it declares and what came after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The declared source address (`None`: keep the socket's peer, see [`parse`]).
    pub client: Option<SocketAddr>,
    /// Bytes read past the header: the start of the TLS or HTTP stream.
    pub rest: Bytes,
}

/// Reads one header from the start of `io`, a chunk at a time, with no deadline of its own.
///
/// # Errors
/// [`Rejection::Invalid`] as soon as the bytes cannot become a header (or are a malformed
/// one), [`Rejection::Closed`] if the stream ends or fails first.
pub async fn read_header<IO: AsyncRead + Unpin>(io: &mut IO) -> Result<Header, Rejection> {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        match frame(&buf) {
            Framing::Complete(len) => {
                let client = parse(&buf[..len])?;
                let rest = buf.split_off(len).freeze();
                return Ok(Header { client, rest });
            }
            Framing::Invalid => return Err(Rejection::Invalid),
            Framing::Incomplete => {}
        }
        buf.reserve(READ_CHUNK);
        match io.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return Err(Rejection::Closed),
            Ok(_) => {}
        }
    }
}

/// `server.proxy_protocol` and its companions, validated: who may send a header and how long
/// it may take.
#[derive(Debug, Clone)]
pub struct ProxyProtocol {
    from: Vec<IpNet>,
    timeout: Duration,
}

impl ProxyProtocol {
    /// Headers from peers in `from` (empty: any peer), each complete within `timeout`.
    pub fn new(from: Vec<IpNet>, timeout: Duration) -> Self {
        Self { from, timeout }
    }

    /// Whether a socket peer at `ip` may send a header (IPv4-mapped IPv6 compared as IPv4).
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.from.is_empty() || self.from.iter().any(|net| net.contains(&ip))
    }

    /// Checks the socket peer `peer`, then reads the header from `io` under the timeout; returns
    /// the stream to continue on (the bytes past the header first) and the client's address:
    /// the declared one, or `peer` when the header declares none.
    ///
    /// # Errors
    /// A [`Rejection`]: the connection is to be closed and counted.
    pub async fn accept<IO: AsyncRead + Unpin>(
        &self,
        mut io: IO,
        peer: SocketAddr,
    ) -> Result<(Rewind<IO>, SocketAddr), Rejection> {
        if !self.allows(peer.ip()) {
            return Err(Rejection::NotAllowed);
        }
        let header = tokio::time::timeout(self.timeout, read_header(&mut io))
            .await
            .map_err(|_| Rejection::Timeout)??;
        Ok((Rewind::new(header.rest, io), header.client.unwrap_or(peer)))
    }
}
