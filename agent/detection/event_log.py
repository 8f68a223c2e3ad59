"""The agent's own record of its events (and their snapshots), so a standalone agent can show
them and a fleet agent can serve an event's snapshot to the controller.

Events are rare, so each call opens its own SQLite connection: any thread may call.
An ROI event is written when it opens and again when it closes, under the same id.
"""

from __future__ import annotations

import os
from pathlib import Path
from uuid import UUID

import sqlite_utils

from fleet.messages import Event

FILE = "events.db"
SNAPSHOTS = "snapshots"


class EventLog:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE
        self.snapshots = data_dir / SNAPSHOTS
        self.snapshots.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db["events"].create(
                {"id": str, "camera": str, "kind": str, "start_us": int, "json": str},
                pk="id", if_not_exists=True,
            )  # fmt: skip
            db["events"].create_index(["camera", "start_us"], if_not_exists=True)

    def _db(self) -> sqlite_utils.Database:
        return sqlite_utils.Database(self.path)

    def record(self, event: Event, snapshot: bytes | None = None) -> None:
        """Keep `event` (replacing an earlier state of it) and its snapshot JPEG."""
        if snapshot is not None:
            tmp = self.snapshot_path(event.id).with_suffix(".tmp")
            tmp.write_bytes(snapshot)
            os.replace(tmp, self.snapshot_path(event.id))
        row = {"id": str(event.id), "camera": event.camera, "kind": event.kind,
               "start_us": event.start_us, "json": event.model_dump_json()}  # fmt: skip
        with self._db() as db:
            db["events"].upsert(row, pk="id")

    def events(
        self, camera: str | None = None, since_us: int | None = None, limit: int = 100
    ) -> list[Event]:
        """Newest first."""
        where: list[str] = []
        args: list[object] = []
        if camera is not None:
            where.append("camera = ?")
            args.append(camera)
        if since_us is not None:
            where.append("start_us >= ?")
            args.append(since_us)
        with self._db() as db:
            rows = db["events"].rows_where(" and ".join(where) or None, args,
                                           order_by="start_us desc", limit=limit)  # fmt: skip
            return [Event.model_validate_json(r["json"]) for r in rows]

    def open_events(self, camera: str | None = None) -> list[Event]:
        """Events whose latest state says they are still going on (of `camera`, or all)."""
        where = "json_extract(json, '$.open') = 1" + ("" if camera is None else " and camera = ?")
        with self._db() as db:
            rows = db["events"].rows_where(where, [] if camera is None else [camera])
            return [Event.model_validate_json(r["json"]) for r in rows]

    def snapshot_path(self, event_id: UUID) -> Path:
        return self.snapshots / f"{event_id}.jpg"
