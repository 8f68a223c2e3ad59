"""The outbox: a durable FIFO in SQLite, and delivery through broker outages and agent restarts
(real Mosquitto with persistence, real agent processes, the simulator)."""

from __future__ import annotations

import hashlib
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, require_tool, start_sim, wait_for
from mqtt_broker import mosquitto
from test_fleet_link import AGENT_ID, SIM_ARGS, Controller, FleetAgent, camera, enrolled, reported

from agent.fleet.link import AgentLink
from agent.fleet.outbox import Outbox, OutboxMessage
from agent.fleet.sender import OutboxSender
from agent.fleet.session import SessionCounter
from fleet.enrollment import read_credentials
from fleet.messages import IDENTITY, BaseMessage, Event
from fleet.topics import TopicKind
from fleet.utc import now_us


def persistent_broker(workdir: Path, port: int) -> AbstractContextManager[Any]:
    """Mosquitto that keeps sessions across its own restarts (the test controller's queue)."""
    store = workdir / "mosquitto-store"
    store.mkdir(exist_ok=True)
    config = workdir / f"mosquitto-persistent-{port}.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
        f"persistence_location {store}/\nmax_queued_messages 0\nmax_inflight_messages 0\n"
    )
    return mosquitto(config, port)


def event(camera: str = "cam1") -> Event:
    t = now_us()
    return Event(id=uuid.uuid4(), camera=camera, kind="anomaly", start_us=t, end_us=t, peak_us=t,
                 adjustment=IDENTITY)  # fmt: skip


def test_outbox_is_a_durable_fifo(tmp_path: Path) -> None:
    messages = [OutboxMessage("t/a", b"one"), OutboxMessage("t/b", b"two!", 0, True),
                OutboxMessage("t/c", b"3")]  # fmt: skip
    box = Outbox.open(tmp_path)
    assert box.put_all(messages) == 3
    box.close()

    box = Outbox.open(tmp_path)  # reopened: as after an agent restart
    rows = box.after(0, 10)
    assert [r.message for r in rows] == messages
    assert [r.message for r in box.after(rows[0].id, 1)] == messages[1:2]
    stats = box.stats()
    assert (stats.depth, stats.bytes) == (3, 8) and stats.oldest_age_s is not None

    def failing() -> Iterator[OutboxMessage]:
        yield OutboxMessage("t/d", b"never stored")
        raise OSError("disk gone")

    with pytest.raises(OSError):
        box.put_all(failing())
    assert box.stats().depth == 3  # all or nothing

    box.delete(r.id for r in rows)
    assert box.stats().depth == 0 and box.stats().oldest_age_s is None
    box.put(OutboxMessage("t/e", b"after"))
    assert box.after(0, 10)[0].id > rows[-1].id  # ids are never reused: the cursor stays valid
    box.close()


class _Forward:
    """A LinkListener that only hands PUBACKs to the sender."""

    def __init__(self) -> None:
        self.sender: OutboxSender | None = None

    def connected(self, session: int) -> None: ...
    def disconnected(self, reason: str) -> None: ...
    def received(self, kind: TopicKind, message: BaseMessage) -> None: ...

    def published(self, mid: int) -> None:
        if self.sender is not None:
            self.sender.acked(mid)


def test_sender_deletes_only_what_the_broker_acknowledged_across_its_restart(
    tmp_path: Path,
) -> None:
    port = free_port()
    data = enrolled(tmp_path / "data", port)
    box = Outbox.open(data)
    listener = _Forward()
    link = AgentLink(read_credentials(data), SessionCounter.open(data), listener, "0.1.0")
    sender = listener.sender = OutboxSender(box, link)
    sent = [event() for _ in range(120)]

    def put(events: list[Event]) -> None:
        box.put_all(OutboxMessage.of(AGENT_ID, TopicKind.EVENTS, e) for e in events)
        sender.wake()

    def arrived() -> set[uuid.UUID]:
        return {e.id for e in ctl.all(Event)}

    with persistent_broker(tmp_path, port):
        ctl = Controller(port, client_id="ctl-outbox-test")
        link.start()
        sender.start()
        try:
            put(sent[:20])
            wait_for(lambda: arrived() == {e.id for e in sent[:20]}, 15, what="first 20")
            wait_for(lambda: box.stats().depth == 0, 10, what="acked rows deleted")
        except BaseException:
            ctl.close()
            raise
    try:
        wait_for(lambda: not link.connected, 10, what="link down")
        put(sent[20:])
        wait_for(lambda: sender.stats().in_flight == sender.window, 10, what="window filled")
        assert box.stats().depth == 100  # published to the client, never acknowledged: kept
        with persistent_broker(tmp_path, port):
            wait_for(lambda: arrived() == {e.id for e in sent}, 60, what="all 120 events")
            wait_for(lambda: box.stats().depth == 0, 10, what="outbox drained")
            assert sender.stats().refused == 0
            sender.stop()
            link.stop()
    finally:
        ctl.close()
        box.close()


