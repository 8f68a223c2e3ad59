"""Registration against the real simulator: frames pulled over RTSP, truth from GET /truth/pose.

Which simulator frame is a decoded frame? Frame `n` of a camera is sent at `epoch + n / fps`
and `/truth/pose?at=` gives the pose of the frame nearest a time. The RTP timestamps (PyAV's PTS
for a single RTSP stream) advance by exactly one frame interval per frame, so a frame's send
time is its PTS plus one offset: the lowest observed `arrival - PTS` (the least-delayed packet),
minus however many frame intervals the demuxer holds packets back. PyAV does not expose the
RTCP sender reports that would give the offset exactly, and FFmpeg's H.264 parser returns an
access unit only once the next one starts, so the hold is measured here by content: the
simulator's renderer, run in-process with the same scene, must reproduce each sampled frame best
at the index the mapping gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import numpy.typing as npt
from conftest import start_sim
from test_registration import ROIS

from agent.detection.luma import luma_plane
from agent.detection.registration import Registrar
from agent.detection.roi_geometry import compose, invert, place_polygon
from fleet.messages import RoiAdjustment
from fleet.sim.scene import SceneRenderer, default_scene
from fleet.utc import now_us

W, H, FPS, GOP, LOOP_S, SEED = 640, 360, 15.0, 30, 4.0, 4
SIM_ARGS = ("--main-size", f"{W}x{H}", "--loop-seconds", str(LOOP_S), "--seed", str(SEED),
            "--profile", "generic-onvif")  # fmt: skip
FRAME_US = 1e6 / FPS


@dataclass(frozen=True)
class Pulled:
    pts_us: int
    arrival_us: int  # when its packet came out of the demuxer (not when it was decoded)
    luma: npt.NDArray[np.uint8]


def _pull(url: str, count: int) -> list[Pulled]:
    arrivals: dict[int, int] = {}
    out: list[Pulled] = []
    options = {"rtsp_transport": "tcp", "timeout": "5000000", "analyzeduration": "200000"}
    with av.open(url, options=options) as c:
        stream = c.streams.video[0]
        to_us = float(stream.time_base or 0) * 1e6
        assert to_us > 0
        for packet in c.demux(stream):
            arrived = now_us()
            if packet.pts is not None:
                arrivals.setdefault(packet.pts, arrived)
            for frame in packet.decode():
                if frame.pts in arrivals:
                    pts_us = round(frame.pts * to_us)
                    out.append(Pulled(pts_us, arrivals[frame.pts], luma_plane(frame).copy()))
            if len(out) >= count:
                return out
    raise AssertionError(f"stream ended after {len(out)} frames")


def _truth(http: httpx.Client, at_us: float) -> dict[str, Any]:
    pose = http.get(f"/truth/pose?camera=cam1&at={round(at_us)}").raise_for_status().json()
    assert isinstance(pose, dict)
    return pose


def _adjustment(pose: dict[str, Any]) -> RoiAdjustment:
    return RoiAdjustment(dx=pose["dx"], dy=pose["dy"], angle_deg=pose["angle_deg"], scale=1.0)


def _demuxer_hold(http: httpx.Client, frames: list[Pulled], offset: int) -> int:
    """Frame intervals between a frame's send time and its packet leaving the demuxer."""
    renderer = SceneRenderer(default_scene(SEED * 1000, W, H, FPS, GOP, LOOP_S))  # cam1's scene
    holds = (0, 1, 2)
    mismatch = np.zeros((len(holds), len(frames[::7])))
    for h, hold in enumerate(holds):
        for k, f in enumerate(frames[::7]):
            index = _truth(http, offset + f.pts_us - hold * FRAME_US)["loop_index"]
            rendered = renderer.render(index)[0].astype(np.float64)
            mismatch[h, k] = np.mean((rendered - f.luma) ** 2)
    best = np.argmin(mismatch, axis=0)
    assert (best == best[0]).all(), f"content does not identify frames: {mismatch}"
    return holds[int(best[0])]


def test_registration_matches_the_simulators_truth_over_rtsp(tmp_path: Path) -> None:
    spec = default_scene(SEED * 1000, W, H, FPS, GOP, LOOP_S)
    assert spec.shifts, "the scene should include a sudden shift of the camera"
    sim = start_sim(str(tmp_path), *SIM_ARGS, cameras=1)
    try:
        camera = sim.get("/cameras")[0]  # type: ignore[index]
        main = camera["streams"]["main"]
        assert (main["width"], main["height"], main["fps"]) == (W, H, FPS)
        # A whole loop and a little more: both the sudden shift and the loop's restart are in.
        frames = _pull(main["url"], count=spec.frame_count + 3)
        offset = min(f.arrival_us - f.pts_us for f in frames)
        with httpx.Client(base_url=sim.http, timeout=5) as http:
            hold = _demuxer_hold(http, frames, offset)
            poses = [_truth(http, offset + f.pts_us - hold * FRAME_US) for f in frames]
    finally:
        sim.stop()
    for f, pose in zip(frames, poses, strict=True):  # consecutive in PTS and in the simulator
        elapsed = round((f.pts_us - frames[0].pts_us) / FRAME_US)
        assert pose["frame"] - poses[0]["frame"] == elapsed, (f, pose)

    registrar = Registrar(frames[0].luma)
    reference = invert(_adjustment(poses[0]))
    errors: list[float] = []
    for f, pose in zip(frames[1:], poses[1:], strict=True):
        reg = registrar.register(f.luma)
        assert reg.confidence > 0.5, (pose, reg)
        truth = compose(reference, _adjustment(pose))
        for roi in ROIS:
            gap = place_polygon(roi, reg.adjustment, W, H) - place_polygon(roi, truth, W, H)
            errors += np.hypot(gap[:, 0], gap[:, 1]).tolist()
    median, p99 = float(np.median(errors)), float(np.percentile(errors, 99))
    print(f"\nsimulator over RTSP ({len(frames)} frames with a sudden shift and a loop restart; "
          f"demuxer hold {hold} frame): ROI placement error median {median:.3f} px, "
          f"p99 {p99:.3f} px, max {max(errors):.3f} px")  # fmt: skip
    assert median <= 1.0 and p99 <= 2.0
