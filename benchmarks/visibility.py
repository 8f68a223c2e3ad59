"""When published events become queryable through the controller's API, and how fast the API
answers meanwhile.

`Ledger` holds every published event id with its publish time (from the simulated agents), the
time the API first showed it and the time it was found committed in events.db (`CommitTail`,
which reads the file and costs the controller nothing: the controller's own share of the delay).
`VisibilityPoller` reads GET /api/v1/events newest first,
following `next_cursor` down to the oldest event still unseen, every `interval_s`; an event is
visible at the moment the response that first lists it arrived (so API latency is included, as
an operator's screen would see it). `ApiProbe` meanwhile asks for an operator's view, the fleet
health and the first page of events, twice a second. `ApiTimer` records every call's latency.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx

from benchmarks.agent_traffic import EVENT_SPAN_US
from fleet.utc import now_us

POLL_LIMIT: Final = 500  # the API's largest page
# Unseen events older than this stop holding the poller's window open: they count as not seen
# (infinitely late) unless a later read happens to list them. Far beyond the 1 s goal.
HORIZON_US: Final = 5_000_000
MAX_PAGES: Final = 40
PROBE_INTERVAL_S: Final = 0.5
POLL: Final = "events (poller)"


@dataclass
class Ledger:
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _published: dict[str, tuple[str, int]] = field(default_factory=dict)  # id: (step, at_us)
    _unseen: dict[str, int] = field(default_factory=dict)  # id: published_us
    _visible: dict[str, int] = field(default_factory=dict)  # id: first seen at_us
    _committed: dict[str, int] = field(default_factory=dict)  # id: first found in the db at_us
    _uncommitted: set[str] = field(default_factory=set)
    _recent: deque[int] = field(default_factory=deque)  # publish times within the horizon

    def add(self, step: str, events: list[tuple[str, int]]) -> None:
        with self._lock:
            for event_id, published_us in events:
                self._published[event_id] = (step, published_us)
                self._unseen[event_id] = published_us
                self._uncommitted.add(event_id)
                self._recent.append(published_us)
            # Roughly in publish order (two senders): trimming the front is close enough.
            floor = now_us() - 2 * HORIZON_US
            while self._recent and self._recent[0] < floor:
                self._recent.popleft()

    def window(self, now: int) -> tuple[int, int] | None:
        """The publish time of the oldest event not yet seen (within the horizon) and how many
        events were published since: what a read must cover. None if all were seen."""
        floor = now - HORIZON_US
        with self._lock:
            times = [us for us in self._unseen.values() if us >= floor]
            if not times:
                return None
            oldest = min(times)
            return oldest, sum(us >= oldest for us in self._recent)

    def seen(self, event_ids: list[str], at_us: int) -> None:
        with self._lock:
            for event_id in event_ids:
                if self._unseen.pop(event_id, None) is not None:
                    self._visible[event_id] = at_us

    def committed(self, event_ids: list[str], at_us: int) -> None:
        with self._lock:
            for event_id in event_ids:
                self._committed.setdefault(event_id, at_us)
                self._uncommitted.discard(event_id)

    def unseen(self) -> int:
        """Published events the API has not listed yet."""
        with self._lock:
            return len(self._unseen)

    def uncommitted(self) -> int:
        """Published events not found in events.db yet."""
        with self._lock:
            return len(self._uncommitted)

    def latencies_ms(self, step: str, committed: bool = False) -> list[float | None]:
        """Publish-to-queryable (or to committed) of each event published in `step`; None if
        never seen."""
        when = self._committed if committed else self._visible
        with self._lock:
            return [
                None if (at := when.get(event_id)) is None else (at - published) / 1000
                for event_id, (s, published) in self._published.items()
                if s == step
            ]


class CommitTail(threading.Thread):
    """When each event was committed to events.db, found without asking the controller: new
    rows by rowid (one writer commits them in order), read-only, every `interval_s`."""

    def __init__(self, path: Path, ledger: Ledger, interval_s: float = 0.02) -> None:
        super().__init__(name="commit-tail", daemon=True)
        self.path, self.ledger, self.interval_s = path, ledger, interval_s
        self._stop_event = threading.Event()

    def run(self) -> None:
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        try:
            (last,) = db.execute("SELECT coalesce(max(rowid), 0) FROM events").fetchone()
            while not self._stop_event.wait(self.interval_s):
                rows = db.execute(
                    "SELECT rowid, id FROM events WHERE rowid > ? ORDER BY rowid", (last,)
                ).fetchall()
                if rows:
                    last = rows[-1][0]
                    self.ledger.committed([r[1].replace("-", "") for r in rows], now_us())
        finally:
            db.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


@dataclass
class Outcome:
    ok: bool = False
    rows: int = 0  # events listed


@dataclass(frozen=True)
class ApiCall:
    at_us: int
    what: str
    ms: float
    outcome: Outcome


@dataclass
class ApiTimer:
    _lock: threading.Lock = field(default_factory=threading.Lock)
    calls: list[ApiCall] = field(default_factory=list)

    @contextmanager
    def timed(self, what: str) -> Iterator[Outcome]:
        """Time the block, which fills in the outcome."""
        outcome = Outcome()
        t0 = time.perf_counter()
        try:
            yield outcome
        finally:
            ms = (time.perf_counter() - t0) * 1000
            with self._lock:
                self.calls.append(ApiCall(now_us(), what, ms, outcome))

    def between(self, t0_us: int, t1_us: int) -> list[ApiCall]:
        with self._lock:
            return [c for c in self.calls if t0_us <= c.at_us <= t1_us]


class _Loop(threading.Thread):
    def __init__(self, api: httpx.Client, timer: ApiTimer, interval_s: float, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.api, self.timer, self.interval_s = api, timer, interval_s
        self.paused = threading.Event()
        self._stop_event = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        while not self._stop_event.is_set():
            started = time.monotonic()
            if not self.paused.is_set():
                try:
                    self.once()
                except (httpx.HTTPError, ValueError, KeyError) as exc:  # keep measuring
                    self.errors.append(f"{type(exc).__name__}: {exc}")
            self._stop_event.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def once(self) -> None:
        raise NotImplementedError

    def get(self, what: str, path: str, params: dict[str, str | int]) -> dict[str, Any] | None:
        """The answer's JSON, or None (counted in `errors`) if it was not a success."""
        with self.timer.timed(what) as outcome:
            r = self.api.get(path, params=params)
            outcome.ok = r.is_success
            body: dict[str, Any] = r.json() if r.is_success else {}
            outcome.rows = len(body.get("items", ()))
        if not r.is_success:
            self.errors.append(f"GET {path}: HTTP {r.status_code}")
            return None
        return body

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


