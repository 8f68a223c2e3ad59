"""The presence session number: one more on every connection attempt, kept across restarts.

The online status and the last will of one connection carry the same number, and the
controller lets only a higher number (or the end of the same session) replace what it holds,
so a will the broker delivers late cannot mark a reconnected agent offline.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Final

log = logging.getLogger("camfleet.agent.fleet")

SESSION_FILE: Final = "session"


class SessionCounter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._current = self._load()

    @classmethod
    def open(cls, data_dir: Path) -> SessionCounter:
        return cls(data_dir / SESSION_FILE)

    @property
    def current(self) -> int:
        """The session of the latest connection attempt; 0 before the first."""
        return self._current

    def next(self) -> int:
        """Count a connection attempt: the new number is on disk before it is used."""
        with self._lock:
            value = self._current + 1
            tmp = self.path.with_suffix(".tmp")
            with tmp.open("w") as f:
                f.write(f"{value}\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            self._current = value
            return value

    def _load(self) -> int:
        try:
            return int(self.path.read_text().strip())
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            # Restarting from 0 would make every status look older than the controller's;
            # the clock in seconds is above any count a real agent reaches.
            seed = int(time.time())
            log.error("session counter %s unusable (%s); continuing from %d", self.path, exc, seed)
            return seed
