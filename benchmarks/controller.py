"""The controller under fleet load: how many events per second it stores, how soon after an agent
publishes one it can be queried through the API, and how fast the API answers meanwhile.
Goal (issue 4): 2,000 events/s stored with p99 publish-to-queryable under 1 s.

A real Mosquitto with the config camfleet generates and a real `camfleet controller run`; 100
simulated agents (paho clients with the credentials and ACL of a real enrollment, not full
agents) x 10 cameras send a heartbeat every 5 s and anomaly events in bursts, at each rate of a
ramp for a while, then as fast as the broker acknowledges them (a flood: the controller's
capacity). Publish-to-queryable is measured per event id by a poller on GET /api/v1/events; API
latency is every GET /api/v1/events and /api/v1/fleet/health call during the load. Beside it,
publish-to-committed is read from events.db (read-only, costing the controller nothing), so
the controller's own delay shows apart from what querying it adds; `--poll-interval 0` turns
the API poller off to see the controller without that load.

The peer, in the same run: the controller stopped, a plain paho subscriber in its place doing
nothing but counting: the broker's raw delivery to one client, the ceiling the controller sits
behind. Same broker, same agents, same steps.

The load generator (agent processes and this one, with the poller) is pinned to the last CPU;
the controller, Mosquitto and the peer may use any. Other people's work may share the machine:
each step waits (up to --quiet-wait s) until it is quiet, and the table shows what it used.

    python -m benchmarks.controller [--agents 100] [--cameras-per-agent 10]
        [--rates 500,1000,2000,3000] [--step-seconds 15] [--flood-seconds 15] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx

from benchmarks.broker_peer import BrokerPeer, broker_peer
from benchmarks.controller_rig import ControllerRig, controller_rig, tail
from benchmarks.cpu_meter import OTHERS, CpuMeter
from benchmarks.machine import describe
from benchmarks.percentiles import fmt_ms, percentile
from benchmarks.sim_fleet import SimFleet, sim_fleet
from benchmarks.visibility import (
    POLL,
    ApiProbe,
    ApiTimer,
    CommitTail,
    Ledger,
    VisibilityPoller,
)
from fleet.utc import now_us

GOAL_RATE: Final = 2000.0
GOAL_P99_MS: Final = 1000.0
# A rate is sustained when nothing is lost and what is still queued when the step ends is
# stored within the latency goal (a controller falling behind leaves a backlog that takes longer).
MAX_DRAIN_S: Final = 1.0
ONLINE_TIMEOUT_S: Final = 60.0
DRAIN_STALL_S: Final = 20.0  # give up draining when nothing more is stored for this long
SEEN_GRACE_S: Final = 3.0  # after everything is stored, time to find it in the db and API
# Other people's work shares this machine: a step starts once it uses less than this (sampled
# over a second), or after --quiet-wait seconds regardless; the table shows what it used.
QUIET_CORES: Final = 0.3


@dataclass(frozen=True)
class StepSpec:
    name: str
    rate: float | None  # None: flood

    @property
    def label(self) -> str:
        return "flood" if self.rate is None else f"{self.rate:.0f}"


@dataclass
class StepResult:
    spec: StepSpec
    seconds: float
    published: int
    lag_ms: float
    stored_in_window: int
    lost: int
    drain_s: float
    cores: dict[str, float]
    # The headline: publish to listed by the API (to committed when the API poller is off),
    # or to delivered for the peer. Then publish to committed in events.db.
    latencies_ms: list[float | None] = field(default_factory=list)
    committed_ms: list[float | None] = field(default_factory=list)
    api_ms: list[float] = field(default_factory=list)
    health_ms: list[float] = field(default_factory=list)
    api_errors: int = 0
    poll_rows: int = 0  # events the poller read (its footprint on the controller)
    waited_quiet_s: float = 0.0

    @property
    def published_rate(self) -> float:
        return self.published / self.seconds

    @property
    def stored_rate(self) -> float:
        return self.stored_in_window / self.seconds

    @property
    def sustained(self) -> bool:
        return self.lost == 0 and self.drain_s <= MAX_DRAIN_S

    @property
    def passes(self) -> bool:
        """Sustained with p99 within the goal (a ramp step, not the flood)."""
        p99 = self.p(99)
        return (
            self.spec.rate is not None and self.sustained and p99 is not None
            and p99 < GOAL_P99_MS
        )  # fmt: skip

    def p(self, q: float) -> float | None:
        return percentile(self.latencies_ms, q)


# -- measuring one step -------------------------------------------------------------------------


@dataclass
class Phase:
    """What one phase (controller or peer) needs to run a step: how to count what arrived."""

    fleet: SimFleet
    meter: CpuMeter
    seconds: float
    flood_seconds: float
    stored: Callable[[], int]  # events the consumer has (stored, or delivered), cumulative
    quiet_wait_s: float
    expected: int = 0  # events published so far in this phase

    def step_seconds(self, spec: StepSpec) -> float:
        return self.flood_seconds if spec.rate is None else self.seconds

    def drain(self, extra: Callable[[], bool] = lambda: True) -> tuple[float, int]:
        """Wait until everything published is in; (seconds waited, events missing)."""
        t0 = time.monotonic()
        last, last_change = self.stored(), t0
        while last < self.expected:
            time.sleep(0.1)
            now = time.monotonic()
            count = self.stored()
            if count != last:
                last, last_change = count, now
            elif now - last_change > DRAIN_STALL_S:
                break
        waited = time.monotonic() - t0
        deadline = time.monotonic() + SEEN_GRACE_S
        while not extra() and time.monotonic() < deadline:
            time.sleep(0.1)
        return waited, max(0, self.expected - last)


def wait_for_quiet(meter: CpuMeter, limit_s: float) -> float:
    """Wait until other work on the machine is (nearly) idle, up to `limit_s`; the seconds
    waited beyond the first sample."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        r0 = meter.read()
        time.sleep(1.0)
        if CpuMeter.cores(r0, meter.read())[OTHERS] < QUIET_CORES:
            break
    return max(0.0, time.monotonic() - t0 - 1.0)


