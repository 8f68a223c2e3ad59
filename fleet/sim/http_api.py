"""The simulator's HTTP side: what a test needs to see the cameras from the outside."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Query

from fleet.sim.truth import pose_at
from fleet.utc import iso_us, parse_time_us

if TYPE_CHECKING:
    from fleet.sim.server import Simulator


def create_app(sim: Simulator) -> FastAPI:
    app = FastAPI(title="camfleet camera simulator", docs_url=None, redoc_url=None)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "cameras": len(sim.cameras)}

    @app.get("/cameras")
    def cameras() -> list[dict[str, object]]:
        """Per camera: clients now, sessions in total, frames sent, degraded or not."""
        return [c.stats(sim.rtsp_base) for c in sim.cameras]

    @app.get("/truth")
    def truth(camera: str | None = None) -> list[dict[str, object]]:
        """Every anomaly shown so far (and the rest of the current loop pass), in UTC."""
        return [r.to_json() for r in sim.truth if camera is None or r.camera == camera]

    @app.get("/truth/pose")
    def pose(camera: str, at: str = Query(..., description="UTC ISO 8601 or epoch µs")) -> Any:
        """The true camera drift (px at main resolution, degrees) of the frame nearest `at`."""
        cam = next((c for c in sim.cameras if c.name == camera), None)
        if cam is None:
            raise HTTPException(404, f"no camera {camera!r}")
        try:
            at_us = parse_time_us(at)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        n, p = pose_at(cam.renderer, cam.clock, at_us)
        return {
            "camera": camera,
            "frame": n,
            "loop_index": n % cam.clock.frame_count,
            "stamp": iso_us(cam.clock.frame_time_us(n)),
            "dx": p.dx,
            "dy": p.dy,
            "angle_deg": p.angle_deg,
            "width": cam.spec.width,
            "height": cam.spec.height,
        }

    return app
