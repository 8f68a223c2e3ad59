"""Desired state in, reported state out: the plain translation between the protocol's messages
and the runtime's cameras and stats (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from fleet.config import CameraConfig
from fleet.messages import CameraReport, ConnectionState, DesiredState, ReportedState

MAX_TEXT: Final = 2000  # the protocol's free-text limit
_STATES: Final[dict[str, ConnectionState]] = {
    "connecting": "connecting",
    "streaming": "streaming",
    "backoff": "backoff",
}


def cameras_from_desired(desired: DesiredState) -> list[CameraConfig]:
    """The cameras the runtime should run (ROIs wait for the detector)."""
    return [
        CameraConfig(
            name=c.name,
            url=c.main_url,
            sub_url=c.sub_url,
            profile=c.profile,
            detect_fps=c.detect_fps,
            inspect=c.inspection,
        )
        for c in desired.cameras
    ]


def reported_state(
    desired_version: int | None,
    cameras: Sequence[CameraConfig],
    streams: Mapping[str, Mapping[str, Any]],
    errors: Mapping[str, str],
    now_us: int,
) -> ReportedState:
    """What runs, per wanted camera: its main stream's state and whether it is inspected.

    `streams` is the runtime's stats by "camera/stream"; `errors` says why a camera could not
    be started (it shows as backing off, with that reason).
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
                )
            )
    failed = short_text("; ".join(f"{name}: {why}" for name, why in sorted(errors.items())))
    return ReportedState(
        ts=now_us, desired_version=desired_version, cameras=reports, error=failed or None
    )


def same_report(a: ReportedState | None, b: ReportedState) -> bool:
    """Whether two reports say the same, whenever they were made."""
    return a is not None and a.model_copy(update={"ts": b.ts}) == b


def connection_state(state: str) -> ConnectionState:
    """Ingest's state in the protocol's terms ("stopped" means not started yet)."""
    return _STATES.get(state, "connecting")


def short_text(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."