def run_load(phase: Phase, spec: StepSpec, track: bool) -> tuple[StepResult, int, int]:
    """The step's load window: what was published and stored in it, and the CPU it took."""
    waited = wait_for_quiet(phase.meter, phase.quiet_wait_s)
    seconds = phase.step_seconds(spec)
    c0, r0, t0 = phase.stored(), phase.meter.read(), now_us()
    sent = phase.fleet.run_step(spec.name, spec.rate, seconds, report_ids=track)
    c1, r1, t1 = phase.stored(), phase.meter.read(), now_us()
    phase.expected += sent.published
    result = StepResult(
        spec, (t1 - t0) / 1e6, sent.published, sent.lag_ms, c1 - c0, 0, 0.0,
        CpuMeter.cores(r0, r1), waited_quiet_s=waited,
    )  # fmt: skip
    return result, t0, t1


def controller_step(
    phase: Phase, spec: StepSpec, ledger: Ledger, timer: ApiTimer, poller: VisibilityPoller | None
) -> StepResult:
    track = spec.rate is not None
    # In a flood only throughput counts: a poller re-reading a growing backlog would be the load.
    polling = track and poller is not None
    if poller is not None:
        (poller.paused.clear if polling else poller.paused.set)()
    result, t0, t1 = run_load(phase, spec, track)
    result.drain_s, result.lost = phase.drain(
        lambda: (not polling or ledger.unseen() == 0) and (not track or ledger.uncommitted() == 0)
    )
    if track:
        result.committed_ms = ledger.latencies_ms(spec.name, committed=True)
        result.latencies_ms = ledger.latencies_ms(spec.name) if polling else result.committed_ms
    calls = timer.between(t0, t1)
    result.api_ms = [c.ms for c in calls]
    result.health_ms = [c.ms for c in calls if c.what == "health"]
    result.api_errors = sum(not c.outcome.ok for c in calls)
    result.poll_rows = sum(c.outcome.rows for c in calls if c.what == POLL)
    return result


def peer_step(phase: Phase, spec: StepSpec, peer: BrokerPeer) -> StepResult:
    result, t0, t1 = run_load(phase, spec, track=False)
    result.drain_s, _ = phase.drain()
    taken = peer.take(t0, t1)
    result.stored_in_window = int(taken["in_window"])
    result.latencies_ms = [float(v) for v in taken["latency_ms"]]
    result.lost = max(0, result.published - int(taken["distinct"]))
    return result


