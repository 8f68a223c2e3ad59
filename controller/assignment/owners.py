"""Who may hold a camera's connection now. Never two agents: a camera moving from A to B stays
A's until A has released it (its report no longer lists it while it is online) or A is dead;
only then is it B's. A camera some other live agent still reports stays nobody's until that
agent lets go."""

from __future__ import annotations

from dataclasses import dataclass

from controller.assignment.fleet_view import FleetView
from controller.assignment.model import CameraPlacement


@dataclass(frozen=True, slots=True)
class OwnerDecision:
    owner: str | None
    why: str  # "" when nothing happened


def decide_owner(cam: CameraPlacement, target: str | None, fleet: FleetView) -> OwnerDecision:
    owner, previous = cam.owner, ""
    if owner is not None and owner != target:
        if fleet.may_hold(owner, cam.name):
            return OwnerDecision(owner, f"waiting for {owner} to release it")
        dead = fleet.is_dead(owner)
        previous = fleet.describe_absence(owner) if dead else f"{owner} released it"
        owner = None
    if owner is None and target is not None:
        stray = fleet.stray_holder(cam.name, except_agent=target)
        if stray is not None:
            return OwnerDecision(None, _join(previous, f"waiting for {stray} to release it"))
        return OwnerDecision(target, _join(previous, f"{target} owns it"))
    return OwnerDecision(owner, previous)


def _join(*parts: str) -> str:
    return ", ".join(p for p in parts if p)
