"""The latest desired state on disk (DATA/desired.json), so an agent restarted while the broker
is down runs its last known cameras, within the state's lease. Mode 0600: the stream URLs may
carry camera passwords. The file's modification time is the last contact with the broker
(touched on every heartbeat sent), which is what the lease counts from."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Final

from fleet.messages import DesiredState, MessageError, encode_message, parse_message

log = logging.getLogger("camfleet.agent.fleet")

DESIRED_FILE: Final = "desired.json"


def save_desired(data_dir: Path, desired: DesiredState) -> None:
    """Write atomically, never briefly readable by others."""
    path = data_dir / DESIRED_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(encode_message(desired))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_desired(data_dir: Path) -> DesiredState | None:
    """The cached desired state; None when there is none or it is unusable (logged)."""
    path = data_dir / DESIRED_FILE
    try:
        return parse_message(path.read_bytes(), DesiredState)
    except FileNotFoundError:
        return None
    except (OSError, MessageError) as exc:
        log.error("ignoring %s: %s", path, exc)
        return None


def touch_contact(data_dir: Path) -> None:
    """Note that the broker was reachable now."""
    try:
        os.utime(data_dir / DESIRED_FILE)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.error("cannot note the broker contact: %s", exc)


def cache_age_s(data_dir: Path) -> float | None:
    """Seconds since the last contact with the broker; None without a cache."""
    try:
        return max(0.0, time.time() - (data_dir / DESIRED_FILE).stat().st_mtime)
    except OSError:
        return None