# -- the run ------------------------------------------------------------------------------------


def db_counter(path: Path) -> Callable[[], int]:
    """Events stored, read from the controller's database read-only (WAL: no lock on it)."""

    def count() -> int:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
            (n,) = db.execute("SELECT count(*) FROM events").fetchone()
            return int(n)

    return count


def wait_online(api: httpx.Client, agents: int) -> None:
    deadline = time.monotonic() + ONLINE_TIMEOUT_S
    while True:
        states = api.get("/api/v1/fleet/health").json()["agent_states"]
        if states.get("online", 0) >= agents:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"agents not all online after {ONLINE_TIMEOUT_S:.0f} s: {states}")
        time.sleep(0.5)


def load_cpu() -> int:
    return (os.cpu_count() or 1) - 1


def run(args: argparse.Namespace) -> None:
    steps = [StepSpec(f"r{rate:g}", rate) for rate in args.rates]
    if args.flood_seconds > 0:
        steps.append(StepSpec("flood", None))
    print(f"machine: {describe()}")
    print(f"load average before the run: {os.getloadavg()[0]:.2f} (other work shares this machine)")
    cpu = load_cpu()
    print(
        f"fleet: {args.agents} simulated agents x {args.cameras_per_agent} cameras in "
        f"{args.processes} processes, heartbeat every 5 s, events in bursts of {args.burst}; "
        f"load generator pinned to CPU {cpu}, controller and Mosquitto on any CPU"
    )
    work = Path(tempfile.mkdtemp(prefix="camfleet-bench-controller-"))
    ledger, timer = Ledger(), ApiTimer()
    try:
        with controller_rig(work) as rig:
            t = time.monotonic()
            agents = rig.enroll(args.agents, args.cameras_per_agent)
            print(f"enrolled {len(agents)} agents through the API in {time.monotonic() - t:.1f} s")
            if hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(0, {cpu})
            with sim_fleet(rig.broker_port, agents, args.cameras_per_agent, args.burst,
                           args.processes, cpu, ledger.add) as fleet:  # fmt: skip
                ours = controller_phase(rig, fleet, steps, args, ledger, timer)
                rig.stop_controller()
                theirs = peer_phase(rig, fleet, steps, args)
    except BaseException:
        print(f"controller log (tail), {work / 'controller.log'}:\n{tail(work / 'controller.log')}")
        raise
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report(ours, theirs, args)


def controller_phase(
    rig: ControllerRig, fleet: SimFleet, steps: list[StepSpec], args: argparse.Namespace,
    ledger: Ledger, timer: ApiTimer,
) -> list[StepResult]:  # fmt: skip
    assert rig.controller is not None
    meter = CpuMeter({
        "controller": [rig.controller.pid], "mosquitto": [rig.mosquitto.pid],
        "load": [*fleet.pids, os.getpid()],
    })  # fmt: skip
    phase = Phase(
        fleet,
        meter,
        args.step_seconds,
        args.flood_seconds,
        db_counter(rig.events_db),
        args.quiet_wait,
    )
    with closing(rig.login()) as api_poll, closing(rig.login()) as api_probe:
        wait_online(api_probe, fleet.agents)
        poller = (
            VisibilityPoller(api_poll, timer, ledger, args.poll_interval)
            if args.poll_interval > 0 else None
        )  # fmt: skip
        loops: list[ApiProbe | VisibilityPoller] = [ApiProbe(api_probe, timer)]
        loops += [poller] if poller else []
        threads: list[CommitTail | ApiProbe | VisibilityPoller] = [
            CommitTail(rig.events_db, ledger), *loops,
        ]  # fmt: skip
        for thread in threads:
            thread.start()
        try:
            results = []
            for spec in steps:
                results.append(controller_step(phase, spec, ledger, timer, poller))
                print(f"  controller {spec.label:>6}: " + _brief(results[-1]), flush=True)
        finally:
            for thread in threads:
                thread.stop()
    for loop in loops:
        if loop.errors:
            print(f"{loop.name}: {len(loop.errors)} errors, first: {loop.errors[0]}")
    return results


