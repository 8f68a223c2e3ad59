"""Events in DATA/events.db, stored idempotently by id (delivery is at least once).

The MQTT link writes (in batches, from its own thread) while HTTP threads query: see
`controller.events.database` for how the threads share the file.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import sqlite_utils

from controller.events.database import Database
from controller.events.query import EventFilter, Position
from controller.events.records import EventPage, EventRecord, UnknownEvent
from fleet.messages import Event

EVENTS_FILE: Final = "events.db"

# Columns as stored, in the order of the INSERT.
_EVENT_COLUMNS: Final = (
    "id", "agent_id", "camera", "roi_id", "kind", "start_us", "end_us", "peak_us", "peak_score",
    "detail", "box", "model_version", "adjustment", "clip_id", "received_us",
)  # fmt: skip
# An ROI event is sent when it opens and again when it closes, under the same id: the later
# state (from the same agent and camera, ending later or now naming its clip) replaces what was
# stored; any other repeat is ignored.
_INSERT: Final = (
    f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(_EVENT_COLUMNS))})"
    " ON CONFLICT(id) DO UPDATE SET end_us = excluded.end_us, peak_us = excluded.peak_us,"
    " peak_score = excluded.peak_score, detail = excluded.detail, box = excluded.box,"
    " adjustment = excluded.adjustment, clip_id = coalesce(excluded.clip_id, events.clip_id)"
    " WHERE excluded.agent_id = events.agent_id AND excluded.camera = events.camera"
    " AND excluded.kind = events.kind AND excluded.start_us = events.start_us"
    " AND (excluded.end_us > events.end_us"
    " OR (excluded.clip_id IS NOT NULL AND events.clip_id IS NULL))"
)
# An event's clip is its own, or else a complete clip whose manifest names the event; the outer
# query says whether that clip is complete. Columns are named as EventRecord's fields.
_SELECT: Final = """
SELECT q.*, EXISTS (SELECT 1 FROM complete_clips c WHERE c.clip_id = q.clip_id) AS clip_complete
FROM (
    SELECT e.id, e.agent_id, e.camera, e.roi_id, e.kind, e.start_us, e.end_us, e.peak_us,
        e.peak_score, e.detail, e.box, e.model_version, e.adjustment,
        coalesce(e.clip_id,
            (SELECT min(c.clip_id) FROM complete_clips c WHERE c.event_id = e.id)) AS clip_id,
        e.received_us, e.acknowledged_by, e.acknowledged_us
    FROM events e WHERE {where} ORDER BY e.start_us DESC, e.id DESC LIMIT ?
) q ORDER BY q.start_us DESC, q.id DESC
"""


class EventStore:
    def __init__(self, path: Path) -> None:
        self._db = Database(path, _create_schema)
        self._duplicates = 0  # repeats of a known id since opening (guarded by the write lock)

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
        with self._db.write() as conn:
            new = conn.executemany(_INSERT, rows).rowcount
            self._duplicates += len(rows) - new
        return new

    def acknowledge(self, event_id: UUID, user: str, now_us: int) -> EventRecord:
        """Mark an event acknowledged; acknowledging it again keeps the first acknowledgement."""
        with self._db.write() as conn:
            conn.execute(
                "UPDATE events SET acknowledged_by = ?, acknowledged_us = ?"
                " WHERE id = ? AND acknowledged_us IS NULL",
                (user, now_us, str(event_id)),
            )
            found = _select(conn, "e.id = ?", [str(event_id)], 1)
        if not found:
            raise UnknownEvent(f"no event {event_id}")
        return found[0]

    def link_clip(self, event_id: UUID | None, clip_id: UUID) -> None:
        """Record that clip `clip_id` is complete (and belongs to `event_id` when its manifest
        names one), so events show it. Idempotent; the event may arrive before or after."""
        with self._db.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO complete_clips (clip_id, event_id) VALUES (?, ?)",
                (str(clip_id), None if event_id is None else str(event_id)),
            )

    # -- reading ----------------------------------------------------------------------------------

    def get(self, event_id: UUID) -> EventRecord | None:
        with self._db.read() as conn:
            found = _select(conn, "e.id = ?", [str(event_id)], 1)
        return found[0] if found else None

    def query(self, f: EventFilter) -> EventPage:
        """The events matching `f`, newest first, from its cursor on."""
        where, args = f.where("e")
        with self._db.read() as conn:
            # One more than asked tells whether another page exists.
            items = _select(conn, where, args, f.limit + 1)
        if len(items) <= f.limit:
            return EventPage(items=items, next_cursor=None)
        last = items[f.limit - 1]
        return EventPage(
            items=items[: f.limit], next_cursor=Position(last.start_us, last.id).cursor()
        )

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


def _row(agent_id: str, e: Event, received_us: int) -> tuple[object, ...]:
    return (
        str(e.id), agent_id, e.camera, e.roi_id, e.kind, e.start_us, e.end_us, e.peak_us,
        e.peak_score, e.detail, None if e.box is None else e.box.model_dump_json(),
        e.model_version, e.adjustment.model_dump_json(),
        None if e.clip_id is None else str(e.clip_id), received_us,
    )  # fmt: skip


def _select(
    conn: sqlite3.Connection, where: str, args: list[object], limit: int
) -> list[EventRecord]:
    cur = conn.execute(_SELECT.format(where=where), [*args, limit])
    names = [d[0] for d in cur.description]
    records = []
    for values in cur:
        fields = dict(zip(names, values, strict=True))
        fields["box"] = None if fields["box"] is None else json.loads(fields["box"])
        fields["adjustment"] = json.loads(fields["adjustment"])
        records.append(EventRecord.model_validate(fields))
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
    # Every query orders by (start_us, id); each equality filter gets an index that also
    # yields that order. Scores and end times are checked on the rows the scan visits.
    events.create_index(["start_us", "id"], if_not_exists=True)
    for column in ("camera", "roi_id", "kind", "agent_id"):
        events.create_index([column, "start_us", "id"], if_not_exists=True)
    # The inbox view (unacknowledged, newest first) and its count read only this small index.
    db.execute(
        "CREATE INDEX IF NOT EXISTS idx_events_unacknowledged ON events (start_us, id)"
        " WHERE acknowledged_us IS NULL"
    )
    db.table("complete_clips").create(
        {"clip_id": str, "event_id": str}, pk="clip_id", if_not_exists=True
    )
    db.table("complete_clips").create_index(["event_id"], if_not_exists=True)
