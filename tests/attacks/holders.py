"""Attacks that hold resources instead of flooding: streams that never grant flow-control window,
streams that each ask for a different topic, TCP connections that never speak, TLS connections
that never send the h2 preface. Each prints
`READY {...}` on stdout once its connections are in place (so the driving test can check the
relay while they are held), then waits, bounded, and returns a JSON-able summary.
"""

import json
import selectors
import socket
import statistics
import sys
import time
from collections import Counter

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)
from h2.settings import SettingCodes
from h2raw import Conn, error_name


def ready(**info):
    print("READY " + json.dumps(info), flush=True)


class Subscriber:
    """A well-formed h2 client (the `h2` library in client mode) that subscribes to event
    streams. `window` says how it treats flow control: "zero" (SETTINGS_INITIAL_WINDOW_SIZE 0,
    so the relay may send no DATA at all), "never_updated" (the default 64 KB, never
    replenished: the relay may send 64 KB per connection, then nothing more) or "normal"
    (every DATA byte acknowledged with WINDOW_UPDATE, like a browser)."""

    def __init__(self, target, window):
        self.window = window
        self.conn = Conn(target)
        self.h2 = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        self.h2.initiate_connection()
        if window == "zero":
            self.h2.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 0})
        self.conn.on_plaintext = self._feed
        self.responded, self.statuses = set(), Counter()
        self.data_bytes, self.ended, self.reset = 0, 0, Counter()
        self.goaway, self.error = None, None
        self.streams = 0

    def subscribe(self, path):
        sid = self.h2.get_next_available_stream_id()
        self.h2.send_headers(
            sid,
            [
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "localhost"),
                (":path", path),
                ("accept", "text/event-stream"),
            ],
            end_stream=True,
        )
        self.streams += 1
        self.flush()

    def flush(self):
        out = self.h2.data_to_send()
        if out:
            self.conn.send(out)

    def _feed(self):
        data = bytes(self.conn.plain)
        self.conn.plain.clear()
        try:
            events = self.h2.receive_data(data)
        except Exception as e:  # the relay broke the protocol: record it, stop reading
            self.error = repr(e)
            self.conn._eof()
            return
        for ev in events:
            if isinstance(ev, ResponseReceived):
                self.responded.add(ev.stream_id)
                self.statuses[dict(ev.headers).get(":status", "?")] += 1
            elif isinstance(ev, DataReceived):
                self.data_bytes += ev.flow_controlled_length
                if self.window == "normal":
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, StreamEnded):
                self.ended += 1
            elif isinstance(ev, StreamReset):
                self.reset[error_name(ev.error_code)] += 1
            elif isinstance(ev, ConnectionTerminated):
                self.goaway = error_name(ev.error_code)
        self.flush()  # SETTINGS and PING acknowledgements (and WINDOW_UPDATE when "normal")

    def summary(self):
        return {
            "window": self.window,
            "streams": self.streams,
            "responses": len(self.responded),
            "statuses": dict(self.statuses),
            "data_bytes_received": self.data_bytes,
            "streams_ended_by_relay": self.ended,
            "streams_reset_by_relay": dict(self.reset),
            "goaway": self.goaway,
            "closed_by_relay": self.conn.closed,
            "protocol_error": self.error,
        }


def _hold_streams(args, windows, paths):
    """`args.streams` event streams on `paths` (round robin) over one connection per entry of
    `windows`, held for `args.hold` seconds; READY once the relay has answered them all (or
    after `args.seconds`)."""
    clients = [Subscriber(args.target, w) for w in windows]
    for n in range(args.streams):
        clients[n % len(clients)].subscribe(paths[n % len(paths)])
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        for c in clients:
            c.conn.pump(time.monotonic() + 0.02, until_flushed=False)
        if sum(len(c.responded) for c in clients) >= args.streams:
            break
    responses = sum(len(c.responded) for c in clients)
    ready(streams=args.streams, responses=responses)
    hold_until = time.monotonic() + args.hold
    while time.monotonic() < hold_until:
        for c in clients:
            c.conn.pump(time.monotonic() + 0.02, until_flushed=False)
    per_conn = [c.summary() for c in clients]
    for c in clients:
        c.conn.close()
    return {
        "streams": args.streams,
        "responses": responses,
        "held_s": args.hold,
        "per_connection": per_conn,
    }


def zero_window_streams(args):
    """Event streams over `args.connections` connections, alternately with a zero initial
    window and with the default window never replenished, on `args.topics` topics, held while
    the relay has events to send on them."""
    windows = ["zero" if i % 2 == 0 else "never_updated" for i in range(args.connections)]
    paths = [f"/events/{args.topic_prefix}-{i}" for i in range(args.topics)]
    result = _hold_streams(args, windows, paths)
    for window in ("zero", "never_updated"):
        result[f"data_bytes_{window}_window"] = sum(
            p["data_bytes_received"] for p in result["per_connection"] if p["window"] == window
        )
    return result


def topic_spray(args):
    """A well-behaved client in every respect but one: each of its `args.streams` streams asks
    for a different topic, so each may cost the relay an upstream subscription."""
    paths = [f"/events/{args.topic_prefix}-{i}" for i in range(args.streams)]
    return _hold_streams(args, ["normal"] * args.connections, paths)


def _await_close(socks, seconds):
    """Waits (bounded) until the relay closes each socket: `socks` maps a socket to the time
    from which its silence counts. Returns close times and what is still open."""
    sel = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
    closed_after, received = [], 0
    deadline = time.monotonic() + seconds
    while socks and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=min(0.05, max(0.0, deadline - time.monotonic()))):
            sock = key.fileobj
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:  # reset by the relay: closed as well
                data = b""
            if data:
                received += len(data)  # TLS alerts or records: not yet closed
                continue
            closed_after.append(time.monotonic() - socks.pop(sock))
            sel.unregister(sock)
            sock.close()
    still_open = len(socks)
    for sock in list(socks):
        sel.unregister(sock)
        sock.close()
    sel.close()
    return {
        "closed_by_relay": len(closed_after),
        "still_open": still_open,
        "waited_at_most_s": seconds,
        "bytes_received_before_close": received,
        "close_after_s": _stats(closed_after),
    }


def _stats(values):
    if not values:
        return None
    return {
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }


def silent_tcp(args):
    """`args.count` TCP connections to the TLS port that never send a byte."""
    socks = {}
    for _ in range(args.count):
        sock = socket.create_connection((args.target.host, args.target.port), timeout=5)
        socks[sock] = time.monotonic()
    ready(connections=len(socks))
    result = _await_close(socks, args.seconds)
    result["connections"] = args.count
    return result


def tls_no_preface(args):
    """`args.count` connections that complete the TLS handshake (ALPN h2) and then never send
    the HTTP/2 connection preface. Silence counts from the end of each handshake."""
    conns = []
    for _ in range(args.count):
        conns.append(Conn(args.target))
    alpn = Counter(c.alpn for c in conns)
    # Anything the relay sent (TLS session tickets) is read through the TLS layer first, so
    # that what is left on the socket is only its close.
    for c in conns:
        c.read_available()
    ready(connections=len(conns))
    socks = {c.raw: c.handshaken for c in conns if not c.closed}
    early = [c.eof_at - c.handshaken for c in conns if c.closed]
    result = _await_close(socks, args.seconds)
    result["connections"] = args.count
    result["alpn"] = dict(alpn)
    result["closed_before_waiting"] = len(early)
    if early:
        result["closed_by_relay"] += len(early)
    print(f"tls_no_preface: handshakes done, alpn {dict(alpn)}", file=sys.stderr)
    return result