def peer_phase(
    rig: ControllerRig, fleet: SimFleet, steps: list[StepSpec], args: argparse.Namespace
) -> list[StepResult]:
    login = rig.controller_login
    with broker_peer(rig.broker_port, login.username, login.password) as peer:
        meter = CpuMeter({
            "peer": [peer.proc.pid], "mosquitto": [rig.mosquitto.pid],
            "load": [*fleet.pids, os.getpid()],
        })  # fmt: skip
        phase = Phase(
            fleet, meter, args.step_seconds, args.flood_seconds, peer.received, args.quiet_wait
        )
        results = []
        for spec in steps:
            # The peer reports each step's arrivals once: count this step's events only.
            phase.expected = 0
            results.append(peer_step(phase, spec, peer))
            print(f"  broker peer {spec.label:>5}: " + _brief(results[-1]), flush=True)
    return results


# -- reporting ----------------------------------------------------------------------------------


def _brief(r: StepResult) -> str:
    waited = r.waited_quiet_s
    return (
        f"published {r.published_rate:.0f}/s, stored {r.stored_rate:.0f}/s, "
        f"p99 {fmt_ms(r.p(99))} ms, lost {r.lost}, drained in {r.drain_s:.1f} s"
        + (f", {r.api_errors} API errors" if r.api_errors else "")
        + (f" (waited {waited:.0f} s for other work to stop)" if waited >= 1 else "")
    )


def _table(title: str, results: list[StepResult], consumer: str) -> None:
    print(f"\n{title}")
    print(
        f"{'step':>6} {'sent/s':>7} {'stored/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'db p50':>6} "
        f"{'db p99':>6} {'unseen':>6} "
        f"{'lost':>5} {'drain s':>7} {'api p50':>7} {'api p99':>7} {'hlth p99':>8} "
        f"{'poll/s':>6} | {consumer[:5]:>5} {'us/ev':>5} {'mosq':>5} {'load':>5} {'other':>5} "
        f"{'lag ms':>6}"
    )
    for r in results:
        unseen = sum(v is None for v in r.latencies_ms)
        cores = r.cores.get(consumer, 0.0)
        per_event = cores * 1e6 / r.stored_rate if r.stored_rate else 0.0
        print(
            f"{r.spec.label:>6} {r.published_rate:7.0f} {r.stored_rate:8.0f} "
            f"{fmt_ms(r.p(50)):>7} {fmt_ms(r.p(99)):>7} "
            f"{fmt_ms(percentile(r.committed_ms, 50)):>6} "
            f"{fmt_ms(percentile(r.committed_ms, 99)):>6} "
            f"{unseen if r.latencies_ms else '-':>6} {r.lost:5d} {r.drain_s:7.1f} "
            f"{fmt_ms(percentile(r.api_ms, 50)):>7} {fmt_ms(percentile(r.api_ms, 99)):>7} "
            f"{fmt_ms(percentile(r.health_ms, 99)):>8} {r.poll_rows / r.seconds:6.0f} | "
            f"{cores:5.2f} {per_event:5.0f} {r.cores['mosquitto']:5.2f} {r.cores['load']:5.2f} "
            f"{r.cores[OTHERS]:5.2f} {r.lag_ms:6.0f}"
        )


