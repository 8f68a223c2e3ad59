#!/usr/bin/python3
"""Third-party RTSP peer: GStreamer's rtspsrc plays an H.264 stream and counts decoded frames.

Run with Debian's /usr/bin/python3 (it has the gi bindings):
    gst_rtsp_play.py URL [--protocol tcp|udp] [--frames N] [--timeout S]
Prints one JSON line {"frames", "width", "height", "protocol", "error"}; exits 0 when N frames
were decoded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import asdict, dataclass
from typing import Any

import gi  # type: ignore[import-not-found]

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # type: ignore[import-not-found]  # noqa: E402


@dataclass
class Result:
    frames: int = 0
    width: int | None = None
    height: int | None = None
    protocol: str = "tcp"
    error: str | None = None


def build_pipeline(url: str, protocol: str) -> tuple[Any, Any]:
    """rtspsrc ! rtph264depay ! h264parse ! avdec_h264 ! fakesink; (pipeline, fakesink)."""
    pipeline = Gst.Pipeline.new("play")
    names = ["rtspsrc", "rtph264depay", "h264parse", "avdec_h264", "fakesink"]
    elements = [Gst.ElementFactory.make(name) for name in names]
    absent = [name for name, element in zip(names, elements, strict=True) if element is None]
    if absent:
        raise RuntimeError(f"GStreamer elements not installed: {', '.join(absent)}")
    src, depay, *_, sink = elements
    src.set_property("location", url)
    src.set_property("latency", 0)
    Gst.util_set_object_arg(src, "protocols", protocol)
    sink.set_property("signal-handoffs", True)
    sink.set_property("sync", False)
    for element in elements:
        pipeline.add(element)
    for upstream, downstream in itertools.pairwise(elements[1:]):
        upstream.link(downstream)

    # rtspsrc makes its pads once the session is set up.
    def on_pad_added(_src: Any, pad: Any) -> None:
        pad.link(depay.get_static_pad("sink"))

    src.connect("pad-added", on_pad_added)
    return pipeline, sink


def play(url: str, protocol: str, frames: int, timeout: float) -> Result:
    result = Result(protocol=protocol)
    pipeline, sink = build_pipeline(url, protocol)
    loop = GLib.MainLoop()

    def on_handoff(_sink: Any, _buffer: Any, pad: Any) -> None:
        if result.width is None:
            caps = pad.get_current_caps().get_structure(0)
            result.width, result.height = caps.get_value("width"), caps.get_value("height")
        result.frames += 1
        if result.frames >= frames:
            loop.quit()  # thread-safe; handoffs come from the streaming thread

    def on_message(_bus: Any, message: Any) -> None:
        if message.type == Gst.MessageType.ERROR:
            err, _debug = message.parse_error()
            result.error = f"{message.src.get_name()}: {err.message}"
            loop.quit()
        elif message.type == Gst.MessageType.EOS:
            result.error = "stream ended"
            loop.quit()

    def on_timeout() -> bool:
        result.error = f"timed out after {timeout:g}s"
        loop.quit()
        return False

    sink.connect("handoff", on_handoff)
    bus = pipeline.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    GLib.timeout_add(int(timeout * 1000), on_timeout)
    if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
        result.error = "pipeline failed to start"
    else:
        loop.run()
    pipeline.set_state(Gst.State.NULL)
    bus.remove_signal_watch()
    if result.frames >= frames:
        result.error = None  # whatever came after the last needed frame does not matter
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--protocol", choices=["tcp", "udp"], default="tcp")
    parser.add_argument("--frames", type=int, default=30, help="decoded frames needed")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.timeout <= 0:
        parser.error("--frames and --timeout must be positive")
    Gst.init(None)
    try:
        result = play(args.url, args.protocol, args.frames, args.timeout)
    except RuntimeError as exc:
        result = Result(protocol=args.protocol, error=str(exc))
    print(json.dumps(asdict(result)), flush=True)
    return 0 if result.frames >= args.frames else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
