"""A lean RTSP client for benchmarks: N streams over TCP, counts frames and bytes, no decode.

Run as its own process so its CPU is not counted against the server being measured:
    python benchmarks/rtsp_reader.py --seconds 20 URL [URL ...]   -> one JSON line
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from fleet.rtsp.message import ClientConnection, InterleavedFrame, Response, render_request
from fleet.rtsp.rtp import parse_rtp
from fleet.rtsp.sdp import parse_sdp


@dataclass
class StreamCount:
    url: str
    frames: int = 0
    bytes: int = 0
    first_frame_s: float | None = None  # time from PLAY to the first complete frame
    error: str | None = None


async def _read(url: str, seconds: float, count: StreamCount) -> None:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 554)
    parser = ClientConnection()
    cseq = 0

    async def ask(method: str, uri: str, headers: list[tuple[str, str]]) -> Response:
        nonlocal cseq
        cseq += 1
        writer.write(render_request(method, uri, cseq, headers))
        while True:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError(f"{method}: connection closed")
            for ev in parser.receive_data(data):
                if isinstance(ev, Response):
                    if ev.status != 200:
                        raise ConnectionError(f"{method}: {ev.status} {ev.reason}")
                    return ev

    try:
        desc = await ask("DESCRIBE", url, [("Accept", "application/sdp")])
        base = desc.headers.get("Content-Base") or url + "/"
        control = parse_sdp(desc.body.decode()).media[0].control or ""
        track = control if "://" in control else base.rstrip("/") + "/" + control
        setup = await ask("SETUP", track, [("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")])
        session = (setup.headers.get("Session") or "").split(";")[0]
        await ask("PLAY", url, [("Session", session)])
        started = time.monotonic()
        deadline = started + seconds
        while time.monotonic() < deadline:
            data = await asyncio.wait_for(reader.read(262144), timeout=10)
            if not data:
                raise ConnectionError("server closed the stream")
            count.bytes += len(data)
            for ev in parser.receive_data(data):
                if (
                    isinstance(ev, InterleavedFrame)
                    and ev.channel == 0
                    and parse_rtp(ev.payload).marker
                ):
                    count.frames += 1
                    if count.first_frame_s is None:
                        count.first_frame_s = time.monotonic() - started
    except Exception as exc:
        count.error = f"{type(exc).__name__}: {exc}"
    finally:
        writer.close()


async def read_streams(urls: list[str], seconds: float) -> list[StreamCount]:
    counts = [StreamCount(u) for u in urls]
    await asyncio.gather(*(_read(u, seconds, c) for u, c in zip(urls, counts, strict=True)))
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("urls", nargs="+")
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    counts = asyncio.run(read_streams(args.urls, args.seconds))
    print(json.dumps([asdict(c) for c in counts]))


if __name__ == "__main__":
    main()
