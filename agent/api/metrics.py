"""Prometheus text exposition of the agent's stats (no client library needed for gauges)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Sample = tuple[dict[str, str], float]

# (name, type, help, value of one stream's stats)
_STREAM_METRICS: tuple[tuple[str, str, str, Callable[[dict[str, Any]], float]], ...] = (
    ("stream_up", "gauge", "1 while the stream is streaming",
     lambda s: float(s["state"] == "streaming")),
    ("packets_total", "counter", "packets received and stamped", lambda s: s["packets"]),
    ("bytes_total", "counter", "bytes received", lambda s: s["bytes"]),
    ("reconnects_total", "counter", "connection attempts after the first",
     lambda s: s["reconnects"]),
    ("stalls_total", "counter", "silent stalls detected", lambda s: s["stalls"]),
    ("frames_analysed_total", "counter", "frames the detection consumer analysed",
     lambda s: s["analysed"]),
    ("reanchors_total", "counter", "stamp re-anchors", lambda s: s["stamper"]["reanchors"]),
)  # fmt: skip


def _label_text(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    escaped = (v.replace("\\", "\\\\").replace('"', '\\"') for v in labels.values())
    return "{" + ",".join(f'{k}="{v}"' for k, v in zip(labels, escaped, strict=True)) + "}"


def _stream_labels(stats: dict[str, Any]) -> Iterator[tuple[dict[str, str], dict[str, Any]]]:
    for sid, s in stats["streams"].items():
        camera, stream = sid.split("/", 1)
        yield {"camera": camera, "stream": stream}, s


def render_metrics(stats: dict[str, Any]) -> str:
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[Sample]) -> None:
        lines.append(f"# HELP camfleet_{name} {help_}")
        lines.append(f"# TYPE camfleet_{name} {kind}")
        lines.extend(f"camfleet_{name}{_label_text(lbl)} {float(v)}" for lbl, v in samples)

    streams = list(_stream_labels(stats))
    for name, kind, help_, value in _STREAM_METRICS:
        metric(name, kind, help_, [(lbl, value(s)) for lbl, s in streams])
    metric("consumer_dropped_total", "counter", "items a drop-oldest consumer lost",
           [({**lbl, "consumer": c}, cs["dropped"]) for lbl, s in streams
            for c, cs in s["consumers"].items()])  # fmt: skip
    detecting = stats.get("detection", {}).get("cameras", {})
    for outcome in ("analysed", "gated", "skipped", "over_rate"):
        samples = [({"camera": c}, d.get(f"frames_{outcome}", 0)) for c, d in detecting.items()]
        what = f"frames the detector {outcome.replace('_', ' ')} (per camera)"
        metric(f"detect_frames_{outcome}_total", "counter", what, samples)
    metric("detect_roi_score", "gauge", "latest score of an ROI (its threshold beside it)",
           [({"camera": c, "roi": r}, rs["last_score"]) for c, d in detecting.items()
            for r, rs in d.get("model", {}).get("rois", {}).items()
            if rs["last_score"] is not None])  # fmt: skip
    metric("detect_roi_threshold", "gauge", "an ROI's alarm threshold at its sensitivity",
           [({"camera": c, "roi": r}, rs["threshold"]) for c, d in detecting.items()
            for r, rs in d.get("model", {}).get("rois", {}).items()
            if rs["threshold"] is not None])  # fmt: skip
    pool = stats.get("detection", {}).get("pool")
    if pool is not None:
        metric("inference_queue_depth", "gauge", "jobs waiting for an interpreter",
               [({}, pool["queue_depth"])])  # fmt: skip
    disk = stats["disk"]
    metric("disk_free_bytes", "gauge", "free bytes on the data disk", [({}, disk["free"])])
    metric("recordings_bytes", "gauge", "bytes of recordings", [({}, disk["recordings"])])
    metric("clock_synced", "gauge", "1 when the agent's clock is NTP-synchronised",
           [({}, float(stats["clock_synced"]))])  # fmt: skip
    return "\n".join(lines) + "\n"
