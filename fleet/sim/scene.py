"""Synthetic CCTV scenes: a deterministic, seamlessly looping street view rendered as YUV420.

Everything comes from the spec's seed, and everything that changes over time is periodic in the
loop (period loop/k), so a loop can be encoded once and streamed forever without a visible seam.

A camera pose (dx, dy, angle_deg) moves the image content by (dx, dy) px and rotates it by
angle_deg about the frame centre, clockwise on screen (image y points down), relative to the
reference view that regions are defined in.

This module is the public face; the parts live in `scene_spec` (what a scene is), `schedule`
(the default scene and its anomalies) and the `render` package (pixels).
"""

from __future__ import annotations

from fleet.sim.render import SceneRenderer
from fleet.sim.scene_spec import (
    ANOMALY_KINDS,
    AnomalyKind,
    AnomalySpec,
    CameraPose,
    Region,
    SceneError,
    SceneSpec,
)
from fleet.sim.schedule import DEFAULT_REGIONS, default_scene

__all__ = [
    "ANOMALY_KINDS",
    "DEFAULT_REGIONS",
    "AnomalyKind",
    "AnomalySpec",
    "CameraPose",
    "Region",
    "SceneError",
    "SceneRenderer",
    "SceneSpec",
    "default_scene",
]
