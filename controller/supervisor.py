"""Keeps the fleet converging: plans which agent runs which camera and publishes each agent's
desired state when it changes. Runs every second and at once when something is poked (a status,
a report, an API change), so failover follows the grace period and nothing else waits."""

from __future__ import annotations

import logging
import threading
from typing import Protocol
from urllib.parse import urlsplit

from controller.assignment import AgentView, CameraPlacement, plan
from controller.registry import Registry
from controller.registry.health import STALE_AFTER_INTERVALS, effective_state
from controller.registry.records import AgentRecord, CameraRecord
from fleet.messages import DesiredState
from fleet.topics import TopicKind
from fleet.utc import now_us

log = logging.getLogger("camfleet.controller.supervisor")


class DesiredPublisher(Protocol):
    """What the supervisor needs from the MQTT link."""

    def publish(self, agent_id: str, kind: TopicKind, msg: DesiredState | None) -> None: ...

    @property
    def up_since_us(self) -> int | None:
        """When the link last connected; None while it is down."""
        ...


def agent_view(agent: AgentRecord, now: int, link_up_us: int = 0) -> AgentView:
    """`link_up_us`: since when the controller has heard the broker. Nobody is judged gone for
    longer than that: after a broker or controller restart every agent gets a full grace
    period to reconnect before its cameras move."""
    health = effective_state(agent, now)
    since: int | None = None
    if health == "offline":
        since = agent.status_us or agent.enrolled_us
    elif health == "stale":
        hb = agent.heartbeat
        if hb is not None and agent.heartbeat_us is not None:
            since = agent.heartbeat_us + int(STALE_AFTER_INTERVALS * hb.interval_s * 1e6)
        else:
            since = agent.status_us or agent.enrolled_us
    if since is not None:
        since = max(since, link_up_us)
    reported = agent.reported
    status = agent.status
    capacity = agent.heartbeat.capacity.max_cameras if agent.heartbeat else agent.max_cameras
    return AgentView(
        agent_id=agent.agent_id,
        health=health,
        unhealthy_since_us=since,
        max_cameras=capacity,
        subnets=list(status.subnets) if status and status.subnets else agent.subnets,
        reported_cameras=frozenset(c.name for c in reported.cameras) if reported else frozenset(),
        # Nothing sent yet: nothing to be running. Sent but not answered: it may be running it.
        report_current=(
            agent.desired_version == 0
            if reported is None
            else reported.desired_version == agent.desired_version
        ),
    )


def placement(camera: CameraRecord) -> CameraPlacement:
    host = urlsplit(camera.main_url).hostname or ""
    return CameraPlacement(camera.name, camera.placement, camera.target, camera.owner, host)


class FleetSupervisor:
    def __init__(
        self,
        registry: Registry,
        link: DesiredPublisher,
        grace_s: float,
        tick_s: float = 1.0,
    ) -> None:
        self.registry = registry
        self.link = link
        self.grace_s = grace_s
        self.tick_s = tick_s
        self._published: dict[str, int] = {}  # agent id -> desired version sent
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-supervisor", daemon=True)

    def poke(self, agent_id: str | None = None) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(10)

    def resend(self) -> None:
        """Publish every desired state again on the next tick (e.g. after a reconnect)."""
        self._published.clear()
        self._wake.set()

    def tick(self, now: int | None = None) -> None:
        now = now_us() if now is None else now
        up_since = self.link.up_since_us
        if up_since is None:
            return  # deaf to the fleet: absences seen now say nothing about the agents
        agents = self.registry.agents()
        views = [agent_view(a, now, up_since) for a in agents]
        cameras = [placement(c) for c in self.registry.cameras()]
        for change in plan(cameras, views, now, self.grace_s):
            log.info("camera %s: target %s, owner %s (%s)", change.camera, change.target,
                     change.owner, change.reason)  # fmt: skip
            self.registry.update_camera(change.camera, target=change.target, owner=change.owner)
        for agent in agents:
            if agent.revoked:
                self._clear(agent.agent_id)
                continue
            state = self.registry.desired_state(agent.agent_id)
            if self._published.get(agent.agent_id) != state.version:
                leased = state.model_copy(update={"lease_s": self.grace_s})
                self.link.publish(agent.agent_id, TopicKind.DESIRED_STATE, leased)
                self._published[agent.agent_id] = state.version

    def _clear(self, agent_id: str) -> None:
        # A revoked agent's retained desired state holds camera credentials: remove it.
        if self._published.get(agent_id) != -1:
            self.link.publish(agent_id, TopicKind.DESIRED_STATE, None)
            self._published[agent_id] = -1

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.tick_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.tick()
            except Exception:
                log.exception("fleet supervision pass failed; retrying")
