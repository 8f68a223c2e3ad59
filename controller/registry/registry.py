"""The registry: one SQLite database (sqlite-utils, WAL) behind one lock.

The MQTT thread and the HTTP worker threads share one connection; the lock serialises them and
every change runs in a transaction. The domain logic lives in plain functions over the database
(enrollment, agents, cameras, desired); this class adds the lock, the clock and the files.
"""

from __future__ import annotations

import base64
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlite_utils import Database

from controller.broker.identities import CONTROLLER_USERNAME, BrokerIdentity
from controller.broker.passwd import hash_password, verify_password
from controller.models.records import create_tables as create_model_tables
from controller.registry import agents, cameras, enrollment, secret_files
from controller.registry.desired import desired_state
from controller.registry.records import (
    AgentRecord,
    CameraRecord,
    Enrolled,
    EnrollmentCounts,
)
from controller.registry.schema import create_schema
from fleet.enrollment import EnrollRequest
from fleet.messages import (
    AgentStatus,
    DesiredState,
    DiscoveryReport,
    FoundCamera,
    Heartbeat,
    ReportedState,
)
from fleet.utc import now_us as utc_now_us

DB_FILE: Final = "registry.db"
_CONTROLLER_HASH_KEY: Final = "controller_broker_password_hash"


def _now(now_us: int | None) -> int:
    return utc_now_us() if now_us is None else now_us


