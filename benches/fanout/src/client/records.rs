//! TLS records counted under the client's TLS: a parser of record boundaries in a byte
//! stream, and a TCP stream wrapper that feeds it everything it reads and counts its bytes.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::Tally;

/// TLS record boundaries in a byte stream read in arbitrary pieces (RFC 8446 §5.1: a 5-byte
/// header of content type, version and length, then `length` bytes): counts the
/// application-data records (content type 23).
#[derive(Default)]
pub struct RecordParser {
    header: [u8; 5],
    header_len: usize,
    remaining: usize,
}

impl RecordParser {
    /// Feeds the next bytes; returns the application-data records whose header they completed.
    pub fn feed(&mut self, mut bytes: &[u8]) -> u64 {
        let mut records = 0;
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let take = self.remaining.min(bytes.len());
                self.remaining -= take;
                bytes = &bytes[take..];
                continue;
            }
            self.header[self.header_len] = bytes[0];
            self.header_len += 1;
            bytes = &bytes[1..];
            if self.header_len == 5 {
                self.header_len = 0;
                self.remaining = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                if self.header[0] == 23 {
                    records += 1;
                }
            }
        }
        records
    }
}

/// Passes bytes through, counting the bytes and the TLS application-data records (content type 23)
/// it reads.
pub(super) struct RecordCounter {
    inner: TcpStream,
    tally: Arc<Tally>,
    records: RecordParser,
}

impl RecordCounter {
    pub(super) fn new(inner: TcpStream, tally: Arc<Tally>) -> Self {
        Self {
            inner,
            tally,
            records: RecordParser::default(),
        }
    }
}

impl AsyncRead for RecordCounter {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let read = &buf.filled()[before..];
            this.tally
                .tls_bytes
                .fetch_add(read.len() as u64, Ordering::Relaxed);
            let records = this.records.feed(read);
            if records > 0 {
                this.tally.records.fetch_add(records, Ordering::Relaxed);
            }
        }
        result
    }
}

impl AsyncWrite for RecordCounter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TLS record: type, version 3.3, length, payload.
    fn record(kind: u8, len: usize) -> Vec<u8> {
        let mut r = vec![kind, 3, 3];
        r.extend_from_slice(&(len as u16).to_be_bytes());
        r.extend(std::iter::repeat_n(0xAB, len));
        r
    }

    #[test]
    fn only_application_data_records_are_counted_in_any_split() {
        let mut wire = record(22, 90); // handshake
        wire.extend(record(23, 300));
        wire.extend(record(21, 2)); // alert
        wire.extend(record(23, 0));
        wire.extend(record(23, 16_401));
        for piece in [1, 3, 5, 6, 4096, wire.len()] {
            let mut parser = RecordParser::default();
            let counted: u64 = wire.chunks(piece).map(|c| parser.feed(c)).sum();
            assert_eq!(counted, 3, "piece {piece}");
        }
    }
}
