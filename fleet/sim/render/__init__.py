"""Rendering synthetic scenes to YUV420 frames; see `SceneRenderer`."""

from __future__ import annotations

from fleet.sim.render.renderer import SceneRenderer

__all__ = ["SceneRenderer"]
