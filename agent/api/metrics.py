"""Prometheus text exposition of the agent's stats (no client library needed for gauges)."""

from __future__ import annotations

from typing import Any


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                     for k, v in labels.items())  # fmt: skip
    return "{" + inner + "}"


def render_metrics(stats: dict[str, Any]) -> str:
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP camfleet_{name} {help_}")
        lines.append(f"# TYPE camfleet_{name} {kind}")
        lines.extend(f"camfleet_{name}{labels} {value}" for labels, value in samples)

    streams = stats["streams"]

    def per_stream(key: str) -> list[tuple[str, float]]:
        out = []
        for sid, s in streams.items():
            cam, stream = sid.split("/", 1)
            out.append((_labels(camera=cam, stream=stream), float(s[key])))
        return out

    metric("stream_up", "gauge", "1 while the stream is streaming",
           [(lbl, 1.0 if streams[sid]["state"] == "streaming" else 0.0)
            for (lbl, _), sid in zip(per_stream("packets"), streams, strict=True)])  # fmt: skip
    metric("packets_total", "counter", "packets received and stamped", per_stream("packets"))
    metric("bytes_total", "counter", "bytes received", per_stream("bytes"))
    metric("reconnects_total", "counter", "connection attempts after the first",
           per_stream("reconnects"))  # fmt: skip
    metric("stalls_total", "counter", "silent stalls detected", per_stream("stalls"))
    metric("frames_analysed_total", "counter", "frames the detection consumer analysed",
           per_stream("analysed"))  # fmt: skip
    reanchors = [
        (
            _labels(camera=sid.split("/")[0], stream=sid.split("/")[1]),
            float(s["stamper"]["reanchors"]),
        )
        for sid, s in streams.items()
    ]
    metric("reanchors_total", "counter", "stamp re-anchors", reanchors)
    drops = [
        (_labels(camera=sid.split("/")[0], stream=sid.split("/")[1], consumer=name),
         float(c["dropped"]))
        for sid, s in streams.items()
        for name, c in s["consumers"].items()
    ]  # fmt: skip
    metric("consumer_dropped_total", "counter", "items a drop-oldest consumer lost", drops)
    disk = stats["disk"]
    metric("disk_free_bytes", "gauge", "free bytes on the data disk", [("", float(disk["free"]))])
    metric("recordings_bytes", "gauge", "bytes of recordings", [("", float(disk["recordings"]))])
    metric("clock_synced", "gauge", "1 when the agent's clock is NTP-synchronised",
           [("", 1.0 if stats["clock_synced"] else 0.0)])  # fmt: skip
    return "\n".join(lines) + "\n"
