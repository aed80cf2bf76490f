"""Plumbing shared by the hostile clients: a TLS connection driven through memory BIOs on a
non-blocking socket (one thread, so reading and writing never race inside OpenSSL), request
header blocks encoded by hand with a known HPACK state, and a frame reader (hyperframe) that
counts what the relay answered.

Nothing here retries, sleeps unbounded or leaves a socket open: every wait takes a deadline.
"""

import select
import socket
import ssl
import time
from collections import Counter

from hpack import Decoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
CANCEL = 0x8

# RFC 9113 §7 error codes, for readable results.
ERROR_NAMES = {
    0x0: "NO_ERROR", 0x1: "PROTOCOL_ERROR", 0x2: "INTERNAL_ERROR", 0x3: "FLOW_CONTROL_ERROR",
    0x4: "SETTINGS_TIMEOUT", 0x5: "STREAM_CLOSED", 0x6: "FRAME_SIZE_ERROR",
    0x7: "REFUSED_STREAM", 0x8: "CANCEL", 0x9: "COMPRESSION_ERROR", 0xA: "CONNECT_ERROR",
    0xB: "ENHANCE_YOUR_CALM", 0xC: "INADEQUATE_SECURITY", 0xD: "HTTP_1_1_REQUIRED",
}


def error_name(code):
    return ERROR_NAMES.get(code, hex(code))


class Target:
    """Where the relay listens and how to trust it."""

    def __init__(self, host, port, cafile):
        self.host, self.port, self.cafile = host, port, cafile

    def context(self, alpn=("h2",)):
        ctx = ssl.create_default_context(cafile=self.cafile)
        ctx.check_hostname = True
        ctx.set_alpn_protocols(list(alpn))
        return ctx


# --- HPACK, by hand (RFC 7541), so the dynamic table holds exactly what an attack put there ---

