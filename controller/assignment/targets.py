"""Where each camera should run: pinned cameras go where pinned, automatic ones stay put while
their agent lives (or is away for less than the grace period) and otherwise go to the least
loaded online agent that can reach them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from controller.assignment.fleet_view import FleetView
from controller.assignment.model import AUTO, AgentView, CameraPlacement


@dataclass(frozen=True, slots=True)
class TargetDecision:
    target: str | None
    why: str


def decide_targets(
    cameras: Sequence[CameraPlacement], fleet: FleetView
) -> dict[str, TargetDecision]:
    """A target for every camera. Cameras that stay put are counted before any is placed, so
    placing never crowds out a camera that already runs; placement goes in name order."""
    decisions: dict[str, TargetDecision] = {}
    load: Counter[str] = Counter()
    to_place: list[CameraPlacement] = []
    for cam in sorted(cameras, key=lambda c: c.name):
        decision = _fixed_target(cam, fleet)
        if decision is None:
            to_place.append(cam)
            continue
        decisions[cam.name] = decision
        if decision.target is not None:
            load[decision.target] += 1
    for cam in to_place:
        decision = _place(cam, fleet, load)
        if cam.target is not None:
            decision = TargetDecision(
                decision.target, f"{fleet.describe_absence(cam.target)}: {decision.why}"
            )
        decisions[cam.name] = decision
        if decision.target is not None:
            load[decision.target] += 1
    return decisions


def _fixed_target(cam: CameraPlacement, fleet: FleetView) -> TargetDecision | None:
    """The target of a pinned camera or of one that stays put; None if it must be placed."""
    if cam.placement != AUTO:
        pinned = fleet.get(cam.placement)
        if pinned is None or pinned.health == "revoked":
            return TargetDecision(None, f"pinned to {fleet.describe_absence(cam.placement)}")
        return TargetDecision(cam.placement, f"pinned to {cam.placement}")
    # No flapping: the current agent keeps the camera through short absences, and a camera
    # that failed over stays where it went when the old agent returns.
    if cam.target is not None and not fleet.is_dead(cam.target):
        return TargetDecision(cam.target, "kept")
    return None


def _place(cam: CameraPlacement, fleet: FleetView, load: Counter[str]) -> TargetDecision:
    members = fleet.members()
    # An agent declaring a subnet says where it reaches; other agents may not reach it at all.
    covering = [a for a in members if a.covers(cam.host)]
    if covering:
        pool, where = covering, "its subnet covers the host"
    else:
        pool, where = [a for a in members if not a.subnets], "fallback: no subnet covers the host"
    candidates = [a for a in pool if a.health == "online" and load[a.agent_id] < a.max_cameras]
    if not candidates:
        return TargetDecision(None, f"no online agent with room for host {cam.host} ({where})")
    best = min(candidates, key=lambda a: (_share(a, load), a.agent_id))
    return TargetDecision(best.agent_id, f"placed on least loaded {best.agent_id} ({where})")


def _share(agent: AgentView, load: Counter[str]) -> float:
    return load[agent.agent_id] / agent.max_cameras
