"""Desired state in, reported state out: the plain translation between the protocol's messages
and the runtime's cameras and stats (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from fleet.config import CameraConfig
from fleet.messages import (
    CameraReport,
    ConnectionState,
    DesiredState,
    ReportedState,
    RoiAdjustment,
)

MAX_TEXT: Final = 2000  # the protocol's free-text limit
_STATES: Final[dict[str, ConnectionState]] = {
    "connecting": "connecting",
    "streaming": "streaming",
    "backoff": "backoff",
}


def cameras_from_desired(
    desired: DesiredState, models: Mapping[str, Path] | None = None
) -> list[CameraConfig]:
    """The cameras the runtime should run. `models` holds the verified model files by sha256:
    a camera whose model is not among them (not fetched yet, or refused) is recorded and
    audited but not scored."""
    models = models or {}
    return [
        CameraConfig(
            name=c.name,
            url=c.main_url,
            sub_url=c.sub_url,
            profile=c.profile,
            detect_fps=c.detect_fps,
            inspect=c.inspection,
            rois=c.rois,
            model=models.get(c.model.sha256) if c.model else None,
        )
        for c in desired.cameras
    ]


def model_errors(desired: DesiredState, failed: Mapping[str, str]) -> dict[str, str]:
    """Why a camera runs without the model it should use, by camera, from why each model
    (by sha256) failed."""
    return {
        c.name: failed[c.model.sha256]
        for c in desired.cameras
        if c.model and c.model.sha256 in failed
    }


def reported_state(
    desired_version: int | None,
    cameras: Sequence[CameraConfig],
    streams: Mapping[str, Mapping[str, Any]],
    errors: Mapping[str, str],
    now_us: int,
) -> ReportedState:
    """What runs, per wanted camera: its main stream's state, whether it is inspected, and the
    adjustment its ROIs are moved by.

    `streams` is the runtime's stats by "camera/stream" (the "drift" entry of a stream holds
    what `AgentRuntime.adjustment` returns); `errors` says why a camera could not be started (it
    shows as backing off, with that reason) or runs without its model.
    """
    reports = []
    for cam in cameras:
        main = streams.get(f"{cam.name}/main")
        if main is None:
            why = errors.get(cam.name, "not started")
            reports.append(CameraReport(name=cam.name, state="backoff", reason=short_text(why),
                                        inspection=False))  # fmt: skip
        else:
            reports.append(
                CameraReport(
                    name=cam.name,
                    state=connection_state(main["state"]),
                    reason=short_text(main["reason"]) or None,
                    inspection=bool(main["inspection"]),
                    adjustment=adjustment(streams, cam.name),
                )
            )
    failed = short_text("; ".join(f"{name}: {why}" for name, why in sorted(errors.items())))
    return ReportedState(
        ts=now_us, desired_version=desired_version, cameras=reports, error=failed or None
    )


def adjustment(streams: Mapping[str, Mapping[str, Any]], camera: str) -> RoiAdjustment | None:
    """The camera's tracked adjustment from the runtime's stats, rounded to what matters for
    placing ROIs, so that sub-pixel jitter does not make every report a new one."""
    for kind in ("sub", "main"):
        drift = streams.get(f"{camera}/{kind}", {}).get("drift")
        if drift and drift.get("adjustment"):
            adj = drift["adjustment"]
            return RoiAdjustment(
                dx=round(adj["dx"], 1),
                dy=round(adj["dy"], 1),
                angle_deg=round(adj["angle_deg"], 2),
                scale=round(adj["scale"], 3),
            )
    return None


def same_report(a: ReportedState | None, b: ReportedState) -> bool:
    """Whether two reports say the same, whenever they were made."""
    return a is not None and a.model_copy(update={"ts": b.ts}) == b


def connection_state(state: str) -> ConnectionState:
    """Ingest's state in the protocol's terms ("stopped" means not started yet)."""
    return _STATES.get(state, "connecting")


def short_text(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."