def report(ours: list[StepResult], theirs: list[StepResult], args: argparse.Namespace) -> None:
    seen = "committed (API poller off)"
    if args.poll_interval > 0:
        seen = "listed by GET /api/v1/events"
    _table(f"controller (stored = in events.db; p50/p99 = publish to {seen}; db p50/p99 = "
           "publish to committed in events.db)", ours, "controller")  # fmt: skip
    _table("broker peer (stored = delivered to a counting paho subscriber; p50/p99 = publish "
           "to delivery)", theirs, "peer")  # fmt: skip
    poller = (
        f"the poller's pages (sized to what it still needs) every {args.poll_interval:g} s and "
        if args.poll_interval > 0 else "(API poller off) "
    )  # fmt: skip
    print(
        "\nsent/s: published by the agents (bursts are random: off target by chance too)\n"
        "unseen: events never listed/found (count as infinitely late); lost: published, never "
        "stored\n"
        "drain s: until what was still queued when the step ended was stored\n"
        f"api p50/p99: every GET /api/v1/events ({poller}an operator's first page every "
        "second) and GET /api/v1/fleet/health (every second); poll/s: events the poller read "
        "per second, its load on the controller\n"
        "then CPU cores per process group over the step; us/ev: the consumer's CPU "
        "microseconds per stored event; other: the rest of the machine (other people's work)\n"
        "lag ms: how late the load generator ran against its schedule"
    )
    flood_ours = next((r for r in ours if r.spec.rate is None), None)
    flood_theirs = next((r for r in theirs if r.spec.rate is None), None)
    if flood_ours and flood_theirs and flood_theirs.stored_rate:
        ratio = flood_ours.stored_rate / flood_theirs.stored_rate
        print(
            f"flood: controller stored {flood_ours.stored_rate:.0f}/s, broker delivered "
            f"{flood_theirs.stored_rate:.0f}/s to a counting subscriber: "
            f"ratio controller/broker {ratio:.2f}"
        )
    for a, b in zip(ours, theirs, strict=True):
        if a.spec.rate is not None:
            print(
                f"at {a.spec.label}/s: p99 controller {fmt_ms(a.p(99))} ms (queryable) vs "
                f"broker {fmt_ms(b.p(99))} ms (delivered)"
            )
    ramp = sorted((r for r in ours if r.spec.rate is not None), key=lambda r: r.spec.rate or 0)
    goal_step = next((r for r in ramp if (r.spec.rate or 0) >= GOAL_RATE), None)
    if goal_step is not None:
        print(
            f"goal {GOAL_RATE:.0f} events/s with p99 < {GOAL_P99_MS:.0f} ms: "
            f"{'met' if goal_step.passes else 'NOT met'} at the {goal_step.spec.label}/s step "
            f"(stored {goal_step.stored_rate:.0f}/s, p99 {fmt_ms(goal_step.p(99))} ms, "
            f"lost {goal_step.lost}, drained in {goal_step.drain_s:.1f} s)"
        )
    best = max((r for r in ramp if r.passes), key=lambda r: r.spec.rate or 0, default=None)
    if best is None:
        print("events_per_s=0 p50_ms=- p99_ms=- api_p99_ms=- lost=- (no rate sustained)")
        return
    print(
        f"events_per_s={best.stored_rate:.0f} p50_ms={fmt_ms(best.p(50))} "
        f"p99_ms={fmt_ms(best.p(99))} api_p99_ms={fmt_ms(percentile(best.api_ms, 99))} "
        f"lost={best.lost}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--cameras-per-agent", type=int, default=10)
    ap.add_argument("--burst", type=int, default=10, help="events per incident burst [10]")
    ap.add_argument(
        "--rates", type=lambda s: [float(v) for v in s.split(",")],
        default=[500.0, 1000.0, 2000.0, 3000.0], help="events/s, comma-separated",
    )  # fmt: skip
    ap.add_argument("--step-seconds", type=float, default=15.0)
    ap.add_argument("--flood-seconds", type=float, default=15.0, help="0: no flood step")
    ap.add_argument("--processes", type=int, default=2, help="agent processes [2]")
    ap.add_argument("--poll-interval", type=float, default=0.1, help="seconds [0.1]")
    ap.add_argument(
        "--quick", action="store_true",
        help="smoke run: rates 500,2000 and 5 s steps (about 30 s of load)",
    )  # fmt: skip
    ap.add_argument(
        "--quiet-wait", type=float, default=None,
        help="seconds a step may wait for other work on the machine to stop [30; quick: 0]",
    )  # fmt: skip
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    if args.quick:
        args.rates, args.step_seconds, args.flood_seconds = [500.0, 2000.0], 5.0, 5.0
    if args.quiet_wait is None:
        args.quiet_wait = 0.0 if args.quick else 30.0
    # A plain `kill` stops the run as Ctrl-C does: every child process is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        run(args)
    except KeyboardInterrupt:
        sys.exit("interrupted: every process of the run was stopped")


if __name__ == "__main__":
    main()