def hpack_int(value, prefix_bits, first_byte=0):
    """RFC 7541 §5.1 integer with an N-bit prefix; `first_byte` carries the pattern bits."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte | value])
    out = bytearray([first_byte | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_str(text):
    """A string literal without Huffman coding."""
    raw = text.encode() if isinstance(text, str) else text
    return hpack_int(len(raw), 7) + raw


def literal_indexed_name(index, value):
    """Literal header field without indexing, name from the static table (§6.2.2)."""
    return hpack_int(index, 4) + hpack_str(value)


def literal_new_name(name, value, incremental=False):
    """Literal with a new name; with `incremental` it enters the dynamic table (§6.2.1)."""
    return bytes([0x40 if incremental else 0x00]) + hpack_str(name) + hpack_str(value)


# Static table: 2 = :method GET, 7 = :scheme https, 1 = :authority, 4 = :path, 19 = accept.
def request_block(path, authority="localhost"):
    """The header block of `GET path` as EventSource sends it; leaves the dynamic table alone."""
    return (
        b"\x82\x87"
        + literal_indexed_name(1, authority)
        + literal_indexed_name(4, path)
        + literal_indexed_name(19, "text/event-stream")
    )


# --- frames ---

def headers(stream_id, block, end_headers=True, end_stream=True):
    flags = (["END_HEADERS"] if end_headers else []) + (["END_STREAM"] if end_stream else [])
    return HeadersFrame(stream_id, data=block, flags=flags).serialize()


def continuation(stream_id, fragment, end_headers=False):
    flags = ["END_HEADERS"] if end_headers else []
    return ContinuationFrame(stream_id, data=fragment, flags=flags).serialize()


def data(stream_id, payload, end_stream=True):
    flags = ["END_STREAM"] if end_stream else []
    return DataFrame(stream_id, data=payload, flags=flags).serialize()


def rst_stream(stream_id, code=CANCEL):
    return RstStreamFrame(stream_id, error_code=code).serialize()


def ping(opaque=b"hostile!", ack=False):
    return PingFrame(0, opaque_data=opaque, flags=["ACK"] if ack else []).serialize()


def settings(values=None, ack=False):
    return SettingsFrame(0, settings=values or {}, flags=["ACK"] if ack else []).serialize()


def window_update(stream_id, increment):
    """Built by hand: hyperframe would mask the increment, and 0 is the point here."""
    return b"\x00\x00\x04\x08\x00" + stream_id.to_bytes(4, "big") + increment.to_bytes(4, "big")


class Conn:
    """One TLS connection to the relay. `send` queues plaintext; `pump` moves bytes both ways
    (or only outwards, for attacks that never read) until a deadline. Frames the relay sends are
    parsed and counted; its SETTINGS are acknowledged, as any client would."""

    def __init__(self, target, alpn=("h2",), timeout=5.0):
        self.opened = time.monotonic()
        self.raw = socket.create_connection((target.host, target.port), timeout=timeout)
        self.raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.inc, self.outb = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = target.context(alpn).wrap_bio(self.inc, self.outb, server_hostname="localhost")
        self._handshake()
        self.handshaken = time.monotonic()
        self.alpn = self.tls.selected_alpn_protocol()
        self.raw.setblocking(False)
        self.pending = bytearray()  # ciphertext not yet accepted by the kernel
        self.plain = bytearray()  # plaintext not yet parsed
        self.on_plaintext = self._parse_frames  # replaced by clients that parse themselves
        self.eof_at = None
        self.bytes_in = 0
        self.frames = Counter()
        self.goaway = None
        self.rst_codes = Counter()
        self.statuses = Counter()
        self.data_bytes = 0
        self.ack_settings = True
        self._hpack = Decoder()

    def _handshake(self):
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                out = self.outb.read()
                if out:
                    self.raw.sendall(out)
                data = self.raw.recv(65536)
                if not data:
                    raise ConnectionError("closed during the TLS handshake")
                self.inc.write(data)
        out = self.outb.read()
        if out:
            self.raw.sendall(out)

    @property
    def closed(self):
        return self.eof_at is not None

    def start_h2(self, values=None):
        """Client preface and SETTINGS."""
        self.send(PREFACE + settings(values))

    def send(self, plaintext):
        self.tls.write(plaintext)
        self.pending += self.outb.read()

    def pump(self, deadline, read=True, until_flushed=True):
        """Writes what is queued (and reads, unless `read` is false) until everything is sent
        (when `until_flushed`), the peer closes, or `deadline`. True when nothing is left."""
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0 or (until_flushed and not self.pending):
                break
            rlist = [self.raw] if read else []
            wlist = [self.raw] if self.pending else []
            if not rlist and not wlist:
                break
            readable, writable, _ = select.select(rlist, wlist, [], min(left, 0.05))
            if writable:
                try:
                    sent = self.raw.send(self.pending)
                    del self.pending[:sent]
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    self._eof()
            if readable:
                self.read_available(deadline)
        return not self.pending

    def read_available(self, deadline=None):
        """Reads what the kernel holds, without waiting (and, given a deadline, not past it:
        parsing a flood's worth of answers in Python takes a while)."""
        while not self.closed and (deadline is None or time.monotonic() < deadline):
            try:
                data = self.raw.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._eof()
                return
            if not data:
                self._eof()
                return
            self.bytes_in += len(data)
            self.inc.write(data)
            self._decrypt()

    def _decrypt(self):
        while True:
            try:
                chunk = self.tls.read(65536)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLError):
                self._eof()
                break
            if not chunk:
                self._eof()
                break
            self.plain += chunk
        if self.plain:
            self.on_plaintext()
        out = self.outb.read()  # TLS 1.3 post-handshake records, key updates
        if out:
            self.pending += out

    def _eof(self):
        if self.eof_at is None:
            self.eof_at = time.monotonic()

    def _parse_frames(self):
        while len(self.plain) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.plain[:9]))
            if len(self.plain) < 9 + length:
                return
            body = bytes(self.plain[9:9 + length])
            del self.plain[:9 + length]
            try:
                frame.parse_body(memoryview(body))
            except Exception:  # a frame hyperframe rejects is still counted by type
                self.frames[type(frame).__name__] += 1
                continue
            self._on_frame(frame)

    def _on_frame(self, frame):
        kind = type(frame).__name__
        self.frames[kind] += 1
        if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags and self.ack_settings:
            self.send(settings(ack=True))
        elif isinstance(frame, GoAwayFrame) and self.goaway is None:
            self.goaway = {
                "error": error_name(frame.error_code),
                "last_stream_id": frame.last_stream_id,
                "debug": frame.additional_data.decode("utf-8", "replace"),
                "after_s": round(time.monotonic() - self.opened, 3),
            }
        elif isinstance(frame, RstStreamFrame):
            self.rst_codes[error_name(frame.error_code)] += 1
        elif kind == "DataFrame":
            self.data_bytes += len(frame.data)
        elif isinstance(frame, HeadersFrame) and "END_HEADERS" in frame.flags:
            try:
                for name, value in self._hpack.decode(frame.data):
                    if name in (":status", b":status"):
                        value = value.decode() if isinstance(value, bytes) else value
                        self.statuses[value] += 1
            except Exception:
                self.statuses["undecodable"] += 1

    def drain(self, seconds):
        """Reads for up to `seconds` (answering SETTINGS), to learn how the relay reacted."""
        self.pump(time.monotonic() + seconds, read=True, until_flushed=False)

    def summary(self):
        return {
            "alpn": self.alpn,
            "closed_by_relay": self.closed,
            "closed_after_s": round(self.eof_at - self.opened, 3) if self.closed else None,
            "goaway": self.goaway,
            "frames_received": dict(self.frames),
            "rst_received": dict(self.rst_codes),
            "statuses": dict(self.statuses),
            "data_bytes_received": self.data_bytes,
            "unsent_bytes": len(self.pending),
        }

    def close(self):
        try:
            self.raw.close()
        except OSError:
            pass