class VisibilityPoller(_Loop):
    def __init__(self, api: httpx.Client, timer: ApiTimer, ledger: Ledger, interval_s: float):
        super().__init__(api, timer, interval_s, "visibility-poller")
        self.ledger = ledger

    def once(self) -> None:
        window = self.ledger.window(now_us())
        if window is None:
            return
        oldest, count = window
        # Events are ordered by start_us, which is EVENT_SPAN_US before their publish time.
        floor = oldest - EVENT_SPAN_US
        # A page just large enough for the window (plus what is published meanwhile): the
        # poller should load the controller as little as it can.
        params: dict[str, str | int] = {"limit": min(POLL_LIMIT, count + count // 4 + 10)}
        for _ in range(MAX_PAGES):
            page = self.get(POLL, "/api/v1/events", params)
            at = now_us()
            if page is None:
                return
            items = page["items"]
            self.ledger.seen([item["id"].replace("-", "") for item in items], at)
            if page["next_cursor"] is None or not items or items[-1]["start_us"] < floor:
                return
            params = {"limit": POLL_LIMIT, "cursor": page["next_cursor"]}


class ApiProbe(_Loop):
    """What an operator's screen asks for, alternately."""

    def __init__(self, api: httpx.Client, timer: ApiTimer) -> None:
        super().__init__(api, timer, PROBE_INTERVAL_S, "api-probe")
        self._turn = 0

    def once(self) -> None:
        self._turn += 1
        if self._turn % 2:
            self.get("health", "/api/v1/fleet/health", {})
        else:
            self.get("events", "/api/v1/events", {})
