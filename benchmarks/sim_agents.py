"""Simulated agents for the controller benchmark: many paho clients in one process, driven by one
select() loop (a thread per client would cost more than the clients themselves).

To the broker each client is what a real agent is (`agent.fleet.link`): client id = agent id,
its own credentials, MQTT 3.1.1 with a persistent session, a retained online status with an
offline will of the same session, its subscriptions, a heartbeat every 5 s and QoS 1 events.
The orchestrator drives the process over stdin/stdout, one JSON object per line:

    in   {"port", "agents": [[agent_id, password], ...], "cameras", "burst", "seed"}  (first)
         {"cmd": "step", "name", "rate", "seconds", "report_ids"}   rate: this process's share
                                                  of events/s; null = flood (see FLOOD_WINDOW)
         {"cmd": "stop"}                          (or end of input)
    out  {"ready": agents}
         {"ids": [[event_id_hex, published_us], ...]}                every REPORT_S in a step
         {"done": name, "published": n, "lag_ms": worst lateness against the schedule}

    python -m benchmarks.sim_agents < spec
"""

from __future__ import annotations

import json
import os
import random
import select
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from benchmarks.agent_traffic import (
    HEARTBEAT_S,
    BurstSchedule,
    anomaly,
    burst_cameras,
    camera_names,
    heartbeat,
    status,
)
from fleet.messages import BaseMessage, encode_message
from fleet.topics import TOPICS, TopicKind, agent_subscriptions, build_topic
from fleet.utc import now_us

HOST: Final = "127.0.0.1"
KEEPALIVE_S: Final = 60
CONNECT_TIMEOUT_S: Final = 60.0
RETRY_S: Final = 0.5  # after a refused connection: Mosquitto may not have re-read its files yet
REPORT_S: Final = 0.05
MISC_S: Final = 1.0
# In a flood each client keeps at most this many events unacknowledged, as paho's default
# in-flight window (20) does on the wire, so the flood is as fast as the broker acknowledges.
FLOOD_WINDOW: Final = 20


class WorkerError(RuntimeError):
    pass


@dataclass
class SimAgent:
    agent_id: str
    password: str
    port: int
    session: int
    client: mqtt.Client = field(init=False)
    connected: bool = False
    refused: str | None = None
    retry_at: float = 0.0
    unacked: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.agent_id,
            clean_session=False,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        c.username_pw_set(self.agent_id, self.password)
        c.will_set(*self._args(TopicKind.STATUS, status(self.agent_id, "offline", self.session,
                                                        now_us())))  # fmt: skip
        c.on_connect = self._on_connect
        c.on_publish = self._on_publish
        self.client = c

    def _args(self, kind: TopicKind, msg: BaseMessage) -> tuple[str, bytes, int, bool]:
        spec = TOPICS[kind]
        return build_topic(self.agent_id, kind), encode_message(msg), spec.qos, spec.retained

    def send(self, kind: TopicKind, msg: BaseMessage) -> None:
        info = self.client.publish(*self._args(kind, msg))
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise WorkerError(f"{self.agent_id}: publish failed: {mqtt.error_string(info.rc)}")
        if TOPICS[kind].qos:
            self.unacked.add(info.mid)

    def connect(self) -> None:
        self.refused = None
        self.client.connect(HOST, self.port, keepalive=KEEPALIVE_S)

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        if reason.is_failure:
            self.refused = str(reason)
            self.retry_at = time.monotonic() + RETRY_S
            return
        self.connected = True
        self.send(TopicKind.STATUS, status(self.agent_id, "online", self.session, now_us()))
        client.subscribe([(s.filter, int(s.qos)) for s in agent_subscriptions(self.agent_id)])

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, _r: object, _p: object) -> None:
        self.unacked.discard(mid)


@dataclass
class Step:
    name: str
    end: float
    report_ids: bool
    schedule: BurstSchedule | None  # None: flood
    published: int = 0
    lag_s: float = 0.0


