"""Events in DATA/events.db, stored idempotently by id (delivery is at least once).

The MQTT link writes (in batches, from its own thread) while HTTP threads query: see
`controller.events.database` for how the threads share the file. Every change to an event
takes the next number of one growing sequence, kept on its row, so a change feed (the web
view's live updates) reads what changed since the last number it saw.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, get_args
from uuid import UUID

import sqlite_utils

from controller.events.database import Database
from controller.events.query import EventFilter, Position
from controller.events.records import EventPage, EventRecord, UnknownEvent
from fleet.messages import DetectionKind, Event

EVENTS_FILE: Final = "events.db"

# Columns as stored, in the order of the INSERT (the change's `seq` comes last).
_EVENT_COLUMNS: Final = (
    "id", "agent_id", "camera", "roi_id", "kind", "start_us", "end_us", "peak_us", "peak_score",
    "detail", "box", "model_version", "adjustment", "clip_id", "received_us", "open",
    "threshold", "scores", "seq",
)  # fmt: skip
# An ROI event is sent when it opens and again when it closes, under the same id: the later
# state (from the same agent and camera, ending later, closing it or now naming its clip)
# replaces what was stored; any other repeat is ignored. A late repeat of the opening message
# never reopens a closed event.
_INSERT: Final = (
    f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(_EVENT_COLUMNS))})"
    " ON CONFLICT(id) DO UPDATE SET end_us = excluded.end_us, peak_us = excluded.peak_us,"
    " peak_score = excluded.peak_score, detail = excluded.detail, box = excluded.box,"
    " adjustment = excluded.adjustment, clip_id = coalesce(excluded.clip_id, events.clip_id),"
    " open = excluded.open, threshold = excluded.threshold, scores = excluded.scores,"
    " seq = excluded.seq"
    " WHERE excluded.agent_id = events.agent_id AND excluded.camera = events.camera"
    " AND excluded.kind = events.kind AND excluded.start_us = events.start_us"
    " AND (events.open OR NOT excluded.open)"
    " AND (excluded.end_us > events.end_us OR (events.open AND NOT excluded.open)"
    " OR (excluded.clip_id IS NOT NULL AND events.clip_id IS NULL))"
)
# An event's clip is its own, or else a complete clip whose manifest names the event; the outer
# query says whether that clip is complete. Columns are named as EventRecord's fields, plus the
# row's change `seq`; `order` names output columns, so it applies to both levels.
_SELECT: Final = """
SELECT q.*, EXISTS (SELECT 1 FROM complete_clips c WHERE c.clip_id = q.clip_id) AS clip_complete
FROM (
    SELECT e.id, e.agent_id, e.camera, e.roi_id, e.kind, e.start_us, e.end_us, e.peak_us,
        e.peak_score, e.detail, e.box, e.model_version, e.adjustment,
        coalesce(e.clip_id,
            (SELECT min(c.clip_id) FROM complete_clips c WHERE c.event_id = e.id)) AS clip_id,
        e.received_us, e.acknowledged_by, e.acknowledged_us, e.open, e.threshold, e.scores,
        e.seq
    FROM events e WHERE {where} ORDER BY {order} LIMIT ?
) q ORDER BY {order}
"""
_NEWEST_FIRST: Final = "start_us DESC, id DESC"
_IN_CHANGE_ORDER: Final = "seq"
# An open event of one of these kinds puts its camera in alarm on the web view. Asked every
# second while pages are open, so read from the small index of open events only (left to
# itself, SQLite would walk an index of all events).
ALARM_KINDS: Final = get_args(DetectionKind)
ALARM_CAMERAS_SQL: Final = (
    "SELECT DISTINCT camera FROM events INDEXED BY idx_events_open WHERE open = 1"
    f" AND kind IN ({', '.join(repr(kind) for kind in ALARM_KINDS)})"
)
# Columns added after the first release, with the value existing rows get: a database made
# before them gains them when opened.
_ADDED_COLUMNS: Final[dict[str, tuple[type, object]]] = {
    "open": (int, 0), "threshold": (float, None), "scores": (str, "[]"), "seq": (int, 0),
}  # fmt: skip


class EventStore:
    def __init__(self, path: Path) -> None:
        self._db = Database(path, _create_schema)
        # Writes take this lock until they commit, so `_seq` (the latest change's sequence
        # number) and `_duplicates` (repeats of a known id since opening) move only with data
        # a reader can see.
        self._lock = threading.Lock()
        self._duplicates = 0
        with self._db.read() as conn:
            (last,) = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
        self._seq: int = last

    @classmethod
    def open(cls, data_dir: Path) -> EventStore:
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(data_dir / EVENTS_FILE)

    def close(self) -> None:
        self._db.close()

    # -- writing ----------------------------------------------------------------------------------

    def store(self, agent_id: str, event: Event, received_us: int) -> bool:
        """Store an event; False if its id was already stored (the repeat is ignored, even if
        its content differs, and counted) — unless it is a later state of the same event (see
        _INSERT), which replaces the stored one."""
        return self.store_many([(agent_id, event, received_us)]) == 1

    def store_many(self, items: Sequence[tuple[str, Event, int]]) -> int:
        """Store a batch in one transaction; the number of events that were new or updated."""
        rows = [_row(agent_id, event, received_us) for agent_id, event, received_us in items]
        with self._write() as (conn, seq):
            # One statement per row: each row that changes takes the next sequence number.
            new = sum(seq.took(conn.execute(_INSERT, (*row, seq.next)).rowcount) for row in rows)
            self._duplicates += len(rows) - new
        return new

    def acknowledge(self, event_id: UUID, user: str, now_us: int) -> EventRecord:
        """Mark an event acknowledged; acknowledging it again keeps the first acknowledgement."""
        with self._write() as (conn, seq):
            changed = conn.execute(
                "UPDATE events SET acknowledged_by = ?, acknowledged_us = ?, seq = ?"
                " WHERE id = ? AND acknowledged_us IS NULL",
                (user, now_us, seq.next, str(event_id)),
            ).rowcount
            seq.took(changed)
            found = _select(conn, "e.id = ?", [str(event_id)], 1)
        if not found:
            raise UnknownEvent(f"no event {event_id}")
        return found[0][1]

    def link_clip(self, event_id: UUID | None, clip_id: UUID) -> None:
        """Record that clip `clip_id` is complete (and belongs to `event_id` when its manifest
        names one), so events show it. Idempotent; the event may arrive before or after."""
        with self._write() as (conn, seq):
            added = conn.execute(
                "INSERT OR IGNORE INTO complete_clips (clip_id, event_id) VALUES (?, ?)",
                (str(clip_id), None if event_id is None else str(event_id)),
            ).rowcount
            if not added:
                return
            # The events that may show this clip now: the one its manifest names, and any that
            # named it as their own.
            touched = conn.execute(
                "SELECT id FROM events WHERE id = ? OR clip_id = ?",
                (None if event_id is None else str(event_id), str(clip_id)),
            ).fetchall()
            for (touched_id,) in touched:
                changed = conn.execute(
                    "UPDATE events SET seq = ? WHERE id = ?", (seq.next, touched_id)
                ).rowcount
                seq.took(changed)

    @contextmanager
    def _write(self) -> Iterator[tuple[sqlite3.Connection, _Sequence]]:
        """One write transaction and the sequence numbers its changes take."""
        with self._lock:
            seq = _Sequence(self._seq)
            with self._db.write() as conn:
                yield conn, seq
            self._seq = seq.last  # committed: whoever sees the number can read the rows

    # -- reading ----------------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The sequence number of the latest committed change (0: none yet); it only grows, and
        every change (stored, updated, acknowledged, clip linked) takes the next one. Reading
        it costs no query, so pollers ask `changes` only when it moved."""
        return self._seq

    def changes(self, after_seq: int, limit: int) -> list[tuple[int, EventRecord]]:
        """Events changed after `after_seq`, in change order, each as it is now with the number
        of its latest change (an event changed twice shows once, at its latest number)."""
        with self._db.read() as conn:
            return _select(conn, "e.seq > ?", [after_seq], limit, _IN_CHANGE_ORDER)

    def get(self, event_id: UUID) -> EventRecord | None:
        with self._db.read() as conn:
            found = _select(conn, "e.id = ?", [str(event_id)], 1)
        return found[0][1] if found else None

    def query(self, f: EventFilter) -> EventPage:
        """The events matching `f`, newest first, from its cursor on."""
        where, args = f.where("e")
        with self._db.read() as conn:
            # One more than asked tells whether another page exists.
            items = [record for _, record in _select(conn, where, args, f.limit + 1)]
        if len(items) <= f.limit:
            return EventPage(items=items, next_cursor=None)
        last = items[f.limit - 1]
        return EventPage(
            items=items[: f.limit], next_cursor=Position(last.start_us, last.id).cursor()
        )

    def alarm_cameras(self) -> set[str]:
        """The cameras with an open event of an alarm kind."""
        with self._db.read() as conn:
            return {camera for (camera,) in conn.execute(ALARM_CAMERAS_SQL)}

    def counts(self) -> dict[str, Any]:
        """For metrics: events stored, not yet acknowledged, by kind, and repeats ignored."""
        with self._db.read() as conn:
            by_kind = dict(conn.execute("SELECT kind, count(*) FROM events GROUP BY kind"))
            (unacknowledged,) = conn.execute(
                "SELECT count(*) FROM events WHERE acknowledged_us IS NULL"
            ).fetchone()
        return {
            "total": sum(by_kind.values()),
            "unacknowledged": unacknowledged,
            "by_kind": by_kind,
            "duplicates": self._duplicates,
        }


