"""One-time enrollment tokens and what using one does: an agent with its own broker password.

Only a token's sha256 is stored (tokens are 256-bit random, so no slow hash is needed); the
plaintext exists once, in the answer to whoever created it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
from typing import Final

from sqlite_utils import Database

from controller.broker.identities import CONTROLLER_USERNAME
from controller.broker.passwd import hash_password, new_secret
from controller.registry.errors import EnrollmentRefused, RegistryError
from controller.registry.records import AUTO, Enrolled, EnrollmentCounts
from fleet.enrollment import EnrollRequest
from fleet.messages import AGENT_ID_PATTERN

RESERVED_NAMES: Final = frozenset({CONTROLLER_USERNAME, AUTO})


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def name_in_use(db: Database, name: str) -> bool:
    rows = db.execute("SELECT 1 FROM agents WHERE agent_id = ? AND revoked = 0", [name])
    return rows.fetchone() is not None


def token_expiry_us(now_us: int, ttl_s: float) -> int:
    return now_us + round(ttl_s * 1_000_000)


def create_token(db: Database, name: str, ttl_s: float, now_us: int) -> str:
    if not re.fullmatch(AGENT_ID_PATTERN, name):
        raise RegistryError(
            f"agent name {name!r} is invalid: 1-64 of A-Z a-z 0-9 . _ -, starting with a "
            "letter or digit"
        )
    if name in RESERVED_NAMES:
        raise RegistryError(f"agent name {name} is reserved")
    if name_in_use(db, name):
        raise RegistryError(f"agent name {name} is in use")
    if not (ttl_s > 0 and math.isfinite(ttl_s)):
        raise RegistryError("a token's ttl_s must be a positive number of seconds")
    token = secrets.token_urlsafe(32)
    db.table("tokens").insert(
        {"token_hash": token_hash(token), "name": name, "created_us": now_us,
         "expires_us": token_expiry_us(now_us, ttl_s), "used_us": None, "agent_id": None}
    )  # fmt: skip
    return token


def enroll(db: Database, req: EnrollRequest, now_us: int) -> Enrolled:
    """Use a token; call inside a transaction, so a refusal after the token is marked used
    rolls the mark back."""
    digest = token_hash(req.token.get_secret_value())
    row = db.execute(
        "SELECT name, expires_us, used_us FROM tokens WHERE token_hash = ?", [digest]
    ).fetchone()
    if row is None:
        raise EnrollmentRefused("unknown enrollment token")
    name, expires_us, used_us = row
    if used_us is not None:
        raise EnrollmentRefused("enrollment token already used")
    if now_us >= expires_us:
        raise EnrollmentRefused("enrollment token expired")
    # The condition makes the use atomic even against another process sharing the database.
    marked = db.execute(
        "UPDATE tokens SET used_us = ?, agent_id = ? WHERE token_hash = ? AND used_us IS NULL",
        [now_us, name, digest],
    )
    if marked.rowcount != 1:
        raise EnrollmentRefused("enrollment token already used")
    if name_in_use(db, name):  # enrolled meanwhile with another token for the same name
        raise EnrollmentRefused(f"agent name {name} is in use")
    password = new_secret()
    # A revoked agent of the same name is replaced by a fresh one: nothing of it carries over
    # but the desired-state version, which must keep increasing for the agent id.
    db.table("agents").upsert(
        {"agent_id": name, "name": name, "hostname": req.hostname,
         "software_version": req.software_version, "subnets": json.dumps(req.subnets),
         "max_cameras": req.max_cameras, "enrolled_us": now_us, "revoked": 0,
         "revoked_us": None, "password_hash": hash_password(password), "status": None,
         "status_us": None, "heartbeat": None, "heartbeat_us": None, "reported": None,
         "reported_us": None},
        pk="agent_id",
    )  # fmt: skip
    db.execute("DELETE FROM discovered WHERE agent_id = ?", [name])
    return Enrolled(agent_id=name, name=name, broker_password=password)


def enrollment_counts(db: Database, now_us: int) -> EnrollmentCounts:
    enrolled, pending, expired = db.execute(
        "SELECT"
        " COALESCE(SUM(used_us IS NOT NULL), 0),"
        " COALESCE(SUM(used_us IS NULL AND expires_us > ?), 0),"
        " COALESCE(SUM(used_us IS NULL AND expires_us <= ?), 0)"
        " FROM tokens",
        [now_us, now_us],
    ).fetchone()
    return EnrollmentCounts(enrolled=enrolled, pending=pending, expired=expired)
