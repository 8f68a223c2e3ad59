"""The event store: idempotent by id, every filter and the keyset cursor against a plain-Python
reference, acknowledgement, clip links, indexes, and writers racing on a real SQLite file."""

from __future__ import annotations

import random
import sqlite3
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.events.query import EventFilter, InvalidFilter, Position
from controller.events.records import EventRecord, UnknownEvent
from controller.events.store import ALARM_CAMERAS_SQL, EVENTS_FILE, EventStore
from fleet.messages import IDENTITY, Box, Event, EventKind, RoiAdjustment

KINDS: list[EventKind] = ["anomaly", "camera_moved", "camera_offline", "recording_gap"]


def make_event(**fields: Any) -> Event:
    start = fields.pop("start_us", 1_718_000_000_000_000)
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "camera": "gate",
        "kind": "anomaly",
        "start_us": start,
        "end_us": start + 4_000_000,
        "peak_us": start,
        "peak_score": 0.5,
        "adjustment": IDENTITY,
    }
    values.update(fields)
    return Event(**values)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    s = EventStore.open(tmp_path)
    yield s
    s.close()


def all_pages(
    store: EventStore, f: EventFilter, between: Callable[[], None] = lambda: None
) -> list[EventRecord]:
    """Follow next_cursor to the end, calling `between` between pages; fails if they never end."""
    items: list[EventRecord] = []
    for _ in range(10_000):
        page = store.query(f)
        assert len(page.items) <= f.limit
        items.extend(page.items)
        if page.next_cursor is None:
            return items
        assert len(page.items) == f.limit  # a short page is the last one
        between()
        f = EventFilter(**{**_fields(f), "cursor": page.next_cursor})
    raise AssertionError("pagination did not end")


def _fields(f: EventFilter) -> dict[str, Any]:
    return {name: getattr(f, name) for name in f.__dataclass_fields__}


# -- idempotency --------------------------------------------------------------------------------


def test_a_repeated_id_is_ignored_even_when_its_content_differs(store: EventStore) -> None:
    first = make_event(peak_score=0.9, detail="first")
    assert store.store("edge-01", first, received_us=10) is True
    changed = first.model_copy(update={"camera": "yard", "peak_score": 0.1, "detail": "second"})
    assert store.store("edge-02", changed, received_us=20) is False

    record = store.get(first.id)
    assert record is not None
    assert (record.camera, record.peak_score, record.detail) == ("gate", 0.9, "first")
    assert (record.agent_id, record.received_us) == ("edge-01", 10)
    assert store.counts() == {
        "total": 1, "unacknowledged": 1, "by_kind": {"anomaly": 1}, "duplicates": 1,
    }  # fmt: skip


def test_store_many_returns_how_many_were_new(store: EventStore) -> None:
    known, fresh = make_event(), make_event()
    store.store("edge-01", known, 1)
    # Known id, a new one, and the new one again within the same batch.
    batch = [("edge-01", known, 2), ("edge-01", fresh, 2), ("edge-01", fresh, 2)]
    assert store.store_many(batch) == 1
    assert store.counts()["total"] == 2
    assert store.counts()["duplicates"] == 2
    assert store.store_many([]) == 0


def test_every_field_is_kept_exactly(store: EventStore) -> None:
    event = make_event(
        roi_id="driveway",
        kind="anomaly",
        start_us=1_718_000_000_000_001,
        end_us=1_718_000_004_000_003,
        peak_us=1_718_000_001_500_002,
        peak_score=0.9312345678901234,
        detail="ünïcode detail",
        box=Box(x=412, y=188, w=96, h=140, frame_w=1920, frame_h=1080),
        model_version="padim-2024-06-10",
        adjustment=RoiAdjustment(dx=3.5, dy=-1.25, angle_deg=0.2, scale=1.0),
        clip_id=uuid.uuid4(),
        open=True,
        threshold=0.8123456789,
        scores=[(1_718_000_000_000_001, 0.1), (1_718_000_001_500_002, 0.9312345678901234)],
    )
    store.store("edge-01", event, received_us=1_718_000_005_000_000)
    record = store.get(event.id)
    assert record is not None
    assert record.model_dump(include=set(Event.model_fields)) == event.model_dump()
    assert record.agent_id == "edge-01"
    assert record.received_us == 1_718_000_005_000_000
    assert (record.acknowledged_by, record.acknowledged_us, record.clip_complete) == (
        None,
        None,
        False,
    )
    assert store.get(uuid.uuid4()) is None


