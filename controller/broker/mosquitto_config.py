"""Mosquitto's config, password file and ACL file, written from the broker identities.

The ACL lines come from the same patterns `controller.broker.acl` enforces in the embedded
broker. Mosquitto re-reads the password and ACL files on SIGHUP (`reload`), so revoking an agent
is: write the files again without it, then reload; its next connection is refused.
"""

from __future__ import annotations

import os
import pwd
import re
import reprlib
import shutil
import signal
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from controller.broker.acl import acl_patterns
from controller.broker.identities import BrokerIdentity

# Usernames end up as whole lines in the password and ACL files, so no separators or spaces.
_USERNAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

# Per-client settings. The one that matters most is the queue: QoS 1 messages beyond
# the in-flight window wait in it, and everything for a disconnected persistent session does
# too. Mosquitto's default of 1000 silently drops the rest (a burst of 20,000 delivered only
# 2,808), and a dropped message that the broker already acknowledged is lost for good, since
# the agent's outbox forgets it on PUBACK.
CLIENT_SETTINGS: Final = (
    # Room for a controller outage of hours at fleet scale: all agents' events queue for it.
    ("max_queued_messages", "1000000"),
    # A memory bound all the same (clip chunks are up to ~5.6 MB each once base64-encoded).
    ("max_queued_bytes", str(4 * 1024**3)),
    # Un-acknowledged QoS 1 sends per client: a wider window than the default 20 keeps a
    # subscriber that acks in batches busy instead of waiting on round trips.
    ("max_inflight_messages", "100"),
    # A ClipChunk carries up to 4 MiB (base64 ~5.6 MB); anything much larger is not ours.
    ("max_packet_size", str(8 * 1024**2)),
    # A persistent session whose client never returns (a removed agent) would queue forever.
    ("persistent_client_expiration", "7d"),
    # One session per identity, named by it: otherwise any agent that knows another's client id
    # could take over its session (losing what was queued for it) or keep kicking it offline.
    # So each connection needs its own identity (one for the controller, one per agent).
    ("use_username_as_clientid", "true"),
)
# Persistence writes the whole in-memory database each time, so not after every message; a
# clean stop (SIGTERM) always writes it, this bounds what a crash can lose.
AUTOSAVE_SECONDS: Final = 30


@dataclass(frozen=True)
class MosquittoFiles:
    config: Path
    passwd: Path
    acl: Path


def write_mosquitto_config(
    out_dir: Path,
    identities: Iterable[BrokerIdentity],
    *,
    port: int,
    host: str = "127.0.0.1",
    persistence_dir: Path | None = None,
    user: str | None = None,
) -> MosquittoFiles:
    """Write mosquitto.conf, passwd and acl into `out_dir` (each replaced atomically).

    Mosquitto must run as `user` (default: whoever writes the files) to read the 0600 password
    and ACL files again on reload; started as root it would otherwise drop to `mosquitto`.
    """
    chosen = list(identities)
    for identity in chosen:
        _check_username(identity.username)
    user = user or pwd.getpwuid(os.geteuid()).pw_name
    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = persistence_dir or out_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    files = MosquittoFiles(out_dir / "mosquitto.conf", out_dir / "passwd", out_dir / "acl")
    _write_private(files.passwd, "".join(f"{i.username}:{i.password_hash}\n" for i in chosen))
    _write_private(files.acl, _acl_text(chosen))
    _write_private(files.config, _config_text(files, host, port, data_dir, user))
    if os.geteuid() == 0 and user != "root":
        for path in (files.passwd, files.acl, files.config, data_dir):
            shutil.chown(path, user)
    return files


def reload(pid: int) -> None:
    """Make the Mosquitto process `pid` re-read its password and ACL files."""
    os.kill(pid, signal.SIGHUP)


def _check_username(username: str) -> None:
    if not _USERNAME.fullmatch(username):
        raise ValueError(
            f"broker username {reprlib.repr(username)} cannot be written to Mosquitto's files: "
            "use 1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or digit"
        )


def _acl_text(identities: list[BrokerIdentity]) -> str:
    lines = ["# camfleet broker ACL, generated: each user only its own topics."]
    for identity in identities:
        patterns = acl_patterns(identity)
        if patterns is None:
            continue  # no `user` block: Mosquitto then denies it everything
        lines += ["", f"user {identity.username}"]
        if identity.role == "controller":
            # Broker statistics for the controller's health view.
            lines.append("topic read $SYS/#")
        lines += _topic_lines(patterns.publish, patterns.subscribe)
    return "\n".join(lines) + "\n"


def _topic_lines(publish: tuple[str, ...], subscribe: tuple[str, ...]) -> list[str]:
    both = [t for t in publish if t in subscribe]
    return (
        [f"topic readwrite {t}" for t in both]
        + [f"topic write {t}" for t in publish if t not in both]
        + [f"topic read {t}" for t in subscribe if t not in both]
    )


def _config_text(files: MosquittoFiles, host: str, port: int, data_dir: Path, user: str) -> str:
    lines = [
        "# camfleet broker, generated by controller.broker.mosquitto_config",
        f"user {user}",
        f"listener {port} {host}",
        "allow_anonymous false",
        f"password_file {files.passwd}",
        f"acl_file {files.acl}",
        "",
        "# QoS 1 queues and persistent sessions survive a broker restart.",
        "persistence true",
        f"persistence_location {data_dir}/",
        f"autosave_interval {AUTOSAVE_SECONDS}",
        "",
        *(f"{name} {value}" for name, value in CLIENT_SETTINGS),
        "",
    ]
    return "\n".join(lines)


def _write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with a 0600 file: a reload never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
