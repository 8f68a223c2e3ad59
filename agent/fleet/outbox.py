"""The outbox: a durable FIFO of MQTT messages in DATA/outbox.db (SQLite).

Whatever must reach the controller (events, clips, command acks, discovery reports) is put here
first; `OutboxSender` publishes it oldest first and deletes a row only once the broker has
acknowledged it, so broker outages and agent restarts lose nothing (delivery at least once).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from fleet.messages import BaseMessage, encode_message
from fleet.topics import TOPICS, TopicKind, build_topic
from fleet.utc import now_us

OUTBOX_FILE: Final = "outbox.db"

Qos = Literal[0, 1, 2]


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    topic: str
    payload: bytes
    qos: Qos = 1
    retain: bool = False

    @classmethod
    def of(cls, agent_id: str, kind: TopicKind, msg: BaseMessage) -> OutboxMessage:
        """The message on the agent's `kind` topic, with that topic's QoS and retain flag."""
        spec = TOPICS[kind]
        return cls(build_topic(agent_id, kind), encode_message(msg), spec.qos, spec.retained)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int  # increases with every put and is never reused: the sender's cursor relies on it
    message: OutboxMessage
    created_us: int


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth: int  # messages waiting for a PUBACK
    bytes: int  # their payload bytes
    oldest_age_s: float | None  # how long the oldest has waited; None when empty


def connect_db(path: Path) -> sqlite3.Connection:
    """A connection usable from any thread (callers serialise), in autocommit mode."""
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
    # WAL + NORMAL: an agent crash loses nothing committed; only a power cut may lose the
    # last transactions.
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


class Outbox:
    """One SQLite connection behind a lock: puts come from several threads (HTTP, commands,
    clips), the sender reads and deletes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn = connect_db(path)
        # AUTOINCREMENT: ids are never reused, even after the table has been emptied.
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL,"
            " retain INTEGER NOT NULL, created_us INTEGER NOT NULL)"
        )

    @classmethod
    def open(cls, data_dir: Path) -> Outbox:
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(data_dir / OUTBOX_FILE)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def put(self, message: OutboxMessage) -> None:
        self.put_all([message])

    def put_all(self, messages: Iterable[OutboxMessage]) -> int:
        """Queue messages in one transaction (all or none), in order; returns how many."""
        created = now_us()
        rows = (
            (m.topic, m.payload, m.qos, int(m.retain), created)
            for m in messages  # may be a generator reading a file: consumed inside the lock
        )
        with self._tx():
            cur = self._conn.executemany(
                "INSERT INTO messages (topic, payload, qos, retain, created_us)"
                " VALUES (?, ?, ?, ?, ?)",
                rows,
            )
        return cur.rowcount

    def after(self, cursor: int, limit: int) -> list[OutboxRow]:
        """The oldest `limit` rows with an id above `cursor`."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, topic, payload, qos, retain, created_us FROM messages WHERE id > ?"
                " ORDER BY id LIMIT ?",
                (cursor, limit),
            ).fetchall()
        return [
            OutboxRow(id_, OutboxMessage(topic, bytes(payload), qos, bool(retain)), created)
            for id_, topic, payload, qos, retain, created in rows
        ]

    def delete(self, ids: Iterable[int]) -> None:
        with self._tx():
            self._conn.executemany("DELETE FROM messages WHERE id = ?", ((i,) for i in ids))

    @contextmanager
    def _tx(self) -> Iterator[None]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def stats(self) -> OutboxStats:
        with self._lock:
            depth, size, oldest = self._conn.execute(
                "SELECT count(*), coalesce(sum(length(payload)), 0), min(created_us) FROM messages"
            ).fetchone()
        age = None if oldest is None else max(0.0, (now_us() - oldest) / 1e6)
        return OutboxStats(depth, size, age)