def test_events_raised_while_the_broker_is_down_arrive_with_their_clips(tmp_path: Path) -> None:
    ffprobe = require_tool("ffprobe")
    port = free_port()
    data = enrolled(tmp_path / "data", port)
    sim = start_sim(str(tmp_path), *SIM_ARGS, cameras=1)
    started: list[FleetAgent] = []
    controllers: list[Controller] = []
    try:
        with persistent_broker(tmp_path, port):
            ctl = Controller(port, client_id="ctl-events-test")
            controllers.append(ctl)
            agent = FleetAgent(data, tmp_path / "agent0.log")
            started.append(agent)
            ctl.desire(1, camera(sim))
            wait_for(lambda: reported(ctl, 1, lambda r: r.cameras[0].state == "streaming"),
                     30, what="cam1 streaming")  # fmt: skip
        wait_for(lambda: not agent.stats()["fleet"]["connected"], 10, what="broker gone")
        # Recorded long enough for the pre roll (the sim sends 25 fps).
        wait_for(lambda: agent.stream("cam1")["packets"] >= 60, 10, what="pre roll recorded")  # type: ignore[index]
        raised = [agent.raise_test_event("cam1") for _ in range(3)]
        fleet = wait_for(lambda: (f := agent.stats()["fleet"])["clip_jobs"] == 0 and f, 30,
                         what="clips made")  # fmt: skip
        assert fleet["outbox"]["depth"] >= 3 * 3  # event, manifest, at least one chunk each
        agent.stop()  # restarted while the broker is still down: the outbox is on disk
        agent = FleetAgent(data, tmp_path / "agent1.log")
        started.append(agent)
        wait_for(lambda: agent.stats()["fleet"]["outbox"]["depth"] == fleet["outbox"]["depth"],
                 10, what="outbox kept")  # fmt: skip

        with persistent_broker(tmp_path, port):
            events = {}
            for event_id in raised:
                e = ctl.wait(Event, lambda e, i=event_id: str(e.id) == i, 60, what="event")  # type: ignore[misc]
                events[event_id] = e
            assert len({e.id for e in events.values()}) == 3
            for e in events.values():
                assert e.clip_id is not None and e.roi_id == "test" and e.peak_score == 1.0
                manifest, clip = wait_for(lambda e=e: ctl.clip(e.clip_id), 30, what="clip")  # type: ignore[misc]
                assert manifest.event_id == e.id and manifest.camera == "cam1"
                assert hashlib.sha256(clip).hexdigest() == manifest.sha256
                assert manifest.from_us <= e.start_us - 1_000_000  # pre roll from a keyframe
                assert manifest.to_us >= e.end_us + 900_000  # post roll
                path = tmp_path / f"{e.clip_id}.mp4"
                path.write_bytes(clip)
                probe = subprocess.run(
                    [ffprobe, "-v", "error", "-count_frames", "-show_entries",
                     "stream=codec_name,nb_read_frames", "-of", "csv=p=0", str(path)],
                    capture_output=True, text=True, timeout=30,
                )  # fmt: skip
                assert probe.returncode == 0 and probe.stderr == "", probe.stderr
                codec, frames = probe.stdout.strip().split(",")
                assert codec == "h264" and int(frames) >= 25
            wait_for(lambda: agent.stats()["fleet"]["outbox"]["depth"] == 0, 10,
                     what="outbox drained")  # fmt: skip
            agent.stop()
    finally:
        for a in started:
            a.kill()
        for c in controllers:
            c.close()
        sim.stop()
