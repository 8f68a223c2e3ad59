"""Prometheus text exposition of the fleet, computed at scrape time like /fleet/health."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, get_args

from controller.api.models import FleetHealth
from controller.registry import EnrollmentCounts
from fleet.messages import ConnectionState

CONNECTION_STATES = (*get_args(ConnectionState), "unknown")
Samples = list[tuple[str, float]]  # (label text, value)


def _family(name: str, kind: str, help_: str, samples: Samples) -> list[str]:
    return [
        f"# HELP camfleet_{name} {help_}",
        f"# TYPE camfleet_{name} {kind}",
        *(f"camfleet_{name}{labels} {float(value)}" for labels, value in samples),
    ]


def render_metrics(health: FleetHealth, enrollments: EnrollmentCounts) -> str:
    # Label values all come from fixed sets, so none needs escaping.
    camera_states = Counter(c.state for c in health.cameras)
    lines = [
        *_family("agents", "gauge", "agents by state (online, stale, offline, revoked)",
                 [(f'{{state="{s}"}}', n) for s, n in health.agent_states.items()]),
        *_family("cameras", "gauge", "cameras by the connection state their owner reports",
                 [(f'{{state="{s}"}}', camera_states[s]) for s in CONNECTION_STATES]),
        *_family("cameras_unassigned", "gauge", "cameras no agent owns now",
                 [("", sum(c.owner is None for c in health.cameras))]),
        *_family("enrollments_total", "counter", "enrollment tokens used by an agent",
                 [("", enrollments.enrolled)]),
        *_family("enrollment_tokens", "gauge", "unused enrollment tokens",
                 [('{state="pending"}', enrollments.pending),
                  ('{state="expired"}', enrollments.expired)]),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def render_event_metrics(
    counts: Mapping[str, Any], handled: Mapping[str, int], refused: Mapping[str, int]
) -> str:
    """The event center and the MQTT link: what was stored, and what agents sent that was not
    (by reason, so a misbehaving agent shows up on a dashboard)."""
    lines = [
        *_family("events_total", "counter", "events stored, by kind",
                 [(f'{{kind="{k}"}}', n) for k, n in sorted(counts["by_kind"].items())]),
        *_family("events_unacknowledged", "gauge", "events nobody has acknowledged",
                 [("", counts["unacknowledged"])]),
        *_family("events_duplicate_total", "counter", "repeats of stored event ids ignored",
                 [("", counts["duplicates"])]),
        *_family("mqtt_messages_total", "counter", "messages from agents applied, by topic kind",
                 [(f'{{kind="{k}"}}', n) for k, n in sorted(handled.items())]),
        *_family("mqtt_refused_total", "counter", "messages from agents refused, by reason",
                 [(f'{{reason="{_label(r)}"}}', n) for r, n in sorted(refused.items())]),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