class Commands:
    """JSON lines from stdin, read without Python's buffering so select() sees what is left."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno()
        self._buffer = b""
        self.closed = False

    def read(self) -> list[dict[str, Any]]:
        """What one read brings (call when select() says stdin is readable)."""
        chunk = os.read(self.fd, 65536)
        self.closed = not chunk
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def first(self) -> dict[str, Any]:
        """The first command, waiting for it."""
        while True:
            got = self.read()
            if got:
                # The orchestrator sends nothing more before it hears "ready".
                return got[0]
            if self.closed:
                raise WorkerError("no spec on stdin")


class Worker:
    def __init__(self, spec: dict[str, Any], commands: Commands) -> None:
        self.commands = commands
        session = int(time.time())
        self.agents = [
            SimAgent(agent_id, password, int(spec["port"]), session)
            for agent_id, password in spec["agents"]
        ]
        self.cameras = camera_names(int(spec["cameras"]))
        self.burst = int(spec["burst"])
        self.rng = random.Random(int(spec["seed"]))
        n = len(self.agents)
        start = time.monotonic()
        # Heartbeats spread over the interval, as independent agents' would be.
        self.heartbeat_due = [start + HEARTBEAT_S * i / n for i in range(n)]
        self.step: Step | None = None
        self.ids: list[tuple[str, int]] = []
        self.next_report = 0.0
        self.next_misc = start + MISC_S
        self.stopping = False

    # -- the loop ---------------------------------------------------------------------------------

    def connect_all(self) -> None:
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        for agent in self.agents:
            agent.connect()
        while not all(a.connected for a in self.agents):
            now = time.monotonic()
            if now > deadline:
                refused = [f"{a.agent_id}: {a.refused}" for a in self.agents if a.refused]
                raise WorkerError(f"agents not connected in time; refused: {refused[:3]}")
            for agent in self.agents:
                if agent.refused is not None and now >= agent.retry_at:
                    agent.connect()
            self.pump(0.05, stdin=False)

    def run(self) -> None:
        self.connect_all()
        emit({"ready": len(self.agents)})
        while not self.stopping:
            now = time.monotonic()
            self.send_heartbeats(now)
            busy = self.send_events(now) if self.step is not None else False
            if self.step is not None and now >= self.step.end:
                self.finish_step()
            if now >= self.next_report:
                self.report_ids()
                self.next_report = now + REPORT_S
            if now >= self.next_misc:
                for agent in self.agents:
                    self.check(agent, agent.client.loop_misc())
                self.next_misc = now + MISC_S
            self.pump(0.0 if busy else self.idle_timeout(now), stdin=True)
        for agent in self.agents:
            agent.client.disconnect()

    def idle_timeout(self, now: float) -> float:
        wake = [min(self.heartbeat_due), self.next_misc]
        if self.step is not None:
            wake += [self.step.end, self.next_report]
            if self.step.schedule is not None:
                wake.append(self.step.schedule.next_due())
            else:
                wake.append(now + 0.001)  # flood: waiting for acknowledgements
        return max(0.0, min(wake) - now)

    def pump(self, timeout: float, stdin: bool) -> None:
        """Wait up to `timeout` for the sockets (and stdin), then read and write what is ready."""
        socks: dict[Any, SimAgent] = {}
        for agent in self.agents:
            if (sock := agent.client.socket()) is not None:
                socks[sock] = agent
        readers: list[Any] = list(socks)
        if stdin:
            readers.append(self.commands.fd)
        writers = [s for s, a in socks.items() if a.client.want_write()]
        readable, writable, _ = select.select(readers, writers, [], timeout)
        for sock in readable:
            if sock == self.commands.fd:
                for cmd in self.commands.read():
                    self.command(cmd)
                self.stopping = self.stopping or self.commands.closed
            else:
                self.check(socks[sock], socks[sock].client.loop_read())
        for sock in writable:
            self.check(socks[sock], socks[sock].client.loop_write())

    def check(self, agent: SimAgent, rc: MQTTErrorCode) -> None:
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS and agent.refused is None:
            raise WorkerError(f"{agent.agent_id}: connection lost: {mqtt.error_string(rc)}")

    # -- what the agents send ------------------------------------------------------------------

    def send_heartbeats(self, now: float) -> None:
        for i, due in enumerate(self.heartbeat_due):
            if due <= now:
                self.agents[i].send(TopicKind.HEARTBEAT, heartbeat(self.cameras, now_us()))
                self.heartbeat_due[i] = due + HEARTBEAT_S

    def send_events(self, now: float) -> bool:
        """Send what is due; True if the loop should come straight back (a flood)."""
        step = self.step
        assert step is not None
        if step.schedule is None:
            ready = [i for i, a in enumerate(self.agents) if len(a.unacked) < FLOOD_WINDOW]
            for i in ready:
                self.send_burst(i)
            return bool(ready)
        due = step.schedule.next_due()
        for i in step.schedule.pop_due(now):
            self.send_burst(i)
        step.lag_s = max(step.lag_s, now - due) if due <= now else step.lag_s
        return False

    def send_burst(self, i: int) -> None:
        step = self.step
        assert step is not None
        agent = self.agents[i]
        for camera in burst_cameras(self.cameras, self.burst, self.rng):
            published = now_us()
            event = anomaly(camera, published, self.rng)
            agent.send(TopicKind.EVENTS, event)
            if step.report_ids:
                self.ids.append((event.id.hex, published))
        step.published += self.burst

    # -- talking to the orchestrator -------------------------------------------------------------

    def command(self, cmd: dict[str, Any]) -> None:
        if cmd["cmd"] == "stop":
            self.stopping = True
        elif cmd["cmd"] == "step":
            now = time.monotonic()
            rate = cmd["rate"]
            schedule = (
                None if rate is None
                else BurstSchedule(len(self.agents), float(rate), self.burst, now, self.rng)
            )  # fmt: skip
            self.step = Step(cmd["name"], now + float(cmd["seconds"]), bool(cmd["report_ids"]),
                             schedule)  # fmt: skip
        else:
            raise WorkerError(f"unknown command {cmd['cmd']!r}")

    def report_ids(self) -> None:
        if self.ids:
            emit({"ids": self.ids})
            self.ids = []

    def finish_step(self) -> None:
        step = self.step
        assert step is not None
        self.report_ids()
        emit({"done": step.name, "published": step.published, "lag_ms": step.lag_s * 1000})
        self.step = None


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main() -> None:
    try:
        commands = Commands()
        Worker(commands.first(), commands).run()
    except WorkerError as exc:
        raise SystemExit(f"sim agents: {exc}") from None


if __name__ == "__main__":
    main()
