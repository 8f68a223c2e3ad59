"""Camera assignment: placement rules as tables, and a simulated fleet under random events where
no camera is ever held by two agents."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.assignment import (
    AUTO,
    AgentView,
    AssignmentError,
    CameraPlacement,
    Change,
    plan,
    runs,
)
from controller.assignment.model import AgentHealth

S = 1_000_000  # µs per second
NOW = 1_000_000 * S
GRACE_S = 60


def agent(
    agent_id: str,
    health: AgentHealth = "online",
    away_s: float | None = None,
    max_cameras: int = 4,
    subnets: tuple[str, ...] = (),
    reported: tuple[str, ...] = (),
    report_current: bool = True,
) -> AgentView:
    since = None if away_s is None else NOW - int(away_s * S)
    return AgentView(
        agent_id, health, since, max_cameras, list(subnets), frozenset(reported), report_current
    )


def cam(
    name: str,
    placement: str = AUTO,
    target: str | None = None,
    owner: str | None = None,
    host: str = "10.0.1.10",
) -> CameraPlacement:
    return CameraPlacement(name, placement, target, owner, host)


def outcome(
    cameras: list[CameraPlacement], agents: list[AgentView]
) -> dict[str, tuple[str | None, str | None]]:
    """(target, owner) of every camera after one pass."""
    result = {c.name: (c.target, c.owner) for c in cameras}
    for change in plan(cameras, agents, NOW, GRACE_S):
        result[change.camera] = (change.target, change.owner)
    return result


# --- targets --------------------------------------------------------------------------------

SUBNET_A, SUBNET_B = "10.0.1.0/24", "10.0.2.0/24"

TARGET_CASES = {
    "an agent whose subnet covers the host wins over a less loaded one": (
        [cam("c1", host="10.0.2.7")],
        [agent("a", subnets=(SUBNET_A,)), agent("b", subnets=(SUBNET_B,))],
        {"c1": ("b", "b")},
    ),
    "only covering agents qualify, even when they are full": (
        [cam("c1", host="10.0.2.7")],
        [agent("a"), agent("b", subnets=(SUBNET_B,), max_cameras=0)],
        {"c1": (None, None)},
    ),
    "an agent without subnets is the fallback for uncovered hosts": (
        [cam("c1", host="192.168.9.9"), cam("c2", host="cam.example")],
        [agent("a", subnets=(SUBNET_A,)), agent("z")],
        {"c1": ("z", "z"), "c2": ("z", "z")},
    ),
    "an agent with other subnets is no fallback": (
        [cam("c1", host="192.168.9.9")],
        [agent("a", subnets=(SUBNET_A,))],
        {"c1": (None, None)},
    ),
    "IPv6 hosts match IPv6 subnets": (
        [cam("c1", host="[fd00::5]")],
        [agent("a"), agent("b", subnets=("fd00::/64",))],
        {"c1": ("b", "b")},
    ),
    "least loaded share first, ties by agent id": (
        [cam(f"c{i}") for i in range(5)],
        [agent("b", max_cameras=2), agent("a", max_cameras=2), agent("c", max_cameras=4)],
        {
            "c0": ("a", "a"),
            "c1": ("b", "b"),
            "c2": ("c", "c"),
            "c3": ("c", "c"),
            "c4": ("a", "a"),
        },
    ),
    "capacity counts cameras already there, pinned ones too": (
        [cam("p", placement="a"), cam("k", target="a", owner="a"), cam("n")],
        [agent("a", max_cameras=2), agent("b", max_cameras=2)],
        {"p": ("a", "a"), "k": ("a", "a"), "n": ("b", "b")},
    ),
    "nobody has room": (
        [cam("c1"), cam("c2")],
        [agent("a", max_cameras=1)],
        {"c1": ("a", "a"), "c2": (None, None)},
    ),
    "stale, offline and revoked agents get no new cameras": (
        [cam("c1")],
        [agent("a", "stale", 1), agent("b", "offline", 1), agent("c", "revoked")],
        {"c1": (None, None)},
    ),
    "a target away for less than the grace period keeps its camera": (
        [cam("c1", target="a", owner="a"), cam("c2", target="b", owner="b")],
        [agent("a", "offline", GRACE_S - 1), agent("b", "stale", 5), agent("c")],
        {"c1": ("a", "a"), "c2": ("b", "b")},
    ),
    "a target away for the grace period loses it, and so does a revoked one": (
        [cam("c1", target="a", owner="a"), cam("c2", target="r", owner="r")],
        [agent("a", "offline", GRACE_S), agent("r", "revoked"), agent("c")],
        {"c1": ("c", "c"), "c2": ("c", "c")},
    ),
    "a failed-over camera does not go back when the old agent returns": (
        [cam("c1", target="b", owner="b")],
        [agent("a"), agent("b", max_cameras=1)],
        {"c1": ("b", "b")},
    ),
    "a kept camera stays even over capacity": (
        [cam("c1", target="a", owner="a"), cam("c2", target="a", owner="a")],
        [agent("a", max_cameras=1), agent("b")],
        {"c1": ("a", "a"), "c2": ("a", "a")},
    ),
    "pinned goes where pinned, online or not, and ignores subnets": (
        [cam("c1", placement="a", host="10.0.2.1"), cam("c2", placement="b")],
        [
            agent("a", subnets=(SUBNET_A,)),
            agent("b", "offline", 3600),
            agent("x", subnets=(SUBNET_B,)),
        ],
        {"c1": ("a", "a"), "c2": ("b", "b")},
    ),
    "pinned to a revoked or unknown agent has no target": (
        [cam("c1", placement="r"), cam("c2", placement="ghost")],
        [agent("r", "revoked"), agent("a")],
        {"c1": (None, None), "c2": (None, None)},
    ),
}


@pytest.mark.parametrize("case", list(TARGET_CASES))
def test_targets(case: str) -> None:
    cameras, agents, expected = TARGET_CASES[case]
    assert outcome(cameras, agents) == expected


# --- owners ---------------------------------------------------------------------------------

OWNER_CASES = {
    "a re-pinned camera stays the old owner's while it still runs it": (
        cam("c1", placement="b", target="a", owner="a"),
        [agent("a", reported=("c1",)), agent("b")],
        ("b", "a"),
    ),
    "an old owner that is away may still run it": (
        cam("c1", placement="b", target="a", owner="a"),
        [agent("a", "offline", 10), agent("b")],
        ("b", "a"),
    ),
    "released by the old owner: the new target owns it": (
        cam("c1", placement="b", target="b", owner="a"),
        [agent("a"), agent("b")],
        ("b", "b"),
    ),
    "a dead old owner: the new target owns it": (
        cam("c1", placement="b", target="b", owner="a"),
        [agent("a", "stale", GRACE_S, reported=("c1",)), agent("b")],
        ("b", "b"),
    ),
    "a revoked old owner is dead at once": (
        cam("c1", placement="b", target="b", owner="a"),
        [agent("a", "revoked", reported=("c1",)), agent("b")],
        ("b", "b"),
    ),
    "an owner whose report predates its latest desired state may have started it since": (
        cam("c1", placement="b", target="a", owner="a"),
        [agent("a", report_current=False), agent("b")],
        ("b", "a"),
    ),
    "no target: the owner keeps it until released": (
        cam("c1", placement="gone", target="a", owner="a"),
        [agent("a", reported=("c1",))],
        (None, "a"),
    ),
    "no target: nobody owns it once released": (
        cam("c1", placement="gone", target=None, owner="a"),
        [agent("a")],
        (None, None),
    ),
    "another live agent still reporting the camera blocks the new owner": (
        cam("c1", placement="b"),
        [agent("a", "offline", 30, reported=("c1",)), agent("b")],
        ("b", None),
    ),
    "a dead agent's old report blocks nobody": (
        cam("c1", placement="b"),
        [agent("a", "offline", GRACE_S + 1, reported=("c1",)), agent("b")],
        ("b", "b"),
    ),
}


@pytest.mark.parametrize("case", list(OWNER_CASES))
def test_owners(case: str) -> None:
    camera, agents, expected = OWNER_CASES[case]
    assert outcome([camera], agents)["c1"] == expected


_COVERS = "its subnet covers the host"


def test_changes_say_why_and_a_settled_fleet_has_none() -> None:
    cameras = [cam("c1", target="a", owner="a"), cam("c2", target="a", owner="a")]
    agents = [agent("a", "offline", 90, reported=("c1", "c2")), agent("b", subnets=(SUBNET_A,))]
    changes = plan(cameras, agents, NOW, GRACE_S)
    assert changes == [
        Change("c1", "b", "b", f"a offline for 90 s: placed on least loaded b ({_COVERS}); "
               "a offline for 90 s, b owns it"),
        Change("c2", "b", "b", f"a offline for 90 s: placed on least loaded b ({_COVERS}); "
               "a offline for 90 s, b owns it"),
    ]  # fmt: skip
    settled = [
        replace(c, target=ch.target, owner=ch.owner) for c, ch in zip(cameras, changes, strict=True)
    ]
    assert plan(settled, agents, NOW, GRACE_S) == []


def test_runs_only_where_owner_and_target_agree() -> None:
    assert runs(cam("c1", target="a", owner="a")) == "a"
    assert runs(cam("c1", target="b", owner="a")) is None
    assert runs(cam("c1", target="b", owner=None)) is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: agent("a", subnets=("10.0.0.0/33",)), "agent 'a': bad subnet"),
        (lambda: agent("a", max_cameras=-1), "max_cameras must be >= 0"),
        (lambda: agent("a", "offline"), "offline needs unhealthy_since_us"),
        (lambda: agent("a", "sleeping"), "health must be one of"),  # type: ignore[arg-type]
        (lambda: plan([cam("c1"), cam("c1")], [], NOW), "camera 'c1' is listed twice"),
        (lambda: plan([], [agent("a"), agent("a")], NOW), "agent 'a' is listed twice"),
        (lambda: plan([], [], NOW, grace_s=-1), "grace must be >= 0"),
    ],
)
def test_bad_input_is_refused_clearly(make: object, message: str) -> None:
    with pytest.raises(AssignmentError, match=message):
        make()  # type: ignore[operator]


# --- a simulated fleet ------------------------------------------------------------------------
#
# The controller plans and keeps a versioned desired state per agent; agents act. Each step an
# online agent first reports what it runs and which desired version it has applied, then applies
# the latest desired state: it runs exactly what the controller lets it (owner and target both
# itself). So a decision reaches the controller as a report a step later, and a report can
# predate a desired state the agent has already applied. An agent cut off from the controller
# keeps what it runs until it has been away for the grace period, then stops everything
# (self-fencing); a revoked agent stops at once. The controller sees an away agent's last
# report. Agents may start out running cameras the controller knows nothing about (a controller
# that lost its state), and an operator re-pins cameras.

AGENT_IDS = ["a0", "a1", "a2", "a3"]
HOSTS = ["10.0.1.5", "10.0.1.6", "10.0.2.5", "10.0.3.5", "cam.example"]
SUBNET_CHOICES = [(), (SUBNET_A,), (SUBNET_B,), (SUBNET_A, SUBNET_B)]
Event = tuple[str, str, int, float]  # kind, agent id or placement, camera index, seconds


@dataclass
class SimAgent:
    agent_id: str
    max_cameras: int
    subnets: tuple[str, ...]
    health: AgentHealth = "online"
    since_us: int | None = None
    running: set[str] = field(default_factory=set)
    applied_version: int = 0
    last_report: frozenset[str] = frozenset()
    reported_version: int = 0

    def view(self, desired_version: int) -> AgentView:
        return AgentView(
            self.agent_id, self.health, self.since_us, self.max_cameras,
            list(self.subnets), self.last_report, self.reported_version == desired_version,
        )  # fmt: skip


class SimFleet:
    def __init__(self, agents: list[SimAgent], cameras: list[CameraPlacement]) -> None:
        self.agents = {a.agent_id: a for a in agents}
        self.cameras = {c.name: c for c in cameras}
        self.desired: dict[str, tuple[int, frozenset[str]]] = {
            a: (0, frozenset()) for a in self.agents
        }
        self.now_us = NOW
        self.history: list[str] = []

    def apply(self, event: Event) -> None:
        kind, who, index, seconds = event
        self.history.append(f"{kind} {who} c{index} {seconds:.0f}")
        if kind == "advance":
            self.now_us += int(seconds * S)
        elif kind == "place":
            name = f"c{index % len(self.cameras)}"
            self.cameras[name] = replace(self.cameras[name], placement=who)
        elif who not in self.agents or self.agents[who].health == "revoked":
            pass  # revoked agents do not come back
        elif kind in ("offline", "stale") and self.agents[who].health == "online":
            self.agents[who].health = "offline" if kind == "offline" else "stale"
            self.agents[who].since_us = self.now_us
        elif kind == "online":
            self.agents[who].health, self.agents[who].since_us = "online", None
        elif kind == "revoke":
            self.agents[who].health, self.agents[who].since_us = "revoked", self.now_us

    def step(self) -> list[Change]:
        for a in self.agents.values():
            if a.health == "revoked" or self.dead(a.agent_id):
                a.running = set()  # self-fencing (or gone)
            elif a.health == "online":
                a.last_report, a.reported_version = frozenset(a.running), a.applied_version
                a.applied_version, desired = self.desired[a.agent_id]
                a.running = set(desired)
        self.check_one_holder()
        views = [a.view(self.desired[a.agent_id][0]) for a in self.agents.values()]
        changes = plan(list(self.cameras.values()), views, self.now_us, GRACE_S)
        placed: list[str] = []
        for change in changes:
            before = self.cameras[change.camera]
            self.check_no_flap(before, change)
            if before.placement == AUTO and change.target not in (None, before.target):
                placed.append(change.target)
            self.cameras[change.camera] = replace(before, target=change.target, owner=change.owner)
        for agent_id, (version, cameras) in self.desired.items():
            now_desired = frozenset(c.name for c in self.cameras.values() if runs(c) == agent_id)
            if now_desired != cameras:
                self.desired[agent_id] = (version + 1, now_desired)
        self.check_one_holder()
        self.check_capacity(placed)
        return changes

    # -- properties ----------------------------------------------------------------------------

    def dead(self, agent_id: str) -> bool:
        a = self.agents[agent_id]
        away_us = 0 if a.since_us is None else self.now_us - a.since_us
        return a.health == "revoked" or (a.health != "online" and away_us >= GRACE_S * S)

    def check_one_holder(self) -> None:
        for name, camera in self.cameras.items():
            holders = [a.agent_id for a in self.agents.values() if name in a.running]
            assert len(holders) <= 1, (name, holders, self.history)
            if holders and camera.owner is not None:
                assert camera.owner == holders[0], (name, holders, camera, self.history)

    def check_no_flap(self, before: CameraPlacement, change: Change) -> None:
        # An automatic camera leaves its agent only when that agent is dead.
        if before.placement == AUTO and before.target not in (None, change.target):
            assert self.dead(before.target), (before, change, self.history)

    def check_capacity(self, placed_on: list[str]) -> None:
        # Automatic cameras are only placed on agents with room for them.
        for agent_id in placed_on:
            load = sum(c.target == agent_id for c in self.cameras.values())
            assert load <= self.agents[agent_id].max_cameras, (agent_id, self.history)


@st.composite
def sim_fleets(draw: st.DrawFn) -> SimFleet:
    n_agents = draw(st.integers(1, len(AGENT_IDS)))
    agents = [
        SimAgent(AGENT_IDS[i], draw(st.integers(0, 4)), draw(st.sampled_from(SUBNET_CHOICES)))
        for i in range(n_agents)
    ]
    cameras = []
    for i in range(draw(st.integers(1, 8))):
        placement = draw(st.sampled_from([AUTO, AUTO, AUTO, *AGENT_IDS[:n_agents]]))
        cameras.append(cam(f"c{i}", placement=placement, host=draw(st.sampled_from(HOSTS))))
        # Running already, unknown to the controller.
        holder = draw(st.sampled_from([None, None, *agents]))
        if holder is not None:
            holder.running.add(f"c{i}")
            holder.last_report = frozenset(holder.running)
    return SimFleet(agents, cameras)


placements = st.sampled_from([AUTO, *AGENT_IDS, "ghost"])
sim_events = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.just(""), st.just(0), st.floats(0, 1.5 * GRACE_S)),
        st.tuples(st.just("place"), placements, st.integers(0, 7), st.just(0.0)),
        st.tuples(
            st.sampled_from(["offline", "stale", "online", "online", "revoke"]),
            st.sampled_from(AGENT_IDS),
            st.just(0),
            st.just(0.0),
        ),
    ),
    max_size=40,
)


@settings(max_examples=400, deadline=None)
@given(sim_fleets(), sim_events)
def test_simulated_fleet_never_has_two_holders(fleet: SimFleet, script: list[Event]) -> None:
    for event in script:
        fleet.apply(event)
        fleet.step()
    # Quiet end: everyone still in the fleet comes back; within a few steps every camera with
    # an online target is owned and run by it, and the plan is stable.
    for agent_id in fleet.agents:
        fleet.apply(("online", agent_id, 0, 0.0))
    for _ in range(3):
        fleet.step()
    assert fleet.step() == []
    for name, camera in fleet.cameras.items():
        if camera.target is not None and fleet.agents[camera.target].health == "online":
            assert camera.owner == camera.target, (camera, fleet.history)
            assert name in fleet.agents[camera.target].running, (camera, fleet.history)
        elif camera.placement == AUTO:
            assert camera.target is None, (camera, fleet.history)
            assert not _has_room_for(fleet, camera), (camera, fleet.history)


def _has_room_for(fleet: SimFleet, camera: CameraPlacement) -> bool:
    """Whether some online agent may take an unplaced automatic camera (the rule, restated)."""
    members = [a for a in fleet.agents.values() if a.health != "revoked"]
    covering = [a for a in members if a.view(0).covers(camera.host)]
    pool = covering or [a for a in members if not a.subnets]
    load = {a.agent_id: sum(c.target == a.agent_id for c in fleet.cameras.values()) for a in pool}
    return any(a.health == "online" and load[a.agent_id] < a.max_cameras for a in pool)


def test_simulated_failover_and_return() -> None:
    fleet = SimFleet(
        [SimAgent("a0", 2, (SUBNET_A,)), SimAgent("a1", 2, (SUBNET_A,))],
        [cam("c0"), cam("c1"), cam("c2")],
    )
    fleet.step()
    fleet.step()
    assert fleet.agents["a0"].running == {"c0", "c2"} and fleet.agents["a1"].running == {"c1"}
    fleet.apply(("offline", "a0", 0, 0.0))
    fleet.apply(("advance", "", 0, GRACE_S - 1))
    assert fleet.step() == []  # waited out
    fleet.apply(("advance", "", 0, 1))
    # a0 has stopped by itself; only one camera fits on a1, in name order.
    assert [(c.camera, c.target, c.owner) for c in fleet.step()] == [
        ("c0", "a1", "a1"),
        ("c2", None, None),
    ]
    fleet.apply(("online", "a0", 0, 0.0))
    changes = fleet.step()
    assert [(c.camera, c.target) for c in changes] == [("c2", "a0")]  # c0 stays on a1
    fleet.step()
    fleet.step()
    assert fleet.agents["a0"].running == {"c2"} and fleet.agents["a1"].running == {"c0", "c1"}


def test_simulated_repin_hands_over_without_overlap() -> None:
    fleet = SimFleet([SimAgent("a0", 2, ()), SimAgent("a1", 2, ())], [cam("c0", placement="a0")])
    fleet.step()
    fleet.step()
    fleet.apply(("place", "a1", 0, 0.0))
    owners = [[(c.target, c.owner) for c in fleet.step()] for _ in range(4)]
    # a0 still reports c0, then reports it gone, then a1 owns it and runs it.
    assert owners == [[("a1", "a0")], [], [("a1", "a1")], []]
    assert fleet.agents["a1"].running == {"c0"} and fleet.agents["a0"].running == set()