def test_the_schema_is_idempotent_and_events_survive_reopening(tmp_path: Path) -> None:
    event = make_event()
    with_store = EventStore.open(tmp_path)
    with_store.store("edge-01", event, 1)
    with_store.close()
    reopened = EventStore.open(tmp_path)
    try:
        assert reopened.store("edge-01", event, 2) is False
        assert reopened.counts()["total"] == 1
    finally:
        reopened.close()


# -- filters and pagination ---------------------------------------------------------------------


def reference(events: list[tuple[str, Event]], acked: set[uuid.UUID], f: EventFilter) -> list[str]:
    """What a query must return, computed in plain Python: ids, newest first."""

    def matches(agent_id: str, e: Event) -> bool:
        return (
            (f.camera is None or e.camera == f.camera)
            and (f.roi_id is None or e.roi_id == f.roi_id)
            and (f.kinds is None or e.kind in f.kinds)
            and (f.agent_id is None or agent_id == f.agent_id)
            and (f.since_us is None or e.end_us >= f.since_us)
            and (f.until_us is None or e.start_us <= f.until_us)
            and (f.min_score is None or e.peak_score >= f.min_score)
            and (f.acknowledged is None or (e.id in acked) == f.acknowledged)
            and (f.open is None or e.open == f.open)
        )

    hits = [e for agent_id, e in events if matches(agent_id, e)]
    hits.sort(key=lambda e: (e.start_us, str(e.id)), reverse=True)
    return [str(e.id) for e in hits]


def _maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), values)


# Small domains so filters hit and miss, and start times tie (the id breaks the tie).
event_specs = st.lists(
    st.tuples(
        st.sampled_from(["edge-01", "edge-02"]),
        st.sampled_from(["gate", "yard"]),
        st.sampled_from([None, "door", "fence"]),
        st.sampled_from(KINDS),
        st.integers(0, 30),  # start
        st.integers(0, 10),  # duration
        st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]),
        st.booleans(),  # acknowledged
        st.booleans(),  # open
    ),
    max_size=40,
)
filters = st.builds(
    EventFilter,
    camera=_maybe(st.sampled_from(["gate", "yard", "nowhere"])),
    roi_id=_maybe(st.sampled_from(["door", "fence"])),
    kinds=_maybe(st.lists(st.sampled_from(KINDS), min_size=1, max_size=3).map(tuple)),
    agent_id=_maybe(st.sampled_from(["edge-01", "edge-02"])),
    since_us=_maybe(st.integers(0, 20)),
    until_us=_maybe(st.integers(20, 45)),
    min_score=_maybe(st.sampled_from([0.0, 0.5, 0.8])),
    acknowledged=_maybe(st.booleans()),
    open=_maybe(st.booleans()),
    limit=st.integers(1, 7),
)


@settings(max_examples=60, deadline=None)
@given(specs=event_specs, f=filters)
def test_queries_page_through_exactly_what_the_filter_selects(
    specs: list[tuple[Any, ...]], f: EventFilter
) -> None:
    events, acked = [], set()
    for agent_id, camera, roi_id, kind, start, duration, score, ack, is_open in specs:
        e = make_event(
            camera=camera, roi_id=roi_id, kind=kind, start_us=start, end_us=start + duration,
            peak_us=start, peak_score=score, open=is_open,
        )  # fmt: skip
        events.append((agent_id, e))
        if ack:
            acked.add(e.id)
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore.open(Path(tmp))
        try:
            store.store_many([(agent_id, e, 0) for agent_id, e in events])
            for event_id in acked:
                store.acknowledge(event_id, "tester", 1)
            got = [str(r.id) for r in all_pages(store, f)]
        finally:
            store.close()
    assert got == reference(events, acked, f)


def test_pages_return_every_event_once_while_new_events_arrive(store: EventStore) -> None:
    rng = random.Random(7)
    before = [make_event(start_us=rng.randrange(0, 1000)) for _ in range(400)]
    store.store_many([("edge-01", e, 0) for e in before])
    arrived: list[Event] = []

    def new_events() -> None:
        # Fewer per page than a page holds, so paging ends: some newer than anything paged so
        # far, some landing among the pages still to come, some tying with events already there.
        batch = [make_event(start_us=rng.randrange(0, 2000)) for _ in range(4)]
        batch.append(make_event(start_us=before[len(arrived)].start_us))
        store.store_many([("edge-02", e, 0) for e in batch])
        arrived.extend(batch)

    seen = [str(r.id) for r in all_pages(store, EventFilter(limit=7), new_events)]
    assert len(arrived) > 100
    assert len(seen) == len(set(seen)), "an event appeared on two pages"
    assert {str(e.id) for e in before} <= set(seen), "an event that was there was skipped"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"limit": 0}, "limit must be 1 to 500"),
        ({"limit": 501}, "limit must be 1 to 500"),
        ({"kinds": ()}, "at least one kind"),
        ({"since_us": 10, "until_us": 9}, "since_us must not be after until_us"),
        ({"cursor": "not a cursor"}, "invalid cursor"),
        ({"cursor": Position(5, uuid.uuid4()).cursor()[:-3]}, "invalid cursor"),
        ({"cursor": "LTUvMTIzNDU2NzgtMTIzNC0xMjM0LTEyMzQtMTIzNDU2Nzg5MDEy"}, "invalid cursor"),
    ],
)
def test_bad_filters_say_what_is_wrong(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidFilter, match=message):
        EventFilter(**fields)


