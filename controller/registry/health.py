"""An agent's state as of a given moment, computed when asked: never a remembered "online"."""

from __future__ import annotations

from typing import Final, Literal

from controller.registry.records import AgentRecord

AgentState = Literal["online", "stale", "offline", "revoked"]
AGENT_STATES: Final[tuple[AgentState, ...]] = ("online", "stale", "offline", "revoked")
# Heartbeats missed before an agent that says it is online is shown as stale.
STALE_AFTER_INTERVALS: Final = 3


def effective_state(agent: AgentRecord, now_us: int) -> AgentState:
    """ "online" only while the status says so AND heartbeats keep coming; "stale" when the
    status says online but the heartbeats stopped (or never came)."""
    if agent.revoked:
        return "revoked"
    if agent.status is None or agent.status.state == "offline":
        return "offline"
    hb, hb_us = agent.heartbeat, agent.heartbeat_us
    if hb is None or hb_us is None:
        return "stale"
    if now_us - hb_us < STALE_AFTER_INTERVALS * hb.interval_s * 1_000_000:
        return "online"
    return "stale"
