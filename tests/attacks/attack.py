#!/usr/bin/env python3
"""Hostile HTTP/2 clients for sse-relay's attack suite (tests/acceptance_attacks.rs drives them).

    python3 tests/attacks/attack.py ATTACK --port PORT --cafile CERT [options]
    python3 tests/attacks/attack.py --check     # are the pinned libraries importable?

Every attack is bounded by a count and by seconds, talks only to the given loopback address, and
stops by itself (a hard alarm backs that up). Progress goes to stderr; stdout carries `READY {...}`
(attacks that hold connections, once they are in place) and, last, `RESULT {...}`: one JSON
object saying what was sent and how the relay reacted.

Requires: pip install -r tests/attacks/requirements.txt
"""

import argparse
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

ATTACKS = [
    "rapid_reset",
    "continuation_flood",
    "hpack_bomb",
    "ping_flood",
    "settings_flood",
    "made_you_reset",
    "zero_window_streams",
    "topic_spray",
    "silent_tcp",
    "tls_no_preface",
]


def check():
    """Imports the pinned libraries and prints their versions; exit 1 naming what is missing."""
    from importlib.metadata import PackageNotFoundError, version

    found, missing = {}, []
    for name in ("h2", "hyperframe", "hpack"):
        try:
            __import__(name)
            found[name] = version(name)
        except (ImportError, PackageNotFoundError):
            missing.append(name)
    if missing:
        print(
            f"missing Python packages: {' '.join(missing)}; "
            "install them with: pip install -r tests/attacks/requirements.txt",
            file=sys.stderr,
        )
        return 1
    print("OK " + json.dumps(found))
    return 0


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("attack", nargs="?", choices=ATTACKS)
    p.add_argument("--check", action="store_true", help="verify the libraries and exit")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int)
    p.add_argument("--cafile", help="the relay's (dev) certificate, PEM")
    p.add_argument("--seconds", type=float, default=5.0, help="time limit of the attack")
    p.add_argument("--count", type=int, default=20000, help="streams, frames or connections")
    p.add_argument("--connections", type=int, default=8, help="connections at most")
    p.add_argument("--batch", type=int, default=64, help="streams or frames per write")
    p.add_argument("--topics", type=int, default=4, help="distinct topics requested")
    p.add_argument("--topic-prefix", default="attack")
    p.add_argument("--refs", type=int, default=16000, help="hpack_bomb: references per request")
    p.add_argument(
        "--primitive",
        default="window_update_zero",
        choices=["window_update_zero", "window_overflow", "data_after_end"],
        help="made_you_reset: the frame that makes the relay reset the stream",
    )
    p.add_argument("--streams", type=int, default=100, help="streams held open")
    p.add_argument("--hold", type=float, default=5.0, help="seconds to hold connections")
    args = p.parse_args(argv)
    if not args.check and (args.attack is None or args.port is None or args.cafile is None):
        p.error("ATTACK, --port and --cafile are required")
    return args


def main(argv):
    args = parse(argv)
    if args.check:
        return check()
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        print("refusing a non-loopback target", file=sys.stderr)
        return 2
    # Whatever happens, this process ends: the attack's own limits plus a margin.
    signal.alarm(int(args.seconds + args.hold + 30))

    import floods
    import holders
    from h2raw import Target

    args.target = Target(args.host, args.port, args.cafile)
    run = getattr(floods, args.attack, None) or getattr(holders, args.attack)
    started = time.monotonic()
    print(f"{args.attack}: starting against {args.host}:{args.port}", file=sys.stderr)
    result = run(args)
    result = {"attack": args.attack, "elapsed_s": round(time.monotonic() - started, 3), **result}
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
