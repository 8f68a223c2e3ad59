"""Who may connect to the broker, and as what: the registry is the source, both brokers use it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

Role = Literal["agent", "controller"]
CONTROLLER_USERNAME = "camfleet-controller"


@dataclass(frozen=True)
class BrokerIdentity:
    username: str  # for agents: the agent id, which keys its topic subtree
    password_hash: str = field(repr=False)  # `$7$` format, see controller.broker.passwd
    role: Role


class IdentitySource(Protocol):
    def identity(self, username: str) -> BrokerIdentity | None:
        """The identity, or None if unknown or revoked (the broker then refuses it)."""
        ...

    def identities(self) -> list[BrokerIdentity]:
        """Every identity that may connect now (for writing Mosquitto's files)."""
        ...
