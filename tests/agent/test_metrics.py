"""Prometheus exposition of the agent's stats."""

from __future__ import annotations

from agent.api.metrics import render_metrics

STREAM = {
    "state": "backoff", "packets": 7, "bytes": 900, "reconnects": 2, "stalls": 1, "analysed": 3,
    "stamper": {"reanchors": 4}, "consumers": {"live": {"dropped": 5}},
}  # fmt: skip


def test_values_labels_and_escaping() -> None:
    text = render_metrics(
        {
            "streams": {'ca"m\\1/main': STREAM},
            "disk": {"free": 10, "recordings": 20},
            "clock_synced": True,
        }
    )
    lines = set(text.splitlines())
    labels = 'camera="ca\\"m\\\\1",stream="main"'
    assert f"camfleet_stream_up{{{labels}}} 0.0" in lines
    assert f"camfleet_packets_total{{{labels}}} 7.0" in lines
    assert f"camfleet_reanchors_total{{{labels}}} 4.0" in lines
    assert f'camfleet_consumer_dropped_total{{{labels},consumer="live"}} 5.0' in lines
    assert "camfleet_clock_synced 1.0" in lines
    assert "# TYPE camfleet_packets_total counter" in lines
