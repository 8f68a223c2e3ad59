"""Fleet supervision over a real registry: desired states go out when they change, a dead
agent's cameras move after the grace period (and only once the old owner is gone), and a
revoked agent's retained desired state is cleared."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_registry import T0, S, camera, enroll, heartbeat, status

from controller.registry import Registry
from controller.supervisor import FleetSupervisor
from fleet.messages import CameraReport, DesiredState, ReportedState
from fleet.topics import TopicKind

GRACE_S = 30


class Sent:
    """The link, as far as the supervisor sees it: up since T0 unless told otherwise."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, DesiredState | None]] = []
        self.up_since_us: int | None = T0

    def publish(self, agent_id: str, kind: TopicKind, msg: DesiredState | None) -> None:
        assert kind is TopicKind.DESIRED_STATE
        self.messages.append((agent_id, msg))

    def cameras_of(self, agent_id: str) -> list[str] | None:
        """Cameras in the last desired state sent to the agent (None: cleared)."""
        last = [m for a, m in self.messages if a == agent_id][-1]
        return None if last is None else [c.name for c in last.cameras]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[Registry, FleetSupervisor, Sent]]:
    with Registry.open(tmp_path) as reg:
        sent = Sent()
        yield reg, FleetSupervisor(reg, sent, GRACE_S), sent


def alive(reg: Registry, agent_id: str, now: int, session: int = 1) -> None:
    reg.apply_status(agent_id, status(agent_id, "online", session), now)
    reg.apply_heartbeat(agent_id, heartbeat(interval_s=5), now)


def report(reg: Registry, agent_id: str, cameras: list[str], now: int) -> None:
    version = reg.desired_state(agent_id).version
    reg.apply_reported(
        agent_id,
        ReportedState(
            ts=now, desired_version=version,
            cameras=[CameraReport(name=c, state="streaming", inspection=True) for c in cameras],
        ),
        now,
    )  # fmt: skip


def test_failover_waits_for_grace_then_moves_and_does_not_flap_back(fleet: tuple) -> None:
    reg, sup, sent = fleet
    for name in ("edge-a", "edge-b"):
        enroll(reg, name)
        alive(reg, name, T0)
    reg.add_camera(camera("cam1", "rtsp://10.0.0.5/s", placement="edge-a"))
    reg.add_camera(camera("cam2", "rtsp://10.0.0.6/s"))  # auto
    sup.tick(T0)
    auto_owner = reg.camera("cam2").owner  # type: ignore[union-attr]
    assert auto_owner in ("edge-a", "edge-b")
    assert "cam1" in (sent.cameras_of("edge-a") or [])
    holders = [a for a in ("edge-a", "edge-b") if "cam2" in (sent.cameras_of(a) or [])]
    assert holders == [auto_owner]
    report(reg, "edge-a", sent.cameras_of("edge-a") or [], T0)
    report(reg, "edge-b", sent.cameras_of("edge-b") or [], T0)
    n = len(sent.messages)
    sup.tick(T0 + S)
    assert len(sent.messages) == n  # nothing changed: nothing republished

    # The auto camera's agent dies (its will arrives); the other stays alive.
    other = "edge-b" if auto_owner == "edge-a" else "edge-a"
    reg.apply_status(auto_owner, status(auto_owner, "offline", 1), T0 + 2 * S)
    for t in range(3, GRACE_S, 5):
        alive(reg, other, T0 + t * S)
        report(reg, other, sent.cameras_of(other) or [], T0 + t * S)
        sup.tick(T0 + t * S)
        assert reg.camera("cam2").owner == auto_owner  # type: ignore[union-attr]
        assert "cam2" not in (sent.cameras_of(other) or [])
    late = T0 + (GRACE_S + 3) * S
    alive(reg, other, late)
    sup.tick(late)
    moved = reg.camera("cam2")
    assert moved is not None and (moved.target, moved.owner) == (other, other)
    assert "cam2" in (sent.cameras_of(other) or [])

    # The dead agent returns: the camera stays where it went.
    back = late + 5 * S
    alive(reg, auto_owner, back, session=2)
    alive(reg, other, back)
    sup.tick(back)
    assert reg.camera("cam2").owner == other  # type: ignore[union-attr]


def test_revoked_agent_desired_state_is_cleared_once(fleet: tuple) -> None:
    reg, sup, sent = fleet
    enroll(reg, "edge-a")
    alive(reg, "edge-a", T0)
    reg.add_camera(camera("cam1", "rtsp://u:p@10.0.0.5/s", placement="edge-a"))
    sup.tick(T0)
    assert sent.cameras_of("edge-a") == ["cam1"]
    reg.revoke("edge-a")
    sup.tick(T0 + S)
    sup.tick(T0 + 2 * S)
    assert sent.messages[-1] == ("edge-a", None)
    assert [m for a, m in sent.messages if m is None] == [None]


def test_no_failover_while_deaf_or_before_agents_had_a_grace_to_return(fleet: tuple) -> None:
    reg, sup, sent = fleet
    enroll(reg, "edge-a")
    enroll(reg, "edge-b")
    alive(reg, "edge-a", T0)
    alive(reg, "edge-b", T0)
    reg.add_camera(camera("cam1", "rtsp://10.0.0.5/s", placement="auto"))
    sup.tick(T0)
    first = reg.camera("cam1").owner  # type: ignore[union-attr]
    other = "edge-b" if first == "edge-a" else "edge-a"
    report(reg, first, ["cam1"], T0)
    # The broker goes away for longer than the grace period: nothing is decided meanwhile.
    sent.up_since_us = None
    sup.tick(T0 + 5 * GRACE_S * S)
    # Back: the other agent says hello at once, the first one has not yet. It gets a grace.
    back = T0 + 6 * GRACE_S * S
    sent.up_since_us = back
    alive(reg, other, back + S, session=2)
    sup.tick(back + S)
    assert reg.camera("cam1").owner == first  # type: ignore[union-attr]
    alive(reg, other, back + (GRACE_S + 1) * S, session=2)
    sup.tick(back + (GRACE_S + 1) * S)
    assert reg.camera("cam1").owner == other  # type: ignore[union-attr]


def test_resend_publishes_every_state_again(fleet: tuple) -> None:
    reg, sup, sent = fleet
    enroll(reg, "edge-a")
    sup.tick(T0)
    n = len(sent.messages)
    sup.resend()
    sup.tick(T0 + S)
    assert len(sent.messages) == n + 1
