#!/usr/bin/python3
"""Third-party RTSP peer: GStreamer's RTSP server serving an H.264 MP4 file, looped.

Run with Debian's /usr/bin/python3 (it has the gi bindings):
    gst_rtsp_server.py --port P --file F.mp4 [--path /stream] [--udp]
Prints "READY rtsp://127.0.0.1:P/stream" once listening; exits 0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

import gi  # type: ignore[import-not-found]

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # type: ignore[import-not-found]  # noqa: E402

HOST = "127.0.0.1"


def launch_line(media: Path) -> str:
    """The media factory's pipeline; `EndlessFile` finds its elements by these names."""
    location = str(media).replace("\\", "\\\\").replace('"', '\\"')
    return (
        f'( filesrc location="{location}" ! qtdemux name=demux ! h264parse name=parse'
        " ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


class EndlessFile:
    """Makes a media's file endless, like a camera: at its end, seek the demuxer back to 0.

    A non-flushing seek cannot revive a demuxer pad that has sent EOS, so the seek flushes; but
    the EOS and the flush stop at the parser, so the payloader and the server's sinks play on.
    Segments leaving the demuxer are rewritten past the parser: no stop (the server announces
    the stop as the SDP range, and clients that honour it, like rtspsrc, would end there) and a
    base that grows by the file's duration each pass, so running time and RTP timestamps keep
    going up.
    """

    def __init__(self, media: Any) -> None:
        bin_ = media.get_element()
        self.demux = bin_.get_by_name("demux")
        self.pad = bin_.get_by_name("parse").get_static_pad("sink")
        self.base = 0  # running time at which the current pass started
        self.rewind_seqnum: int | None = None
        self.pad.add_probe(
            Gst.PadProbeType.EVENT_DOWNSTREAM | Gst.PadProbeType.EVENT_FLUSH, self.on_event
        )

    def rewind(self) -> bool:
        ok, duration = self.demux.query_duration(Gst.Format.TIME)
        if ok:
            self.base += duration
            seek = Gst.Event.new_seek(
                1.0,
                Gst.Format.TIME,
                Gst.SeekFlags.FLUSH,
                Gst.SeekType.SET,
                0,
                Gst.SeekType.NONE,
                -1,
            )
            # The seek's flushes carry its seqnum and arrive before send_event returns.
            self.rewind_seqnum = seek.get_seqnum()
            self.demux.send_event(seek)
        return False  # an idle callback: run once

    def on_event(self, pad: Any, info: Any) -> Any:
        event = info.get_event()
        if event.type == Gst.EventType.EOS:
            # Seeking from the demuxer's own streaming thread would deadlock on its stream lock.
            GLib.idle_add(self.rewind)
            return Gst.PadProbeReturn.DROP
        if event.type in (Gst.EventType.FLUSH_START, Gst.EventType.FLUSH_STOP):
            if event.get_seqnum() == self.rewind_seqnum:
                return Gst.PadProbeReturn.DROP
            self.base = 0  # the server's own seek restarts running time
        if event.type == Gst.EventType.SEGMENT:
            segment = event.parse_segment().copy()
            if segment.stop != Gst.CLOCK_TIME_NONE:  # from the demuxer, not rewritten yet
                segment.stop = Gst.CLOCK_TIME_NONE
                segment.base += self.base
                endless = Gst.Event.new_segment(segment)
                endless.set_seqnum(event.get_seqnum())
                pad.send_event(endless)
                return Gst.PadProbeReturn.DROP
        return Gst.PadProbeReturn.OK


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--file", type=Path, required=True, help="MP4 with one H.264 track")
    parser.add_argument("--path", default="/stream", help="mount point, starts with /")
    parser.add_argument("--udp", action="store_true", help="offer UDP transport as well as TCP")
    parser.add_argument(
        "--mounts", type=int, default=1, help="serve N mounts PATH1..PATHN (benchmarks)"
    )
    args = parser.parse_args(argv)
    if not args.file.is_file():
        parser.error(f"no such file: {args.file}")
    if not args.path.startswith("/"):
        parser.error(f"--path must start with '/': {args.path!r}")
    return args


def make_factory(args: argparse.Namespace) -> GstRtspServer.RTSPMediaFactory:
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args.file.resolve()))
    factory.set_shared(True)
    transports = GstRtsp.RTSPLowerTrans.TCP
    if args.udp:
        transports |= GstRtsp.RTSPLowerTrans.UDP
    factory.set_protocols(transports)
    # Each new media gets its own looper; the pad probe it installs keeps it alive.
    factory.connect("media-configure", lambda _factory, media: EndlessFile(media))
    return factory


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    Gst.init(None)

    server = GstRtspServer.RTSPServer()
    server.set_address(HOST)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    if args.mounts == 1:
        mounts.add_factory(args.path, make_factory(args))
    else:
        for i in range(1, args.mounts + 1):
            mounts.add_factory(f"{args.path}{i}", make_factory(args))
    # attach() binds and listens; 0 means it could not (port taken, say).
    if not server.attach(None):
        print(f"gst_rtsp_server: cannot listen on {HOST}:{args.port}", file=sys.stderr)
        return 2

    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    print(f"READY rtsp://{HOST}:{args.port}{args.path}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
