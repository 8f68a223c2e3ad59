"""The agents at one instant: who is alive, who is dead, who may still hold a camera."""

from __future__ import annotations

from collections.abc import Iterable

from controller.assignment.model import AgentView, AssignmentError


class FleetView:
    def __init__(self, agents: Iterable[AgentView], now_us: int, grace_s: float) -> None:
        if grace_s < 0:
            raise AssignmentError(f"grace must be >= 0 s, got {grace_s}")
        self.agents: dict[str, AgentView] = {}
        for agent in agents:
            if agent.agent_id in self.agents:
                raise AssignmentError(f"agent {agent.agent_id!r} is listed twice")
            self.agents[agent.agent_id] = agent
        self.now_us = now_us
        self.grace_us = grace_s * 1e6

    def get(self, agent_id: str) -> AgentView | None:
        return self.agents.get(agent_id)

    def members(self) -> list[AgentView]:
        """Agents still in the fleet (not revoked), by id."""
        return sorted(
            (a for a in self.agents.values() if a.health != "revoked"), key=lambda a: a.agent_id
        )

    def unhealthy_s(self, agent: AgentView) -> float:
        if agent.health == "online" or agent.unhealthy_since_us is None:
            return 0.0
        return max(0, self.now_us - agent.unhealthy_since_us) / 1e6

    def is_dead(self, agent_id: str) -> bool:
        """Revoked, unknown, or not online for at least the grace period.

        An agent cut off from the controller for that long has stopped its cameras by itself, so
        they may go elsewhere. Shorter absences are waited out: it may still be running them.
        """
        agent = self.agents.get(agent_id)
        if agent is None or agent.health == "revoked":
            return True
        return agent.health != "online" and self.unhealthy_s(agent) * 1e6 >= self.grace_us

    def may_hold(self, agent_id: str, camera: str) -> bool:
        """Whether an agent that was allowed to hold `camera` may still be holding it.

        Only the report of an online agent that has caught up with its desired state counts;
        any other may have started the camera after its last report.
        """
        if self.is_dead(agent_id):
            return False
        agent = self.agents[agent_id]
        current = agent.health == "online" and agent.report_current
        return not current or camera in agent.reported_cameras

    def stray_holder(self, camera: str, except_agent: str | None) -> str | None:
        """A live agent, other than `except_agent`, whose last report says it runs `camera`."""
        for agent in self.members():
            if (
                agent.agent_id != except_agent
                and camera in agent.reported_cameras
                and not self.is_dead(agent.agent_id)
            ):
                return agent.agent_id
        return None

    def describe_absence(self, agent_id: str) -> str:
        agent = self.agents.get(agent_id)
        if agent is None:
            return f"{agent_id} is unknown"
        if agent.health == "revoked":
            return f"{agent_id} is revoked"
        return f"{agent_id} {agent.health} for {self.unhealthy_s(agent):.0f} s"
