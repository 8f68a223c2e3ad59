"""Model distribution through the whole fleet, real processes (simulator, controller with its
embedded broker, an enrolled agent): a model uploaded and assigned on the controller reaches the
agent through its desired state, is fetched, verified and scores the camera; a model whose
stored bytes were altered is refused, said so in the agent's stats and reported state, and the
camera keeps streaming without it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import free_port, start_sim, wait_for
from fleet_processes import Controller, FleetAgent, Process, camera_row
from tiny_model import ROIS, tiny_artifact

SIM_ARGS = ("--main-size", "320x180", "--loop-seconds", "4", "--profile", "hikvision")


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for proc in reversed(started):
        proc.stop()


@pytest.mark.slow
def test_an_assigned_model_reaches_the_agent_verified_and_a_tampered_one_does_not(
    tmp_path: Path, processes: list[Process]
) -> None:
    sim = start_sim(str(tmp_path), *SIM_ARGS, cameras=1)
    try:
        ctl = Controller(tmp_path / "controller", "--mqtt-port", str(free_port()))
        processes.append(ctl)
        agent = FleetAgent(ctl, "edge-01", tmp_path / "edge-01")
        processes.append(agent)

        def fleet_stats() -> dict[str, Any]:
            stats: dict[str, Any] = httpx.get(f"{agent.http}/stats", timeout=5).json()
            return stats

        def model_state(sha: str) -> dict[str, Any] | None:
            models: dict[str, dict[str, Any]] = fleet_stats()["fleet"]["models"]
            return models.get(sha)

        with ctl.client() as client:
            client.add_camera({
                "name": "cam1", "profile": "hikvision",
                "main_url": f"rtsp://viewer:s3cret@127.0.0.1:{sim.port}/Streaming/Channels/101",
                "rois": [r.model_dump(mode="json") for r in ROIS],
            })  # fmt: skip
            wait_for(lambda: camera_row(client, "cam1")["state"] == "streaming", timeout=45,
                     what="cam1 streaming on edge-01")  # fmt: skip

            good = client.upload_model(tiny_artifact("cam1"))["sha256"]
            client.update_camera("cam1", {"model": good})
            state = wait_for(lambda: (s := model_state(good)) and s["state"] != "fetching" and s,
                             timeout=30, what="the agent to fetch the model")  # fmt: skip
            assert state["state"] == "ready", state
            kept = tmp_path / "edge-01" / "models" / f"{good}.camfleet-model"
            assert kept.read_bytes() == tiny_artifact("cam1")
            detection = wait_for(
                lambda: fleet_stats()["detection"]["cameras"].get("cam1", {}).get("model"),
                timeout=20, what="the runtime to score cam1 with the model",
            )  # fmt: skip
            assert detection

            # Altered on the controller's disk after it was signed: the agent refuses it.
            bad = client.upload_model(tiny_artifact("cam1", seed=8))["sha256"]
            stored = tmp_path / "controller" / "models" / f"{bad}.camfleet-model"
            content = bytearray(stored.read_bytes())
            content[-5000] ^= 0xFF
            stored.write_bytes(bytes(content))
            client.update_camera("cam1", {"model": bad})
            state = wait_for(lambda: (s := model_state(bad)) and s["state"] != "fetching" and s,
                             timeout=30, what="the agent to try the altered model")  # fmt: skip
            assert state["state"] == "failed" and f"not {bad}" in state["error"], state
            assert not (tmp_path / "edge-01" / "models" / f"{bad}.camfleet-model").exists()

            def reported_error() -> str | None:
                reported = client._call("GET", "/agents/edge-01")["reported"]
                return str(reported["error"]) if reported and reported["error"] else None

            error = wait_for(reported_error, timeout=20, what="the refusal reported")
            assert error.startswith("cam1: model ") and f"not {bad}" in error
            assert "model" not in fleet_stats()["detection"]["cameras"].get("cam1", {})
            assert camera_row(client, "cam1")["state"] == "streaming"  # recorded all along
        ctl.alive()
        agent.alive()
    finally:
        sim.stop()