class _Sequence:
    """Sequence numbers handed out within one write transaction."""

    def __init__(self, last: int) -> None:
        self.last = last

    @property
    def next(self) -> int:
        return self.last + 1

    def took(self, changed_rows: int) -> bool:
        """Whether the statement run with `next` changed its row; if so the number is used."""
        if changed_rows:
            self.last += 1
        return bool(changed_rows)


def _row(agent_id: str, e: Event, received_us: int) -> tuple[object, ...]:
    return (
        str(e.id), agent_id, e.camera, e.roi_id, e.kind, e.start_us, e.end_us, e.peak_us,
        e.peak_score, e.detail, None if e.box is None else e.box.model_dump_json(),
        e.model_version, e.adjustment.model_dump_json(),
        None if e.clip_id is None else str(e.clip_id), received_us, e.open, e.threshold,
        json.dumps(e.scores),
    )  # fmt: skip


def _select(
    conn: sqlite3.Connection,
    where: str,
    args: list[object],
    limit: int,
    order: str = _NEWEST_FIRST,
) -> list[tuple[int, EventRecord]]:
    """(change seq, record) of the events matching `where`, in `order`."""
    cur = conn.execute(_SELECT.format(where=where, order=order), [*args, limit])
    names = [d[0] for d in cur.description]
    records = []
    for values in cur:
        fields = dict(zip(names, values, strict=True))
        seq = fields.pop("seq")
        fields["box"] = None if fields["box"] is None else json.loads(fields["box"])
        fields["adjustment"] = json.loads(fields["adjustment"])
        fields["scores"] = json.loads(fields["scores"])
        records.append((seq, EventRecord.model_validate(fields)))
    return records


