"""The peer the controller is measured against: a plain paho subscriber in the controller's place
(its broker identity, its subscriptions and QoS, a network thread) that does nothing with an
event but note when it arrived. What it receives is the broker's raw delivery to one client:
the ceiling the controller sits behind. Work on the payloads waits until asked for a report.

It takes the controller's identity, so it runs only while the controller does not; it connects
with a clean session so the controller's persistent session is not left queueing behind it.

    in   {"port", "username", "password"}      (first line)
         {"cmd": "count"}                      -> {"received": events delivered so far}
         {"cmd": "take", "from_us", "to_us"}   -> {"in_window", "received", "distinct",
                                                    "latency_ms": [...]} of the events that
                                                    arrived since the last take
    out  {"ready": true} once subscribed

    python -m benchmarks.broker_peer < spec
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from benchmarks.controller_rig import anywhere
from benchmarks.simulator import REPO
from fleet.topics import controller_subscriptions

SUBSCRIBE_TIMEOUT_S: Final = 30.0


class CountingSubscriber:
    def __init__(self, port: int, username: str, password: str) -> None:
        self.arrivals: list[tuple[int, bytes]] = []  # (arrival ns, payload)
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=username,
            clean_session=True,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        c.username_pw_set(username, password)
        c.max_inflight_messages_set(100)  # as the controller's link
        c.on_connect = lambda client, *_: client.subscribe(
            [(s.filter, int(s.qos)) for s in controller_subscriptions()]
        )
        c.on_subscribe = lambda *_: self.subscribed.set()
        c.on_message = self._on_message
        c.connect("127.0.0.1", port, keepalive=30)
        c.loop_start()
        self.client = c

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/events"):
            with self._lock:
                self.arrivals.append((time.time_ns(), bytes(msg.payload)))

    def count(self) -> dict[str, Any]:
        with self._lock:
            return {"received": len(self.arrivals)}

    def take(self, from_us: int, to_us: int) -> dict[str, Any]:
        with self._lock:
            taken, self.arrivals = self.arrivals, []
        latencies, in_window, ids = [], 0, set()
        for arrived_ns, payload in taken:
            event = json.loads(payload)
            arrived_us = arrived_ns // 1000
            in_window += from_us <= arrived_us <= to_us
            ids.add(event["id"])
            latencies.append(round((arrived_us - event["end_us"]) / 1000, 3))  # end_us: sent at
        return {"in_window": in_window, "received": len(taken), "distinct": len(ids),
                "latency_ms": latencies}  # fmt: skip


def main() -> None:
    spec = json.loads(sys.stdin.readline())
    peer = CountingSubscriber(int(spec["port"]), spec["username"], spec["password"])
    if not peer.subscribed.wait(SUBSCRIBE_TIMEOUT_S):
        raise SystemExit("broker peer: not subscribed in time")
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "count":
            answer = peer.count()
        elif cmd["cmd"] == "take":
            answer = peer.take(int(cmd["from_us"]), int(cmd["to_us"]))
        else:
            answer = {"error": f"unknown command {cmd['cmd']!r}"}
        print(json.dumps(answer), flush=True)
    peer.client.disconnect()
    peer.client.loop_stop()


# -- the orchestrator's side ---------------------------------------------------------------------


class BrokerPeer:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    def ask(self, cmd: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"broker peer exited ({self.proc.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def received(self) -> int:
        return int(self.ask({"cmd": "count"})["received"])

    def take(self, from_us: int, to_us: int) -> dict[str, Any]:
        return self.ask({"cmd": "take", "from_us": from_us, "to_us": to_us})


@contextlib.contextmanager
def broker_peer(port: int, username: str, password: str) -> Iterator[BrokerPeer]:
    """The counting subscriber in its own process, placed as the controller is (any CPU)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.broker_peer"],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, **anywhere(),
    )  # fmt: skip
    peer = BrokerPeer(proc)
    try:
        ready = peer.ask({"port": port, "username": username, "password": password})
        if not ready.get("ready"):
            raise RuntimeError(f"broker peer did not start: {ready}")
        yield peer
    finally:
        if proc.poll() is None:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    main()