def test_cursor_round_trips() -> None:
    position = Position(1_718_000_000_000_000, uuid.uuid4())
    assert Position.from_cursor(position.cursor()) == position


@pytest.mark.parametrize(
    "f",
    [
        EventFilter(),
        EventFilter(camera="gate"),
        EventFilter(roi_id="door"),
        EventFilter(kinds=("anomaly",)),
        EventFilter(kinds=("camera_offline", "camera_online")),
        EventFilter(agent_id="edge-01"),
        EventFilter(acknowledged=False),
        EventFilter(open=True),
        EventFilter(min_score=0.5, since_us=5, until_us=10),
        EventFilter(camera="gate", acknowledged=False, cursor=Position(5, uuid.uuid4()).cursor()),
    ],
    ids=[
        "all",
        "camera",
        "roi",
        "kind",
        "kinds",
        "agent",
        "unacknowledged",
        "open",
        "score-and-time",
        "camera-unacknowledged-after-cursor",
    ],
)
def test_filtered_pages_are_read_from_an_index_in_order(
    store: EventStore, tmp_path: Path, f: EventFilter
) -> None:
    where, args = f.where("e")
    sql = f"SELECT * FROM events e WHERE {where} ORDER BY e.start_us DESC, e.id DESC LIMIT 50"
    with sqlite3.connect(tmp_path / EVENTS_FILE) as conn:
        plan = " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args))
    assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, plan
    assert "TEMP B-TREE" not in plan, f"sorted outside the index: {plan}"


# -- acknowledgement and clips ------------------------------------------------------------------


def test_acknowledging_is_idempotent_and_filters_see_it(store: EventStore) -> None:
    event, other = make_event(), make_event()
    store.store_many([("edge-01", event, 0), ("edge-01", other, 0)])
    acked = store.acknowledge(event.id, "alice", now_us=100)
    assert (acked.acknowledged_by, acked.acknowledged_us) == ("alice", 100)
    again = store.acknowledge(event.id, "bob", now_us=200)
    assert (again.acknowledged_by, again.acknowledged_us) == ("alice", 100)

    assert [r.id for r in store.query(EventFilter(acknowledged=True)).items] == [event.id]
    assert [r.id for r in store.query(EventFilter(acknowledged=False)).items] == [other.id]
    assert store.counts()["unacknowledged"] == 1
    with pytest.raises(UnknownEvent, match="no event"):
        store.acknowledge(uuid.uuid4(), "alice", now_us=300)


def test_a_clip_links_to_its_event_whichever_arrives_first(store: EventStore) -> None:
    early_clip, late_clip, own_clip = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    early, late, named = make_event(), make_event(), make_event(clip_id=own_clip)

    store.link_clip(early.id, early_clip)  # the clip completed before its event came
    store.store_many([("edge-01", e, 0) for e in (early, late, named)])
    store.link_clip(late.id, late_clip)
    store.link_clip(late.id, late_clip)  # repeats are harmless

    def clip(e: Event) -> tuple[uuid.UUID | None, bool]:
        record = store.get(e.id)
        assert record is not None
        return record.clip_id, record.clip_complete

    assert clip(early) == (early_clip, True)
    assert clip(late) == (late_clip, True)
    assert clip(named) == (own_clip, False)  # named by the event, not received yet
    store.link_clip(None, own_clip)  # its manifest did not name the event
    assert clip(named) == (own_clip, True)
    assert {r.id: r.clip_complete for r in store.query(EventFilter()).items} == {
        early.id: True, late.id: True, named.id: True,
    }  # fmt: skip


