"""Registry records as the API shows them: URLs redacted, agent state computed for `now_us`."""

from __future__ import annotations

from collections import Counter

from controller.api.models import (
    AgentHealth,
    AgentView,
    CameraHealth,
    CameraView,
    DiscoveredCamera,
    FleetHealth,
)
from controller.api.redact import redact_url
from controller.registry import AGENT_STATES, AgentRecord, CameraRecord, effective_state
from fleet.messages import CameraReport, FoundCamera
from fleet.utc import iso_us


def _redacted(url: str | None) -> str | None:
    return None if url is None else redact_url(url)


def camera_view(rec: CameraRecord) -> CameraView:
    fields = rec.model_dump()
    fields.update(main_url=redact_url(rec.main_url), sub_url=_redacted(rec.sub_url))
    return CameraView.model_validate(fields)


def agent_view(agent: AgentRecord, cameras: list[CameraRecord], now_us: int) -> AgentView:
    return AgentView(
        agent_id=agent.agent_id,
        name=agent.name,
        hostname=agent.hostname,
        software_version=agent.software_version,
        enrolled_us=agent.enrolled_us,
        revoked=agent.revoked,
        state=effective_state(agent, now_us),
        subnets=agent.subnets,
        max_cameras=agent.max_cameras,
        cameras=[c.name for c in cameras if c.owner == agent.agent_id],
        status=agent.status,
        status_us=agent.status_us,
        heartbeat=agent.heartbeat,
        heartbeat_us=agent.heartbeat_us,
        reported=agent.reported,
        desired_version=agent.desired_version,
    )


def fleet_health(
    agents: list[AgentRecord], cameras: list[CameraRecord], now_us: int
) -> FleetHealth:
    """The fleet as of `now_us`: computed from what was last heard, never a cached verdict."""
    states = {a.agent_id: effective_state(a, now_us) for a in agents}
    owned = Counter(c.owner for c in cameras if c.owner)
    # A camera's connection is only known through an owner that is online now.
    reports: dict[tuple[str, str], CameraReport] = {
        (a.agent_id, r.name): r
        for a in agents
        if a.reported and states[a.agent_id] == "online"
        for r in a.reported.cameras
    }
    agent_rows = [
        AgentHealth(
            agent_id=a.agent_id,
            name=a.name,
            hostname=a.hostname,
            state=states[a.agent_id],
            session=a.status.session if a.status else None,
            last_heartbeat_us=a.heartbeat_us,
            last_heartbeat=iso_us(a.heartbeat_us) if a.heartbeat_us is not None else None,
            heartbeat_interval_s=a.heartbeat.interval_s if a.heartbeat else None,
            cameras=owned[a.agent_id],
            desired_version=a.desired_version,
            applied_version=a.reported.desired_version if a.reported else None,
            error=a.reported.error if a.reported else None,
        )
        for a in agents
    ]
    camera_rows = []
    for c in cameras:
        report = reports.get((c.owner, c.name)) if c.owner else None
        camera_rows.append(
            CameraHealth(
                name=c.name,
                owner=c.owner,
                target=c.target,
                state=report.state if report else "unknown",
                reason=report.reason if report else None,
                inspection=c.inspection,
                site=c.site,
            )
        )
    counts = Counter(states.values())
    return FleetHealth(
        now_us=now_us,
        agent_states={state: counts[state] for state in AGENT_STATES},
        agents=agent_rows,
        cameras=camera_rows,
    )


def discovered_view(
    agent_id: str, found: FoundCamera, seen_us: int, registered_as: str | None
) -> DiscoveredCamera:
    return DiscoveredCamera(
        agent_id=agent_id,
        seen_us=seen_us,
        endpoint=found.endpoint,
        address=found.address,
        xaddrs=found.xaddrs,
        scopes=found.scopes,
        manufacturer=found.manufacturer,
        model=found.model,
        suggested_profile=found.suggested_profile,
        main_url=_redacted(found.main_url),
        sub_url=_redacted(found.sub_url),
        camera=registered_as,
    )
