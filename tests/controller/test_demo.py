"""`camfleet demo` as a new user runs it: everything comes up, a model per camera is trained in
the background, uploaded and assigned with its ROIs, the simulator's anomalies arrive as events;
Ctrl-C stops it cleanly, and a second run reuses the trained model instead of training again."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from conftest import SIM_CACHE, free_port, wait_for
from fleet_processes import PASSWORD, Process

from controller.client import ControllerClient

SCORED = "cam1"


class Demo(Process):
    def __init__(self, data: Path, port: int, log: Path) -> None:
        # Small cameras so the machine is not busy encoding and decoding 1080p.
        super().__init__("demo", log, "demo", "--data", str(data), "--port", str(port),
                         "--cameras", "1", "--main-size", "640x360",
                         "--sim-cache", SIM_CACHE)  # fmt: skip
        self.url = f"http://127.0.0.1:{port}"

    def client(self) -> ControllerClient:
        return wait_for(lambda: self.alive() and ControllerClient(self.url, PASSWORD),
                        timeout=120, interval=0.5, what="the demo's controller")  # fmt: skip

    def camera(self, api: ControllerClient) -> dict[str, Any]:
        self.alive()
        (camera,) = [c for c in api.cameras() if c["name"] == SCORED]
        return camera

    def with_model(self, api: ControllerClient) -> dict[str, Any] | None:
        camera = self.camera(api)
        return camera if camera["model"] else None

    def interrupt(self) -> None:
        """Ctrl-C; the demo stops its processes and exits 0."""
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.wait(90) == 0, self.log.read_text()[-3000:]


@pytest.mark.slow
def test_the_demo_trains_a_model_shows_anomalies_and_keeps_the_model(tmp_path: Path) -> None:
    data, port = tmp_path / "data", free_port()
    demo = Demo(data, port, tmp_path / "demo-1.log")
    try:
        with demo.client() as api:
            camera = wait_for(lambda: demo.with_model(api), timeout=120, interval=0.5,
                              what=f"a model on {SCORED}")  # fmt: skip
            assert [r["id"] for r in camera["rois"]] == ["left", "right"]  # the model's ROIs
            (model,) = [m for m in api.models() if m["sha256"] == camera["model"]]
            assert model["camera"] == SCORED

            def anomalies() -> list[dict[str, Any]]:
                demo.alive()
                page = api.events(camera=SCORED, kind="anomaly")
                return [e for e in page["items"] if e["model_version"] == model["model_version"]]

            # The loop is 30 s with its anomalies in its last two thirds: one shows within two.
            (event, *_) = wait_for(anomalies, timeout=90, interval=1, what="an anomaly event")
            assert event["roi_id"] in ("left", "right") and event["peak_score"] > 0
        demo.interrupt()
    finally:
        demo.stop()
    first = demo.log.read_text()
    assert f"training a model for {SCORED}" in first and f"models ready ({SCORED})" in first

    again = Demo(data, port, tmp_path / "demo-2.log")
    try:
        wait_for(lambda: again.alive() and "models ready" in again.log.read_text(),
                 timeout=120, interval=0.5, what="the second run's models")  # fmt: skip
        with again.client() as api:
            assert again.camera(api)["model"] == model["sha256"]
            assert [m["sha256"] for m in api.models()] == [model["sha256"]]
        again.interrupt()
    finally:
        again.stop()
    assert "training a model" not in again.log.read_text()
