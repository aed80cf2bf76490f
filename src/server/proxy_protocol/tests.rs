//! The header reader against the spec's examples and edge cases (haproxy.org
//! `proxy-protocol.txt` §2.1 for v1, §2.2 for v2): framing, fields, chunk splits, the bytes
//! after the header, and the rejections.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use ppp::v2::{Builder, Protocol};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

use super::*;

const V1_TCP4: &[u8] = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
/// The spec's worst case (§2.1): 107 bytes exactly.
const V1_LONGEST: &[u8] = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A v2 `PROXY` (0x21) or `LOCAL` (0x20) header over TCP from `src` to `dst`.
fn v2(command: u8, src: &str, dst: &str) -> Vec<u8> {
    Builder::with_addresses(command, Protocol::Stream, (addr(src), addr(dst)))
        .build()
        .unwrap()
}

/// Yields one chunk per read, as a socket might deliver them.
struct Chunks(Vec<Vec<u8>>);

impl AsyncRead for Chunks {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(chunk) = self.0.first_mut() {
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            chunk.drain(..n);
            if chunk.is_empty() {
                self.0.remove(0);
            }
        }
        Poll::Ready(Ok(()))
    }
}

async fn read_all(chunks: Vec<Vec<u8>>) -> Result<(Header, Vec<u8>), Rejection> {
    let mut io = Chunks(chunks);
    let header = read_header(&mut io).await?;
    let mut after = Vec::new();
    Rewind::new(header.rest.clone(), io)
        .read_to_end(&mut after)
        .await
        .unwrap();
    Ok((header, after))
}

#[test]
fn v1_tcp4_declares_its_source() {
    assert_eq!(frame(V1_TCP4), Framing::Complete(V1_TCP4.len()));
    assert_eq!(parse(V1_TCP4), Ok(Some(addr("192.168.0.1:56324"))));
}

#[test]
fn v1_tcp6_declares_its_source() {
    let h = b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 443\r\n";
    assert_eq!(parse(h), Ok(Some(addr("[2001:db8::1]:4000"))));
    let mapped = b"PROXY TCP6 ::ffff:10.1.2.3 ::1 4000 443\r\n";
    assert_eq!(
        parse(mapped),
        Ok(Some(addr("10.1.2.3:4000"))),
        "v4-mapped as v4"
    );
}

#[test]
fn v1_unknown_keeps_the_socket_peer() {
    assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Ok(None));
    assert_eq!(V1_LONGEST.len(), V1_MAX_BYTES);
    assert_eq!(frame(V1_LONGEST), Framing::Complete(V1_MAX_BYTES));
    assert_eq!(parse(V1_LONGEST), Ok(None));
}

#[test]
fn v1_without_crlf_within_107_bytes_is_invalid() {
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(V1_MAX_BYTES - 1, b'x');
    assert_eq!(frame(&long), Framing::Incomplete);
    long.push(b'\r');
    assert_eq!(frame(&long), Framing::Invalid, "CRLF would end at byte 108");
}

