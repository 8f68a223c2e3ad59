"""One SQLite file shared by threads: a single writer connection behind a lock, pooled readers.

WAL lets readers (HTTP threads) run beside the writer (the MQTT link) without waiting for it;
sqlite3 connections are not safe to use from two threads at once, so each is held by one thread
at a time: the writer under its lock, a reader for the length of one `read()` block.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils


class Database:
    def __init__(
        self,
        path: Path,
        create_schema: Callable[[sqlite_utils.Database], None],
        busy_timeout_s: float = 10.0,
    ) -> None:
        self.path = path
        self._timeout = busy_timeout_s
        self._write_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._idle_readers: list[sqlite3.Connection] = []
        self._readers: list[sqlite3.Connection] = []
        self._writer = self._connect()
        db = sqlite_utils.Database(self._writer)
        db.enable_wal()
        # WAL + NORMAL: a power cut may lose the last transactions, never corrupts the file.
        self._writer.execute("PRAGMA synchronous=NORMAL")
        with self._writer:
            create_schema(db)

    def _connect(self) -> sqlite3.Connection:
        # check_same_thread=False: connections move between threads, one holder at a time.
        return sqlite3.connect(self.path, timeout=self._timeout, check_same_thread=False)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """The writer connection inside one transaction (committed on success)."""
        with self._write_lock, self._writer:
            yield self._writer

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection for this block; statements see committed data only."""
        with self._pool_lock:
            conn = self._idle_readers.pop() if self._idle_readers else None
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only=ON")
            with self._pool_lock:
                self._readers.append(conn)
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.rollback()
            with self._pool_lock:
                self._idle_readers.append(conn)

    def close(self) -> None:
        """Close every connection; call once no thread uses the database any more."""
        with self._pool_lock:
            readers, self._readers, self._idle_readers = self._readers, [], []
        for conn in readers:
            conn.close()
        with self._write_lock:
            self._writer.close()
