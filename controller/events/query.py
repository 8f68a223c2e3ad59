"""Event queries: the filter, its SQL, and the opaque keyset cursor that pages through results.

Results are ordered newest first by (start_us, id), both descending. A cursor is the position
of the last item of a page, so the next page starts strictly after it: events arriving while a
client pages never shift the pages (no repeats, no skips among the events already there).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Final
from uuid import UUID

from fleet.messages import MAX_SAFE_INT, EventKind

MAX_LIMIT: Final = 500
DEFAULT_LIMIT: Final = 50


class InvalidFilter(ValueError):
    """A filter or cursor that cannot be applied; the text says why."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ended: the (start_us, id) of its last event."""

    start_us: int
    event_id: UUID

    def cursor(self) -> str:
        raw = f"{self.start_us}/{self.event_id}".encode("ascii")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    @classmethod
    def from_cursor(cls, cursor: str) -> Position:
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            start, _, event_id = base64.urlsafe_b64decode(padded).decode("ascii").partition("/")
            position = cls(int(start), UUID(event_id))
        except (ValueError, UnicodeDecodeError, binascii.Error):
            raise InvalidFilter("invalid cursor: pass back a next_cursor unchanged") from None
        if not 0 <= position.start_us <= MAX_SAFE_INT:
            raise InvalidFilter("invalid cursor: pass back a next_cursor unchanged")
        return position


@dataclass(frozen=True, slots=True, kw_only=True)
class EventFilter:
    """Every given field must match; None means "any". Times select events whose
    [start_us, end_us] overlaps [since_us, until_us]."""

    camera: str | None = None
    roi_id: str | None = None
    kinds: tuple[EventKind, ...] | None = None  # any of these kinds
    agent_id: str | None = None
    since_us: int | None = None
    until_us: int | None = None
    min_score: float | None = None
    acknowledged: bool | None = None
    open: bool | None = None  # still going on (True) or over (False)
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidFilter(f"limit must be 1 to {MAX_LIMIT}, got {self.limit}")
        if self.kinds is not None and not self.kinds:
            raise InvalidFilter("kinds must name at least one kind (or be omitted)")
        if (
            self.since_us is not None
            and self.until_us is not None
            and self.since_us > self.until_us
        ):
            raise InvalidFilter("since_us must not be after until_us")
        self.after()  # a bad cursor fails here, before any query runs

    def after(self) -> Position | None:
        """The position the cursor names, or None for the first page."""
        return None if self.cursor is None else Position.from_cursor(self.cursor)

    def where(self, table: str = "e") -> tuple[str, list[object]]:
        """The SQL condition (on columns of `table`) and its parameters."""
        t = table
        conds: list[str] = []
        args: list[object] = []

        def add(sql: str, *values: object) -> None:
            conds.append(sql)
            args.extend(values)

        if self.camera is not None:
            add(f"{t}.camera = ?", self.camera)
        if self.roi_id is not None:
            add(f"{t}.roi_id = ?", self.roi_id)
        if self.kinds is not None and len(self.kinds) == 1:
            add(f"{t}.kind = ?", *self.kinds)
        elif self.kinds is not None:
            # Unary + keeps SQLite off the kind index: reading several kinds from it would mean
            # sorting all their rows, where a scan in time order stops after one page.
            add(f"+{t}.kind IN ({', '.join('?' * len(self.kinds))})", *self.kinds)
        if self.agent_id is not None:
            add(f"{t}.agent_id = ?", self.agent_id)
        if self.since_us is not None:
            add(f"{t}.end_us >= ?", self.since_us)
        if self.until_us is not None:
            add(f"{t}.start_us <= ?", self.until_us)
        if self.min_score is not None:
            add(f"{t}.peak_score >= ?", self.min_score)
        if self.acknowledged is not None:
            add(f"{t}.acknowledged_us IS {'NOT ' if self.acknowledged else ''}NULL")
        if self.open is not None:
            add(f"{t}.open = {int(self.open)}")  # a literal: the partial index on open = 1
        if (after := self.after()) is not None:
            add(f"({t}.start_us, {t}.id) < (?, ?)", after.start_us, str(after.event_id))
        return " AND ".join(conds) or "1", args
