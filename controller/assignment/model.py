"""What assignment decides over: cameras with their placement, agents as the registry sees them."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

AgentHealth = Literal["online", "stale", "offline", "revoked"]
AGENT_HEALTHS: Final[frozenset[str]] = frozenset(get_args(AgentHealth))
AUTO: Final = "auto"  # placement: the controller chooses the agent

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AssignmentError(ValueError):
    """Input assignment cannot plan with; the text says which camera or agent is at fault."""


@dataclass(frozen=True, slots=True)
class CameraPlacement:
    name: str
    placement: str  # AUTO or the id of the agent it is pinned to
    target: str | None  # the agent that should run it
    owner: str | None  # the agent allowed to hold its connection now
    host: str  # the host of the camera's URL


@dataclass(frozen=True, slots=True)
class AgentView:
    agent_id: str
    health: AgentHealth
    unhealthy_since_us: int | None  # when it stopped being online; required unless online
    max_cameras: int
    subnets: list[str]
    reported_cameras: frozenset[str]  # what it last reported running
    # Whether that report answers the latest desired state sent to the agent (its
    # desired_version is the latest). If not, the agent may have started cameras since, so an
    # owner is not taken to have released anything until it reports again.
    report_current: bool = True
    networks: tuple[IpNetwork, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        who = f"agent {self.agent_id!r}"
        if self.health not in AGENT_HEALTHS:
            raise AssignmentError(f"{who}: health must be one of {sorted(AGENT_HEALTHS)}")
        if self.health in ("stale", "offline") and self.unhealthy_since_us is None:
            raise AssignmentError(f"{who}: {self.health} needs unhealthy_since_us")
        if self.max_cameras < 0:
            raise AssignmentError(f"{who}: max_cameras must be >= 0, got {self.max_cameras}")
        try:
            networks = tuple(ipaddress.ip_network(s, strict=False) for s in self.subnets)
        except ValueError as exc:
            raise AssignmentError(f"{who}: bad subnet: {exc}") from None
        object.__setattr__(self, "networks", networks)

    def covers(self, host: str) -> bool:
        """Whether one of its subnets contains `host` (a host name is in no subnet)."""
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        return any(address in network for network in self.networks)


@dataclass(frozen=True, slots=True)
class Change:
    """New target and owner of a camera whose assignment changes, and why."""

    camera: str
    target: str | None
    owner: str | None
    reason: str
