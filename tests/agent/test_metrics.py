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


def test_detection_counters_scores_and_queue_depth() -> None:
    roi = {"last_score": 2.5, "threshold": 1.25}
    text = render_metrics(
        {
            "streams": {},
            "disk": {"free": 10, "recordings": 20},
            "clock_synced": False,
            "detection": {
                "pool": {"size": 2, "queue_size": 8, "queue_depth": 3},
                "cameras": {
                    "cam1": {
                        "frames_analysed": 9,
                        "frames_skipped": 2,
                        "model": {"rois": {"door": roi}},
                    }
                },
            },
        }
    )
    lines = set(text.splitlines())
    assert 'camfleet_detect_frames_analysed_total{camera="cam1"} 9.0' in lines
    assert 'camfleet_detect_frames_skipped_total{camera="cam1"} 2.0' in lines
    assert 'camfleet_detect_frames_gated_total{camera="cam1"} 0.0' in lines
    assert 'camfleet_detect_roi_score{camera="cam1",roi="door"} 2.5' in lines
    assert 'camfleet_detect_roi_threshold{camera="cam1",roi="door"} 1.25' in lines
    assert "camfleet_inference_queue_depth 3.0" in lines
