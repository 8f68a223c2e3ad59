"""The orchestrator's side of the simulated agents: a few `sim_agents` processes, pinned to the
load generator's CPU, sharing the agents between them; steps run on all of them at once."""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Final

from benchmarks.controller_rig import Credentials
from benchmarks.simulator import REPO, pinned

READY_TIMEOUT_S: Final = 90.0
DONE_GRACE_S: Final = 30.0

# Called from the reader threads with (step name, [(event id hex, published_us), ...]).
OnIds = Callable[[str, list[tuple[str, int]]], None]


class FleetError(RuntimeError):
    pass


@dataclass(frozen=True)
class StepSent:
    published: int
    lag_ms: float  # worst lateness of a burst against its schedule (the generator falling behind)


class _Worker:
    def __init__(self, index: int, agents: list[Credentials], spec: dict[str, Any],
                 cpu: int, on_ids: OnIds) -> None:  # fmt: skip
        self.agents = agents
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.sim_agents"],
            # Its own session: Ctrl-C reaches only the orchestrator, which stops it (and the end
            # of its input stops it, should the orchestrator die).
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True,
            **pinned(cpu),
        )  # fmt: skip
        self.messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._on_ids = on_ids
        self._step = ""
        self.send({**spec, "agents": [[a.username, a.password] for a in agents],
                   "seed": spec["seed"] + index})  # fmt: skip
        assert self.proc.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj).encode() + b"\n")
        self.proc.stdin.flush()

    def start_step(self, name: str, rate: float | None, seconds: float, report_ids: bool) -> None:
        self._step = name
        self.send({"cmd": "step", "name": name, "rate": rate, "seconds": seconds,
                   "report_ids": report_ids})  # fmt: skip

    def expect(self, key: str, timeout: float) -> dict[str, Any]:
        try:
            msg = self.messages.get(timeout=timeout)
        except queue.Empty:
            raise FleetError(f"sim agents: no {key!r} within {timeout:.0f} s") from None
        if msg is None:
            raise FleetError(f"sim agents exited ({self.proc.poll()}) before {key!r}")
        if key not in msg:
            raise FleetError(f"sim agents: expected {key!r}, got {sorted(msg)}")
        return msg

    def _read(self, out: IO[bytes]) -> None:
        for line in out:
            msg = json.loads(line)
            if "ids" in msg:
                self._on_ids(self._step, [(i, int(us)) for i, us in msg["ids"]])
            else:
                self.messages.put(msg)
        self.messages.put(None)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.send({"cmd": "stop"})
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class SimFleet:
    def __init__(self, workers: list[_Worker]) -> None:
        self.workers = workers
        self.agents = sum(len(w.agents) for w in workers)

    @property
    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.workers]

    def run_step(self, name: str, rate: float | None, seconds: float, report_ids: bool) -> StepSent:
        """Every agent sends events for `seconds` at an aggregate `rate` (None: a flood);
        returns once all processes finished the step."""
        for w in self.workers:
            share = None if rate is None else rate * len(w.agents) / self.agents
            w.start_step(name, share, seconds, report_ids)
        done = [w.expect("done", seconds + DONE_GRACE_S) for w in self.workers]
        return StepSent(sum(d["published"] for d in done), max(d["lag_ms"] for d in done))


@contextlib.contextmanager
def sim_fleet(
    broker_port: int, agents: list[Credentials], cameras: int, burst: int, processes: int,
    cpu: int, on_ids: OnIds, seed: int = 1,
) -> Iterator[SimFleet]:  # fmt: skip
    """Start the agents in `processes` processes pinned to `cpu`; yields once all are connected
    (status sent, subscribed)."""
    spec = {"port": broker_port, "cameras": cameras, "burst": burst, "seed": seed}
    shares = [agents[i::processes] for i in range(processes)]
    workers: list[_Worker] = []
    try:
        for i, share in enumerate(s for s in shares if s):
            workers.append(_Worker(i, share, spec, cpu, on_ids))
        for w in workers:
            w.expect("ready", READY_TIMEOUT_S)
        yield SimFleet(workers)
    finally:
        for w in workers:
            w.stop()
