"""Still images for the web view: one decoded frame to JPEG, with the encoder PyAV ships."""

from __future__ import annotations

from fractions import Fraction

import av


def to_jpeg(frame: av.VideoFrame, quality: int = 5) -> bytes:
    """JPEG bytes of a frame; `quality` is mjpeg's qscale (2 best .. 31 worst)."""
    codec = av.CodecContext.create("mjpeg", "w")
    assert isinstance(codec, av.VideoCodecContext)
    codec.width, codec.height = frame.width, frame.height
    codec.pix_fmt = "yuvj420p"
    codec.time_base = Fraction(1, 25)  # any rate: one still image
    codec.options = {"qscale": str(quality)}
    image = frame.reformat(format="yuvj420p") if frame.format.name != "yuvj420p" else frame
    image.pts = None
    packets = codec.encode(image) + codec.encode(None)
    return b"".join(bytes(p) for p in packets)
