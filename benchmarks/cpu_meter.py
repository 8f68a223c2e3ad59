"""CPU used by named groups of processes over a window, and by everything else on the machine
(other work sharing it), from /proc."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

from benchmarks.machine import cpu_seconds

OTHERS = "others"


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle since boot (all CPUs)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    busy = sum(fields[:8]) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


def _group_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):  # exited: it used nothing more
            total += cpu_seconds(pid)
    return total


@dataclass
class CpuReading:
    at: float
    groups: dict[str, float]
    machine: float


class CpuMeter:
    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups

    def read(self) -> CpuReading:
        return CpuReading(
            time.monotonic(),
            {name: _group_seconds(pids) for name, pids in self.groups.items()},
            machine_busy_seconds(),
        )

    @staticmethod
    def cores(start: CpuReading, end: CpuReading) -> dict[str, float]:
        """Average cores busy per group between two readings, plus OTHERS: the rest of the
        machine's busy time."""
        wall = end.at - start.at or 1e-9
        cores = {name: (end.groups[name] - start.groups[name]) / wall for name in start.groups}
        cores[OTHERS] = max(0.0, (end.machine - start.machine) / wall - sum(cores.values()))
        return cores