def test_counts_by_kind(store: EventStore) -> None:
    kinds: list[EventKind] = ["anomaly", "anomaly", "camera_offline"]
    events = [make_event(kind=k) for k in kinds]
    store.store_many([("edge-01", e, 0) for e in events])
    store.acknowledge(events[0].id, "alice", 1)
    counts = store.counts()
    assert counts["by_kind"] == {"anomaly": 2, "camera_offline": 1}
    assert (counts["total"], counts["unacknowledged"]) == (3, 2)


# -- threads ------------------------------------------------------------------------------------


def test_concurrent_writers_store_each_id_exactly_once(store: EventStore) -> None:
    events = [make_event(start_us=i) for i in range(2000)]
    writers, new_counts, errors = 4, [0] * 4, []
    reads = 0
    done = threading.Event()

    def write(n: int) -> None:
        try:
            mine = events[:]
            random.Random(n).shuffle(mine)  # every writer sends every event, in its own order
            for i in range(0, len(mine), 50):
                new_counts[n] += store.store_many([(f"edge-0{n}", e, 0) for e in mine[i : i + 50]])
        except Exception as exc:
            errors.append(exc)

    def read() -> None:
        nonlocal reads
        try:
            while not done.is_set():
                page = store.query(EventFilter(limit=100))
                assert len({r.id for r in page.items}) == len(page.items)
                store.counts()
                reads += 1
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    reader = threading.Thread(target=read)
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    done.set()
    reader.join(10)
    assert not errors, errors
    assert reads > 0
    assert sum(new_counts) == len(events)  # each id reported new to exactly one writer
    counts = store.counts()
    assert counts["total"] == len(events)
    assert counts["duplicates"] == (writers - 1) * len(events)


def test_a_closing_roi_event_updates_the_one_sent_when_it_opened(store: EventStore) -> None:
    opened = make_event(peak_score=0.9)
    assert store.store("edge-01", opened, received_us=10) is True
    closed = opened.model_copy(
        update={"end_us": opened.end_us + 3_000_000, "peak_score": 2.5, "clip_id": uuid.uuid4()}
    )
    assert store.store("edge-02", closed, received_us=20) is False  # not the same agent's
    assert store.store("edge-01", closed, received_us=20) is True
    assert store.store("edge-01", closed, received_us=30) is False  # a plain repeat
    assert store.store("edge-01", opened, received_us=40) is False  # an older state
    record = store.get(opened.id)
    assert record is not None
    assert (record.end_us, record.peak_score, record.clip_id) == (
        closed.end_us, 2.5, closed.clip_id,
    )  # fmt: skip
    assert record.received_us == 10 and store.counts()["duplicates"] == 3


# -- open events, the change feed, alarms, older databases ---------------------------------------


def test_an_event_stored_open_ends_closed_and_a_late_open_repeat_does_not_reopen_it(
    store: EventStore,
) -> None:
    start = 1_718_000_000_000_000
    opened = make_event(start_us=start, end_us=start, peak_us=start, open=True, threshold=1.0,
                        scores=[(start, 1.5)])  # fmt: skip
    assert store.store("edge-01", opened, 10) is True
    # The closing message may end where the opening one did: closing is news of its own.
    closed = opened.model_copy(update={"open": False, "scores": [(start - 1, 0.2), (start, 1.5)]})
    assert store.store("edge-01", closed, 20) is True
    still_open_later = opened.model_copy(update={"end_us": start + 5_000_000})
    for late in (opened, still_open_later):  # a repeat of the opening, or a later "still open"
        assert store.store("edge-01", late, 30) is False
    record = store.get(opened.id)
    assert record is not None
    assert (record.open, record.end_us, record.threshold) == (False, start, 1.0)
    assert record.scores == [(start - 1, 0.2), (start, 1.5)]
    assert [r.id for r in store.query(EventFilter(open=False)).items] == [opened.id]
    assert store.query(EventFilter(open=True)).items == []


def test_every_change_takes_the_next_number_of_the_change_feed(store: EventStore) -> None:
    assert (store.last_seq, store.changes(0, 10)) == (0, [])
    first, second = make_event(start_us=2), make_event(start_us=1, open=True)
    store.store_many([("edge-01", first, 0), ("edge-01", second, 0)])
    assert store.last_seq == 2
    assert [(seq, r.id) for seq, r in store.changes(0, 10)] == [(1, first.id), (2, second.id)]

    store.store("edge-01", first, 1)  # a repeat changes nothing
    store.acknowledge(first.id, "alice", 5)
    store.acknowledge(first.id, "bob", 6)  # nor does acknowledging again
    assert [(seq, r.id, r.acknowledged_by) for seq, r in store.changes(2, 10)] == [
        (3, first.id, "alice")
    ]
    closed = second.model_copy(update={"open": False, "end_us": second.end_us + 1})
    store.store("edge-01", closed, 2)
    own_clip = uuid.uuid4()
    named = make_event(start_us=3, clip_id=own_clip)
    store.store("edge-01", named, 3)
    store.link_clip(first.id, uuid.uuid4())  # the clip its manifest names
    store.link_clip(None, own_clip)  # the clip the event named itself
    store.link_clip(None, own_clip)  # repeats are harmless
    changes = store.changes(3, 10)
    # An event changed twice (stored at 5, its clip completed at 7) shows once, at its latest.
    assert [(seq, r.id) for seq, r in changes] == [(4, second.id), (6, first.id), (7, named.id)]
    assert changes[0][1].open is False
    assert changes[1][1].clip_complete and changes[2][1].clip_complete
    assert [seq for seq, _ in store.changes(3, 2)] == [4, 6]  # in order, `limit` at most
    assert store.last_seq == 7