class Registry:
    """Agents, enrollment tokens, cameras and desired state. Implements IdentitySource."""

    def __init__(self, db: Database, data_dir: Path) -> None:
        """Use `Registry.open`."""
        self._db = db
        self.data_dir = data_dir
        self._lock = threading.RLock()
        self._controller_password: str | None = None
        self._signing_key: Ed25519PrivateKey | None = None
        # Where agents fetch models (`<url>/<sha256>`); the API sets it (create_app). Unset,
        # desired states name no models.
        self.models_url: str | None = None

    @classmethod
    def open(cls, data_dir: Path) -> Registry:
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / DB_FILE
        # Created 0600 before SQLite opens it (its -wal and -shm files copy the mode): it holds
        # password hashes and camera URLs with credentials.
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, secret_files.PRIVATE_MODE))
        conn = sqlite3.connect(path, check_same_thread=False, timeout=10)
        db = Database(conn, execute_plugins=False)
        db.enable_wal()
        db.execute("PRAGMA synchronous = NORMAL")  # durable enough under WAL, much faster
        with db.atomic():
            create_schema(db)
            create_model_tables(db)
        return cls(db, data_dir)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """The database under the lock, in one transaction: for tables kept beside the
        registry's (the admin accounts and sessions)."""
        with self._lock, self._db.atomic():
            yield self._db

    # --- enrollment ----------------------------------------------------------------------------

    def create_token(self, name: str, ttl_s: float, now_us: int | None = None) -> str:
        """A one-time token enrolling agent `name`; the plaintext is returned only here."""
        with self.transaction() as db:
            return enrollment.create_token(db, name, ttl_s, _now(now_us))

    def enroll(self, req: EnrollRequest, now_us: int | None = None) -> Enrolled:
        """Raises EnrollmentRefused; exactly one of concurrent enrolls with one token wins."""
        with self.transaction() as db:
            return enrollment.enroll(db, req, _now(now_us))

    def enrollment_counts(self, now_us: int | None = None) -> EnrollmentCounts:
        with self.transaction() as db:
            return enrollment.enrollment_counts(db, _now(now_us))

    # --- broker identities and keys ------------------------------------------------------------

    def identity(self, username: str) -> BrokerIdentity | None:
        if username == CONTROLLER_USERNAME:
            return self._controller_identity()
        with self.transaction() as db:
            found = agents.identities(db, username)
        return found[0] if found else None

    def identities(self) -> list[BrokerIdentity]:
        controller = self._controller_identity()
        with self.transaction() as db:
            return [controller, *agents.identities(db)]

    def controller_broker_password(self) -> str:
        """The controller's own broker password: kept in plaintext in a 0600 file (its MQTT
        client needs it), its hash in the database beside the agents'."""
        with self._lock:
            if self._controller_password is None:
                password = secret_files.controller_broker_password(self.data_dir)
                with self._db.atomic():
                    stored = self._setting(_CONTROLLER_HASH_KEY)
                    if stored is None or not verify_password(password, stored):
                        self._db.table("settings").upsert(
                            {"key": _CONTROLLER_HASH_KEY, "value": hash_password(password)},
                            pk="key",
                        )
                self._controller_password = password
            return self._controller_password

    def _controller_identity(self) -> BrokerIdentity:
        with self._lock:
            self.controller_broker_password()
            stored = self._setting(_CONTROLLER_HASH_KEY)
        assert stored is not None
        return BrokerIdentity(username=CONTROLLER_USERNAME, password_hash=stored, role="controller")

    def _setting(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def signing_key(self) -> Ed25519PrivateKey:
        """The key model artifacts are signed with, created once (0600 PEM in the data dir)."""
        with self._lock:
            if self._signing_key is None:
                self._signing_key = secret_files.signing_key(self.data_dir)
            return self._signing_key

    def signing_public_key_b64(self) -> str:
        raw = self.signing_key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode("ascii")

    # --- agents and presence -------------------------------------------------------------------

    def agents(self) -> list[AgentRecord]:
        with self.transaction() as db:
            return agents.all_agents(db)

    def agent(self, agent_id: str) -> AgentRecord | None:
        with self.transaction() as db:
            return agents.one_agent(db, agent_id)

    def revoke(self, agent_id: str, now_us: int | None = None) -> AgentRecord:
        """Raises UnknownAgent. The agent's cameras lose their owner and target."""
        with self.transaction() as db:
            return agents.revoke(db, agent_id, _now(now_us))

    def apply_status(self, agent_id: str, status: AgentStatus, now_us: int) -> bool:
        with self.transaction() as db:
            return agents.apply_status(db, agent_id, status, now_us)

    def apply_heartbeat(self, agent_id: str, hb: Heartbeat, now_us: int) -> None:
        with self.transaction() as db:
            agents.apply_heartbeat(db, agent_id, hb, now_us)

    def apply_reported(self, agent_id: str, rs: ReportedState, now_us: int) -> None:
        with self.transaction() as db:
            agents.apply_reported(db, agent_id, rs, now_us)

    def apply_discovery(self, agent_id: str, report: DiscoveryReport, now_us: int) -> None:
        with self.transaction() as db:
            agents.apply_discovery(db, agent_id, report, now_us)

    def discovered(self) -> list[tuple[str, FoundCamera, int]]:
        """(agent id, camera, when it was reported) for every live agent's last probe."""
        with self.transaction() as db:
            return agents.discovered(db)

    # --- cameras and desired state -------------------------------------------------------------

    def add_camera(self, rec: CameraRecord, now_us: int | None = None) -> CameraRecord:
        """Raises CameraExists (name taken, or its main stream already registered) or
        InvalidCamera (placement names no live agent)."""
        with self.transaction() as db:
            return cameras.add_camera(db, rec, _now(now_us))

    def cameras(self) -> list[CameraRecord]:
        with self.transaction() as db:
            return cameras.all_cameras(db)

    def camera(self, name: str) -> CameraRecord | None:
        with self.transaction() as db:
            return cameras.one_camera(db, name)

    def camera_reading(self, url: str) -> str | None:
        """The camera registered for the stream `url` reads, whatever its credentials."""
        with self.transaction() as db:
            return cameras.camera_reading(db, url)

    def update_camera(self, name: str, /, **changes: Any) -> CameraRecord:
        """Raises UnknownCamera, InvalidCamera or CameraExists."""
        with self.transaction() as db:
            return cameras.update_camera(db, name, changes)

    def remove_camera(self, name: str) -> None:
        with self.transaction() as db:
            cameras.remove_camera(db, name)

    def desired_state(self, agent_id: str) -> DesiredState:
        """Raises UnknownAgent for an agent never enrolled."""
        with self.transaction() as db:
            return desired_state(db, agent_id, self.models_url)
