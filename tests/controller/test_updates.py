"""The web view's update feed (GET /api/v1/updates, server-sent events) and the web client's
mount: the pure planning part, then the controller's app served by uvicorn on a free port and
read by a real httpx client, the server stopping with feeds open (in-process and as a real
`camfleet controller run` process), and the static files at /."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import free_port, wait_for
from fleet_processes import PASSWORD as PROCESS_PASSWORD
from fleet_processes import Controller
from web_fixtures import Feed, Served, StandInAgent, anomaly, served_controller, stand_in_agent

from controller.api.models import AgentHealth, CameraHealth, FleetHealth
from controller.api.sse import comment, frame
from controller.api.update_plan import (
    Cadence,
    Timetable,
    detection_frame,
    fleet_signature,
    fleet_view,
    resume_after,
)
from controller.web import STATIC_DIR

# -- what to send, without I/O --------------------------------------------------------------------


def test_frames_split_data_only_where_an_event_source_splits_lines() -> None:
    assert frame("fleet", '{"a":1}') == b'event: fleet\ndata: {"a":1}\n\n'
    assert frame("event", "x\r\ny\nz", event_id="7") == (
        b"event: event\nid: 7\ndata: x\ndata: y\ndata: z\n\n"
    )
    # U+2028 may sit inside a JSON string: it is not a line end for EventSource.
    assert frame("e", "a\u2028b") == "event: e\ndata: a\u2028b\n\n".encode()
    assert comment("keep-alive") == b": keep-alive\n\n"


def health(state: str = "online", heartbeat_us: int = 5, now: int = 10) -> FleetHealth:
    agent = AgentHealth(
        agent_id="a1", name="edge-01", hostname="h", state=state, session=1,
        last_heartbeat_us=heartbeat_us, last_heartbeat=str(heartbeat_us), heartbeat_interval_s=1,
        cameras=1, desired_version=1, applied_version=1, error=None,
    )  # fmt: skip
    cameras = [
        CameraHealth(name=n, owner=owner, target=owner, state="streaming", reason=None,
                     inspection=True, site=None)
        for n, owner in (("cam1", "a1"), ("cam2", None))
    ]  # fmt: skip
    return FleetHealth(now_us=now, agent_states={state: 1}, agents=[agent], cameras=cameras)


def test_the_fleet_view_marks_alarms_and_owners_and_changes_only_when_the_fleet_does() -> None:
    view = fleet_view(health(), alarms={"cam1"})
    rows = {c["name"]: (c["alarm"], c["agent_name"]) for c in view["cameras"]}
    assert rows == {"cam1": (True, "edge-01"), "cam2": (False, None)}

    same = fleet_signature(view)
    assert fleet_signature(fleet_view(health(heartbeat_us=9, now=99), {"cam1"})) == same
    assert fleet_signature(fleet_view(health(state="stale"), {"cam1"})) != same
    assert fleet_signature(fleet_view(health(), set())) != same


def test_each_connection_sends_fleet_keep_alive_and_detection_on_its_timetable() -> None:
    due = Timetable(Cadence(fleet_resend_s=15, keep_alive_s=15, detection_s=1), now=100)
    assert due.fleet(version=3, now=100) is True  # at connect
    assert due.fleet(version=3, now=100.5) is False
    assert due.fleet(version=4, now=101) is True  # changed
    assert due.fleet(version=4, now=115.9) is False
    assert due.fleet(version=4, now=116) is True  # unchanged, but 15 s on
    assert due.keep_alive(now=114.9) is False
    assert due.keep_alive(now=115) is True
    assert due.keep_alive(now=116) is False
    assert [due.detection(now=t) for t in (100, 100.5, 101, 101.2, 102)] == [
        True, False, True, False, True,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("last_event_id", "expected"),
    [(None, 50), ("20", 20), ("50", 50), ("0", 0), ("51", 50), ("-1", 50), ("x", 50)],
)
def test_a_reconnecting_browser_resumes_after_the_change_it_saw_last(
    last_event_id: str | None, expected: int
) -> None:
    assert resume_after(last_event_id, last_seq=50) == expected


@pytest.mark.parametrize(
    ("status", "body", "data"),
    [
        (200, b'{"camera": "cam1",\n "rois": []}', b'{"camera":"cam1","rois":[]}'),
        (404, b'{"detail": "no camera cam1"}',
         b'{"camera": "cam1", "error": "the agent answered 404: no camera cam1"}'),
        (502, b"Bad Gateway",
         b'{"camera": "cam1", "error": "the agent answered 502: Bad Gateway"}'),
        (200, b"not json", b'{"camera": "cam1", "error": "the agent answered 200: not json"}'),
    ],
)  # fmt: skip
def test_a_detection_frame_carries_the_agents_state_or_what_went_wrong(
    status: int, body: bytes, data: bytes
) -> None:
    assert detection_frame("cam1", status, body) == b"event: detection\ndata: " + data + b"\n\n"


# -- over HTTP ------------------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with served_controller(tmp_path / "controller") as s:
        yield s


@pytest.fixture
def feeds() -> Iterator[list[Feed]]:
    opened: list[Feed] = []
    yield opened
    for feed in opened:
        feed.close()


def test_the_feed_needs_a_login(served: Served) -> None:
    with served.client() as anonymous:
        answer = anonymous.get("/updates")
        assert answer.status_code == 401
        assert answer.json()["detail"].startswith("not logged in")


def test_fleet_at_connect_then_every_event_change_with_the_cameras_alarm(
    served: Served, feeds: list[Feed]
) -> None:
    agent_id = served.agent_serving("edge-01", "http://127.0.0.1:9")
    served.camera("cam1", owner=agent_id)
    served.camera("cam2", owner=None)
    earlier = anomaly(open=False)
    served.events.store(agent_id, earlier, 1)  # before the connection: not sent

    with served.browser() as browser:
        feeds.append(feed := Feed(browser))
        assert feed.response.headers["content-type"].startswith("text/event-stream")
        fleet = feed.next("fleet").json()
        cameras = {c["name"]: c for c in fleet["cameras"]}
        assert (cameras["cam1"]["agent_name"], cameras["cam1"]["alarm"]) == ("edge-01", False)
        assert (cameras["cam2"]["agent_name"], cameras["cam2"]["alarm"]) == (None, False)
        assert [a["agent_id"] for a in fleet["agents"]] == [agent_id]

        opened = anomaly()
        served.events.store(agent_id, opened, 2)
        sent = feed.next("event")
        record = sent.json()
        assert (record["id"], record["open"], record["threshold"]) == (str(opened.id), True, 1.0)
        assert record["scores"] == [list(point) for point in opened.scores]
        assert sent.id is not None  # the first event frame: the earlier event was not sent
        feed.next("fleet", lambda view: alarm(view, "cam1") is True)

        closed = opened.model_copy(update={"open": False, "end_us": opened.end_us + 1})
        served.events.store(agent_id, closed, 3)
        assert feed.next("event").json()["open"] is False
        feed.next("fleet", lambda view: alarm(view, "cam1") is False)

        assert browser.post(f"/events/{opened.id}/ack").status_code == 200
        acked = feed.next("event").json()
        assert (acked["id"], acked["acknowledged_by"]) == (str(opened.id), "admin")

        served.events.link_clip(opened.id, uuid.uuid4())
        linked = feed.next("event").json()
        assert (linked["id"], linked["clip_complete"]) == (str(opened.id), True)


def alarm(view: dict[str, Any], camera: str) -> bool:
    return next(bool(c["alarm"]) for c in view["cameras"] if c["name"] == camera)


def test_a_reconnecting_browser_gets_the_changes_it_missed(
    served: Served, feeds: list[Feed]
) -> None:
    agent_id = served.agent_serving("edge-01", "http://127.0.0.1:9")
    with served.browser() as browser:
        feeds.append(first := Feed(browser))
        seen = anomaly()
        served.events.store(agent_id, seen, 1)
        last_id = first.next("event").id
        first.close()
        missed = [anomaly(), anomaly()]
        served.events.store_many([(agent_id, e, 2) for e in missed])

        feeds.append(again := Feed(browser, headers={"Last-Event-ID": str(last_id)}))
        got = [again.next("event").json()["id"] for _ in missed]
        assert got == [str(e.id) for e in missed]
        again.close()

        # A page opening a new feed (another camera) says where it was with ?after=.
        later = anomaly()
        served.events.store(agent_id, later, 3)
        feeds.append(reopened := Feed(browser, params={"after": str(last_id)}))
        got = [reopened.next("event").json()["id"] for _ in [*missed, later]]
        assert got == [str(e.id) for e in [*missed, later]]


def test_detection_frames_follow_the_camera_and_say_when_its_agent_is_gone(
    served: Served, feeds: list[Feed]
) -> None:
    state = {"camera": "cam1", "inspection": True, "rois": [{"id": "door", "score": 0.4}]}
    with served.browser() as browser:
        assert browser.get("/updates", params={"camera": "ghost"}).status_code == 404
        with stand_in_agent(StandInAgent(detection=state)) as agent:
            agent_id = served.agent_serving("edge-01", agent.url)
            served.camera("cam1", owner=agent_id)
            feeds.append(feed := Feed(browser, params={"camera": "cam1"}))
            feed.next("fleet")
            assert feed.next("detection").json() == state
            agent.detection = {**state, "inspection": False}
            feed.next("detection", lambda d: d.get("inspection") is False)
        gone = feed.next("detection", lambda d: "error" in d).json()
        assert gone["camera"] == "cam1" and "did not answer" in gone["error"]
        served.registry.update_camera("cam1", owner=None, target=None)
        unassigned = feed.next("detection", lambda d: "not assigned" in d.get("error", "")).json()
        assert unassigned["camera"] == "cam1"


def test_keep_alive_comments_and_the_fleet_again_while_nothing_changes(
    served: Served, feeds: list[Feed]
) -> None:
    with served.browser() as browser:
        feeds.append(feed := Feed(browser))
        first = feed.next("fleet").json()
        feed.next("comment", lambda text: text == "keep-alive", timeout=5)
        again = feed.next("fleet", timeout=5).json()  # QUICK resends it every second
        assert again["now_us"] > first["now_us"]
        feed.close()  # the browser leaves: the server ends that response
        wait_for(lambda: not served.server.server_state.tasks, 5, what="the feed to end")


def test_stopping_the_server_ends_open_feeds_and_live_video(
    served: Served, feeds: list[Feed]
) -> None:
    with stand_in_agent(StandInAgent(video=b"\0" * 4096, endless=True)) as agent:
        agent_id = served.agent_serving("edge-01", agent.url)
        served.camera("cam1", owner=agent_id)
        with served.browser() as browser:
            feeds.append(feed := Feed(browser))
            feed.next("fleet")
            with browser.stream("GET", "/cameras/cam1/live.mp4") as live:
                assert live.status_code == 200
                chunks = live.iter_raw()
                next(chunks)
                served.stop()
                assert not served.thread.is_alive(), "the server did not stop"
                # Both ended cleanly: had the server given up waiting for them (and cancelled
                # them), they would have broken off mid-body, and reading would raise.
                assert feed.ended() is None, "the feed broke off instead of ending"
                for _ in chunks:
                    pass
            assert agent.live_ended.wait(5), "the upstream live request was left open"


def test_the_controller_process_stops_with_a_feed_open(tmp_path: Path) -> None:
    controller = Controller(tmp_path / "controller", "--mqtt-port", str(free_port()))
    try:
        with httpx.Client(base_url=f"{controller.url}/api/v1", timeout=10) as browser:
            login = {"username": "admin", "password": PROCESS_PASSWORD}
            browser.post("/login", json=login).raise_for_status()
            feed = Feed(browser)
            try:
                feed.next("fleet", timeout=15)
                controller.proc.send_signal(signal.SIGTERM)
                assert feed.ended(timeout=15) is None
                assert controller.proc.wait(15) == 0
            finally:
                feed.close()
        assert "graceful shutdown exceeded" not in controller.log.read_text()
    finally:
        controller.stop()


# -- the web client's files -------------------------------------------------------------------


def test_the_web_client_is_served_at_the_root_without_a_login(served: Served) -> None:
    index = httpx.get(f"{served.url}/", timeout=10)
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    assert index.content == (STATIC_DIR / "index.html").read_bytes()
    asset = next(p for p in sorted(STATIC_DIR.rglob("*")) if p.is_file() and p.name != "index.html")
    by_path = httpx.get(f"{served.url}/{asset.relative_to(STATIC_DIR).as_posix()}", timeout=10)
    assert by_path.status_code == 200 and by_path.content == asset.read_bytes()
    assert httpx.get(f"{served.url}/no-such-file.js", timeout=10).status_code == 404


def test_api_paths_stay_the_apis_own(served: Served) -> None:
    with served.browser() as browser:
        for method in ("GET", "POST"):
            unknown = browser.request(method, "/no-such-thing")
            assert unknown.status_code == 404, method
            assert unknown.json() == {"detail": "Not Found"}
        wrong_method = browser.delete("/events")
        assert wrong_method.status_code == 405
        assert browser.get("/fleet/health").status_code == 200
    assert httpx.get(f"{served.url}/api", timeout=10).json() == {"detail": "Not Found"}
