"""The luma plane of a decoded frame as a numpy view, without colour conversion or copies."""

from __future__ import annotations

import av
import numpy as np
import numpy.typing as npt

Luma = npt.NDArray[np.uint8]


def luma_plane(frame: av.VideoFrame) -> Luma:
    """Y (H, W) of an 8-bit planar YUV frame: a strided view that skips the line padding.

    Reading the plane directly is what keeps grey work cheap (FIELD_NOTES: `to_ndarray` with
    `format="gray"` runs through swscale).
    """
    fmt = frame.format
    luma = fmt.components[0]
    if not luma.is_luma or luma.bits != 8 or any(c.plane == 0 for c in fmt.components[1:]):
        raise ValueError(f"pixel format {fmt.name} has no 8-bit plane of luma alone")
    plane = frame.planes[0]
    rows = np.frombuffer(memoryview(plane), np.uint8)[: plane.line_size * plane.height]
    view: Luma = rows.reshape(plane.height, plane.line_size)[:, : plane.width]
    return view
