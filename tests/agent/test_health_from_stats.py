"""The runtime's stats, looked at once per heartbeat, become camera-health events."""

from __future__ import annotations

from typing import Any

from agent.health.from_stats import StatsHealthWatch

S = 1_000_000


def stats(state: str, packets: int, reconnects: int = 0) -> dict[str, Any]:
    reason = None if state == "streaming" else "connection refused"
    stream = {"state": state, "reason": reason, "packets": packets, "reconnects": reconnects,
              "stamper": {"reanchors": 0}}  # fmt: skip
    return {"streams": {"gate/main": stream}}


def kinds(events: Any) -> list[str]:
    return [e.kind for e in events]


def test_offline_then_online_from_stats() -> None:
    watch = StatsHealthWatch(lambda camera: "hikvision")
    t, packets, seen = 0, 0, []
    for _ in range(6):  # streaming at 25 fps
        seen += kinds(watch(stats("streaming", packets), t))
        t, packets = t + 5 * S, packets + 125
    for _ in range(4):  # gone for 20 s
        seen += kinds(watch(stats("backoff", packets, reconnects=1), t))
        t += 5 * S
    for _ in range(2):
        seen += kinds(watch(stats("streaming", packets, reconnects=2), t))
        t, packets = t + 5 * S, packets + 125
    assert seen == ["camera_offline", "camera_online"]


def test_slow_stream_is_degraded_once_and_an_unknown_profile_is_not_judged() -> None:
    slow = StatsHealthWatch(lambda camera: "hikvision")  # 25 fps main stream
    unknown = StatsHealthWatch(lambda camera: None)
    t, packets, seen, seen_unknown = 0, 0, [], []
    for _ in range(12):  # 2 fps for a minute
        seen += kinds(slow(stats("streaming", packets), t))
        seen_unknown += kinds(unknown(stats("streaming", packets), t))
        t, packets = t + 5 * S, packets + 10
    assert seen == ["camera_degraded"]
    assert seen_unknown == []


def test_a_removed_camera_is_forgotten() -> None:
    watch = StatsHealthWatch(lambda camera: "hikvision")
    watch(stats("backoff", 0), 0)
    assert kinds(watch(stats("backoff", 0), 15 * S)) == ["camera_offline"]
    watch({"streams": {}}, 20 * S)  # removed while offline: its episode ends with it
    assert kinds(watch(stats("streaming", 0), 21 * S)) == []