def _create_schema(db: sqlite_utils.Database) -> None:
    events = db.table("events")
    events.create(
        {
            "id": str, "agent_id": str, "camera": str, "roi_id": str, "kind": str,
            "start_us": int, "end_us": int, "peak_us": int, "peak_score": float, "detail": str,
            "box": str, "model_version": str, "adjustment": str, "clip_id": str,
            "received_us": int, "acknowledged_by": str, "acknowledged_us": int,
        },
        pk="id",
        not_null=[
            "agent_id", "camera", "kind", "start_us", "end_us", "peak_us", "peak_score",
            "adjustment", "received_us",
        ],
        if_not_exists=True,
    )  # fmt: skip
    # New and old databases alike get the later columns here.
    present = events.columns_dict
    for column, (kind, default) in _ADDED_COLUMNS.items():
        if column not in present:
            events.add_column(column, kind, not_null_default=default)
    # Every query orders by (start_us, id); each equality filter gets an index that also
    # yields that order. Scores and end times are checked on the rows the scan visits.
    events.create_index(["start_us", "id"], if_not_exists=True)
    for column in ("camera", "roi_id", "kind", "agent_id"):
        events.create_index([column, "start_us", "id"], if_not_exists=True)
    # The inbox view (unacknowledged, newest first) and its count read only this small index;
    # so do open events (few at any time), for the open filter and the cameras in alarm.
    db.execute(
        "CREATE INDEX IF NOT EXISTS idx_events_unacknowledged ON events (start_us, id)"
        " WHERE acknowledged_us IS NULL"
    )
    db.execute("CREATE INDEX IF NOT EXISTS idx_events_open ON events (start_us, id) WHERE open = 1")
    # The change feed reads in sequence order; a completed clip finds the events naming it.
    events.create_index(["seq"], if_not_exists=True)
    db.execute(
        "CREATE INDEX IF NOT EXISTS idx_events_clip ON events (clip_id) WHERE clip_id IS NOT NULL"
    )
    db.table("complete_clips").create(
        {"clip_id": str, "event_id": str}, pk="clip_id", if_not_exists=True
    )
    db.table("complete_clips").create_index(["event_id"], if_not_exists=True)
