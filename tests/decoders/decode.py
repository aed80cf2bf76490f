"""Decodes one compressed event stream as it arrives, with Python's zlib (gzip) or the
zstandard package (zstd, libzstd), for tests/acceptance_compression.rs.

    python3 tests/decoders/decode.py gzip|zstd

Reads commands on stdin, one a line, and answers each with one JSON line on stdout:

    c BASE64   a chunk of the stream as the client received it
               -> {"plain": BASE64} what it decoded to at once, or {"error": TEXT}
    e          the stream ended (the server closed it)
               -> {"complete": BOOL, "detail": TEXT, "whole": BASE64}

gzip (RFC 1952) is one member decoded by `zlib.decompressobj(wbits=31)`, which checks the
trailer's CRC-32 and length; the stream is complete when the member ended (`eof`) with no
byte after it. zstd (RFC 8878) is a sequence of frames, each decoded by a decompressobj of its
own; complete when the last frame ended with no byte after it. At the end, "whole" is the
stream decoded a second time in one piece (`gzip.decompress`, a zstandard stream reader
across frames), for the test to compare with the chunks' output.
"""

import base64
import gzip
import io
import json
import sys
import zlib

import zstandard


class Gzip:
    def __init__(self):
        self.d = zlib.decompressobj(wbits=31)

    def feed(self, data):
        if self.d.eof and data:
            raise ValueError(f"{len(data)} bytes after the gzip trailer")
        out = self.d.decompress(data)
        if self.d.unused_data:
            raise ValueError(f"{len(self.d.unused_data)} bytes after the gzip trailer")
        return out

    def end(self):
        if not self.d.eof:
            return False, "no gzip trailer: the deflate stream did not end"
        return True, "one gzip member, trailer (CRC-32, length) checked"

    @staticmethod
    def whole(stream):
        return gzip.decompress(stream)


class Zstd:
    def __init__(self):
        self.dctx = zstandard.ZstdDecompressor()
        self.frame = None
        self.frames = 0

    def feed(self, data):
        out = []
        while data:
            if self.frame is None:
                self.frame = self.dctx.decompressobj()
            out.append(self.frame.decompress(data))
            if self.frame.eof:
                data = self.frame.unused_data
                self.frame = None
                self.frames += 1
            else:
                data = b""
        return b"".join(out)

    def end(self):
        if self.frame is not None:
            return False, f"the last zstd frame did not end (after {self.frames} whole frames)"
        return True, f"{self.frames} whole zstd frames"

    @staticmethod
    def whole(stream):
        reader = zstandard.ZstdDecompressor().stream_reader(
            io.BytesIO(stream), read_across_frames=True
        )
        return reader.read()


def answer(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    coding = sys.argv[1]
    decoder = {"gzip": Gzip, "zstd": Zstd}[coding]()
    stream = bytearray()
    failed = None
    for line in sys.stdin:
        command, _, arg = line.rstrip("\n").partition(" ")
        if command == "c":
            data = base64.b64decode(arg)
            stream += data
            if failed is not None:
                answer({"error": f"already failed: {failed}"})
                continue
            try:
                plain = decoder.feed(data)
            except Exception as e:  # zlib.error, zstandard.ZstdError, ValueError
                failed = f"{type(e).__name__}: {e}"
                answer({"error": failed})
                continue
            answer({"plain": base64.b64encode(plain).decode()})
        elif command == "e":
            if failed is not None:
                answer({"complete": False, "detail": failed, "whole": ""})
                continue
            complete, detail = decoder.end()
            try:
                whole = base64.b64encode(decoder.whole(bytes(stream))).decode()
            except Exception as e:
                complete, detail, whole = False, f"{detail}; whole: {type(e).__name__}: {e}", ""
            answer({"complete": complete, "detail": detail, "whole": whole})
        else:
            answer({"error": f"unknown command {command!r}"})


if __name__ == "__main__":
    main()