def test_the_change_feed_goes_on_after_reopening(tmp_path: Path) -> None:
    first = EventStore.open(tmp_path)
    first.store("edge-01", make_event(), 0)
    first.close()
    again = EventStore.open(tmp_path)
    try:
        assert again.last_seq == 1
        later = make_event()
        again.store("edge-01", later, 0)
        assert [(seq, r.id) for seq, r in again.changes(1, 10)] == [(2, later.id)]
    finally:
        again.close()


def test_cameras_with_an_open_detection_event_are_in_alarm(
    store: EventStore, tmp_path: Path
) -> None:
    events = [
        make_event(camera="cam1", kind="anomaly", open=True),
        make_event(camera="cam1", kind="anomaly", open=True),
        make_event(camera="cam2", kind="camera_moved", open=True),
        make_event(camera="cam3", kind="view_lost", open=True),
        make_event(camera="cam4", kind="anomaly", open=False),
        make_event(camera="cam5", kind="camera_offline", open=True),  # not a detection kind
    ]
    store.store_many([("edge-01", e, 0) for e in events])
    assert store.alarm_cameras() == {"cam1", "cam2", "cam3"}
    closed = events[2].model_copy(update={"open": False, "end_us": events[2].end_us + 1})
    store.store("edge-01", closed, 1)
    assert store.alarm_cameras() == {"cam1", "cam3"}
    with sqlite3.connect(tmp_path / EVENTS_FILE) as conn:
        plan = " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {ALARM_CAMERAS_SQL}"))
    assert "USING INDEX idx_events_open" in plan, plan


# The events table as the first release made it, and a row it held.
_FIRST_SCHEMA = """
CREATE TABLE events (id TEXT PRIMARY KEY, agent_id TEXT NOT NULL, camera TEXT NOT NULL,
    roi_id TEXT, kind TEXT NOT NULL, start_us INTEGER NOT NULL, end_us INTEGER NOT NULL,
    peak_us INTEGER NOT NULL, peak_score FLOAT NOT NULL, detail TEXT, box TEXT,
    model_version TEXT, adjustment TEXT NOT NULL, clip_id TEXT, received_us INTEGER NOT NULL,
    acknowledged_by TEXT, acknowledged_us INTEGER);
CREATE TABLE complete_clips (clip_id TEXT PRIMARY KEY, event_id TEXT);
"""


def test_a_database_from_before_open_events_keeps_working(tmp_path: Path) -> None:
    old = uuid.uuid4()
    with sqlite3.connect(tmp_path / EVENTS_FILE) as conn:
        conn.executescript(_FIRST_SCHEMA)
        conn.execute(
            "INSERT INTO events (id, agent_id, camera, kind, start_us, end_us, peak_us,"
            " peak_score, adjustment, received_us) VALUES (?, 'edge-01', 'gate', 'anomaly',"
            " 5, 6, 5, 0.7, ?, 9)",
            (str(old), IDENTITY.model_dump_json()),
        )
    conn.close()
    store = EventStore.open(tmp_path)
    try:
        record = store.get(old)
        assert record is not None
        assert (record.open, record.threshold, record.scores, record.peak_score) == (
            False, None, [], 0.7,
        )  # fmt: skip
        assert (store.last_seq, store.changes(0, 10)) == (0, [])
        new = make_event(open=True, threshold=0.5, scores=[(1, 0.1)], start_us=1, peak_us=1)
        store.store("edge-01", new, 10)
        assert [r.id for r in store.query(EventFilter(open=True)).items] == [new.id]
        store.acknowledge(old, "alice", 11)
        assert [(seq, r.id) for seq, r in store.changes(0, 10)] == [(1, new.id), (2, old)]
    finally:
        store.close()