#[test]
fn v1_malformed_fields_are_invalid() {
    for bad in [
        &b"PROXY TCP4 999.0.0.1 192.168.0.11 56324 443\r\n"[..],
        b"PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n",
        b"PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n",
        b"PROXY TCP4 2001:db8::1 192.168.0.11 1 443\r\n",
        b"PROXY TCP5 192.168.0.1 192.168.0.11 1 443\r\n",
        b"PROXY TCP4 192.168.0.1 192.168.0.11 1\r\n",
        b"PROXY TCP4  192.168.0.1 192.168.0.11 1 443\r\n",
        b"PROXY TCP4 192.168.0.1 192.168.0.11 1 443 \r\n",
        b"PROXY \r\n",
    ] {
        let framed = frame(bad);
        assert_eq!(
            framed,
            Framing::Complete(bad.len()),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
        assert_eq!(
            parse(bad),
            Err(Rejection::Invalid),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn other_protocols_are_invalid_at_once() {
    assert_eq!(frame(b"GET / HTTP/1.1\r\n"), Framing::Invalid);
    assert_eq!(frame(b"PRI * HTTP/2.0\r\n"), Framing::Invalid);
    assert_eq!(
        frame(&[0x16, 0x03, 0x01]),
        Framing::Invalid,
        "a TLS ClientHello"
    );
    assert_eq!(
        frame(b"proxy "),
        Framing::Invalid,
        "the prefix is case-sensitive"
    );
    assert_eq!(frame(b"\r\n\r\n\0\r\nQUIX"), Framing::Invalid);
}

#[test]
fn prefixes_of_either_signature_are_incomplete() {
    for n in 0..V1_PREFIX.len() {
        assert_eq!(frame(&V1_TCP4[..n]), Framing::Incomplete);
    }
    let h = v2(0x21, "10.0.0.1:1000", "10.0.0.2:443");
    for n in 0..h.len() {
        assert_eq!(frame(&h[..n]), Framing::Incomplete, "{n} bytes");
    }
    assert_eq!(frame(&h), Framing::Complete(h.len()));
}

#[test]
fn v2_proxy_declares_its_source() {
    let h = v2(0x21, "10.0.0.1:1000", "10.0.0.2:443");
    assert_eq!(h.len(), 16 + 12);
    assert_eq!(parse(&h), Ok(Some(addr("10.0.0.1:1000"))));
    let h = v2(0x21, "[2001:db8::7]:1000", "[2001:db8::2]:443");
    assert_eq!(parse(&h), Ok(Some(addr("[2001:db8::7]:1000"))));
}

#[test]
fn v2_local_keeps_the_socket_peer() {
    assert_eq!(parse(&v2(0x20, "10.0.0.1:1000", "10.0.0.2:443")), Ok(None));
    let unspec = Builder::new(0x20, 0x00).build().unwrap();
    assert_eq!(unspec.len(), 16);
    assert_eq!(parse(&unspec), Ok(None));
}

#[test]
fn v2_unspecified_or_unix_family_keeps_the_socket_peer() {
    let unspec = Builder::new(0x21, 0x00).build().unwrap();
    assert_eq!(parse(&unspec), Ok(None));
    let unix = Builder::with_addresses(
        0x21,
        Protocol::Stream,
        ppp::v2::Addresses::Unix(ppp::v2::Unix::new([1; 108], [2; 108])),
    )
    .build()
    .unwrap();
    assert_eq!(parse(&unix), Ok(None));
}

#[test]
fn v2_tlvs_are_skipped() {
    let h = Builder::with_addresses(
        0x21,
        Protocol::Stream,
        (addr("10.0.0.1:1000"), addr("10.0.0.2:443")),
    )
    .write_tlv(ppp::v2::Type::Authority, b"relay.example")
    .unwrap()
    .build()
    .unwrap();
    assert_eq!(frame(&h), Framing::Complete(h.len()));
    assert_eq!(parse(&h), Ok(Some(addr("10.0.0.1:1000"))));
}

#[test]
fn v2_bad_version_command_family_or_length_is_invalid() {
    let good = v2(0x21, "10.0.0.1:1000", "10.0.0.2:443");
    let with = |i: usize, b: u8| {
        let mut h = good.clone();
        h[i] = b;
        h
    };
    assert_eq!(
        parse(&with(12, 0x11)),
        Err(Rejection::Invalid),
        "version 1 in binary"
    );
    assert_eq!(parse(&with(12, 0x22)), Err(Rejection::Invalid), "command 2");
    assert_eq!(parse(&with(13, 0x41)), Err(Rejection::Invalid), "family 4");
    // IPv4 needs 12 address bytes; declare 4.
    let mut short = good[..16 + 4].to_vec();
    short[15] = 4;
    assert_eq!(frame(&short), Framing::Complete(20));
    assert_eq!(parse(&short), Err(Rejection::Invalid));
}

#[test]
fn v2_longer_than_the_bound_is_invalid_from_its_fixed_part() {
    let mut h = v2(0x21, "10.0.0.1:1000", "10.0.0.2:443")[..16].to_vec();
    let len = u16::try_from(V2_MAX_BYTES - 16).unwrap();
    h[14..16].copy_from_slice(&len.to_be_bytes());
    assert_eq!(frame(&h), Framing::Incomplete, "exactly the bound");
    h[14..16].copy_from_slice(&(len + 1).to_be_bytes());
    assert_eq!(frame(&h), Framing::Invalid);
}

#[tokio::test]
async fn every_chunk_split_gives_the_same_header_and_rest() {
    for header in [V1_TCP4.to_vec(), v2(0x21, "10.0.0.1:1000", "10.0.0.2:443")] {
        let mut input = header.clone();
        input.extend_from_slice(b"\x16\x03\x01 client hello");
        for split in 1..input.len() {
            let chunks = vec![input[..split].to_vec(), input[split..].to_vec()];
            let (h, after) = read_all(chunks).await.expect("a header");
            assert!(h.client.is_some());
            assert_eq!(after, &input[header.len()..], "split at {split}");
        }
        let bytewise = input.iter().map(|b| vec![*b]).collect();
        let (_, after) = read_all(bytewise).await.expect("a header");
        assert_eq!(after, &input[header.len()..]);
    }
}

#[tokio::test]
async fn end_of_stream_before_the_header_ends_is_closed() {
    let r = read_all(vec![V1_TCP4[..20].to_vec()]).await;
    assert_eq!(r.err(), Some(Rejection::Closed));
    assert_eq!(read_all(vec![]).await.err(), Some(Rejection::Closed));
}

#[tokio::test]
async fn a_peer_outside_the_list_is_refused_before_reading() {
    let pp = ProxyProtocol::new(vec!["10.0.0.0/8".parse().unwrap()], Duration::from_secs(5));
    let r = pp
        .accept(Chunks(vec![V1_TCP4.to_vec()]), addr("192.0.2.1:5000"))
        .await;
    assert_eq!(r.err(), Some(Rejection::NotAllowed));
    let (_, client) = pp
        .accept(Chunks(vec![V1_TCP4.to_vec()]), addr("10.9.9.9:5000"))
        .await
        .expect("allowed");
    assert_eq!(client, addr("192.168.0.1:56324"));
    let (_, client) = pp
        .accept(
            Chunks(vec![b"PROXY UNKNOWN\r\n".to_vec()]),
            addr("10.9.9.9:5000"),
        )
        .await
        .expect("allowed");
    assert_eq!(
        client,
        addr("10.9.9.9:5000"),
        "UNKNOWN keeps the socket peer"
    );
}

#[tokio::test(start_paused = true)]
async fn a_header_that_never_completes_times_out() {
    let pp = ProxyProtocol::new(Vec::new(), Duration::from_millis(300));
    let (mut client, server) = tokio::io::duplex(64);
    client.write_all(&V1_TCP4[..10]).await.unwrap();
    let r = pp.accept(server, addr("10.0.0.1:1")).await;
    assert_eq!(r.err(), Some(Rejection::Timeout));
    drop(client);
}
