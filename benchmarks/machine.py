"""What every benchmark prints about where it ran, and CPU accounting for processes."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass

import av
import numpy


def describe() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, PyAV {av.__version__}, numpy {numpy.__version__}"
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (not its children), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


@dataclass
class CpuWindow:
    """CPU used by a set of processes over a wall-clock window."""

    pids: list[int]
    wall: float = 0.0
    cpu: float = 0.0

    def __enter__(self) -> CpuWindow:
        self._t0 = time.monotonic()
        self._c0 = sum(cpu_seconds(p) for p in self.pids)
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.monotonic() - self._t0
        self.cpu = sum(cpu_seconds(p) for p in self.pids) - self._c0

    @property
    def cores(self) -> float:
        """Average number of cores busy during the window."""
        return self.cpu / self.wall if self.wall else 0.0
