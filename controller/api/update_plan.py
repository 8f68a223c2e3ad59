"""What the update feed (GET /api/v1/updates) sends and when, without any I/O: the frames, the
fleet view with its alarms, when it counts as changed, and each connection's timetable."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final

from controller.api.models import FleetHealth
from controller.api.sse import comment, frame
from controller.events.records import EventRecord

KEEP_ALIVE: Final = comment("keep-alive")


@dataclass(frozen=True, slots=True)
class Cadence:
    """How often things happen, in seconds."""

    tick_s: float = 0.5  # each connection looks for news this often
    snapshot_s: float = 1.0  # the fleet view shared by all connections is at most this old
    fleet_resend_s: float = 15.0  # the fleet view goes out again, changed or not, this often
    keep_alive_s: float = 15.0
    detection_s: float = 1.0  # the camera's detection state, for a feed with ?camera=


# -- frames -------------------------------------------------------------------------------------


def fleet_view(health: FleetHealth, alarms: Collection[str]) -> dict[str, Any]:
    """FleetHealth with, on each camera, `alarm` (an open event of an alarm kind) and
    `agent_name` (its owner's name)."""
    names = {a.agent_id: a.name for a in health.agents}
    view = health.model_dump(mode="json")
    for camera in view["cameras"]:
        camera["alarm"] = camera["name"] in alarms
        camera["agent_name"] = names.get(camera["owner"]) if camera["owner"] else None
    return view


def fleet_signature(view: dict[str, Any]) -> str:
    """The view without what moves by itself (the clock, heartbeat times): two views with the
    same signature show the same fleet."""
    steady = {key: value for key, value in view.items() if key != "now_us"}
    steady["agents"] = [
        {k: v for k, v in agent.items() if k not in ("last_heartbeat_us", "last_heartbeat")}
        for agent in view["agents"]
    ]
    return json.dumps(steady, sort_keys=True)


def fleet_frame(view: dict[str, Any]) -> bytes:
    return frame("fleet", json.dumps(view, separators=(",", ":")))


def event_frame(seq: int, record: EventRecord) -> bytes:
    """An event as GET /events/{id} shows it; its change number is the frame's id."""
    return frame("event", record.model_dump_json(), event_id=str(seq))


def detection_frame(camera: str, status: int, body: bytes) -> bytes:
    """The agent's answer to GET /cameras/{camera}/detection as a frame: the state it sent, or
    `{"camera", "error"}` saying what went wrong."""
    try:
        state = json.loads(body)
    except ValueError:
        state = None
    if status == 200 and isinstance(state, dict):
        return frame("detection", json.dumps(state, separators=(",", ":")))
    detail = state.get("detail") if isinstance(state, dict) else None
    said = detail if isinstance(detail, str) else body[:200].decode(errors="replace")
    return detection_error(camera, f"the agent answered {status}: {said}")


def detection_error(camera: str, error: str) -> bytes:
    return frame("detection", json.dumps({"camera": camera, "error": error}))


# -- when ---------------------------------------------------------------------------------------


def resume_after(last_event_id: str | None, last_seq: int) -> int:
    """Where a connection's event frames start: after the change the browser saw last (its
    Last-Event-ID, sent when it reconnects), so nothing is missed in between; otherwise (or if
    that id is not one of ours) after the latest change."""
    try:
        seen = int(last_event_id) if last_event_id is not None else last_seq
    except ValueError:
        return last_seq
    return seen if 0 <= seen <= last_seq else last_seq


class Timetable:
    """When one connection sends its periodic frames; times in seconds on a monotonic clock.
    Each method says whether that frame is due at `now` and, if it is, counts it as sent."""

    def __init__(self, cadence: Cadence, now: float) -> None:
        self._cadence = cadence
        self._fleet_version: int | None = None
        self._fleet_at = now
        self._keep_alive_at = now
        self._detection_at: float | None = None

    def fleet(self, version: int, now: float) -> bool:
        """At connect, when the view changed, and unchanged every `fleet_resend_s`."""
        unchanged = version == self._fleet_version
        if unchanged and now - self._fleet_at < self._cadence.fleet_resend_s:
            return False
        self._fleet_version, self._fleet_at = version, now
        return True

    def keep_alive(self, now: float) -> bool:
        if now - self._keep_alive_at < self._cadence.keep_alive_s:
            return False
        self._keep_alive_at = now
        return True

    def detection(self, now: float) -> bool:
        """At connect and every `detection_s` after."""
        if self._detection_at is not None and now - self._detection_at < self._cadence.detection_s:
            return False
        self._detection_at = now
        return True
