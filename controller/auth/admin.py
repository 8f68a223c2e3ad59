"""Admin accounts and their sessions, kept in the registry's database.

A session token is random and stored only as its sha256; it expires 12 hours after login.
The slow password check runs outside the registry's lock, so logins never hold up the MQTT
thread.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from sqlite_utils import Database

from controller.auth.kdf import dummy_hash, hash_admin_password, verify_admin_password
from controller.auth.throttle import LoginThrottle
from controller.registry import Registry
from fleet.utc import now_us as utc_now_us

SESSION_TTL_US: Final = 12 * 3600 * 1_000_000
MIN_PASSWORD_LENGTH: Final = 8
USER_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}"


class LoginRefused(Exception):
    """Wrong user or password (which of the two is not said)."""

    def __init__(self) -> None:
        super().__init__("wrong username or password")


class LoginThrottled(Exception):
    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many failed logins: try again in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


def _ensure_tables(db: Database) -> None:
    db.table("admins").create(
        {"user": str, "password_hash": str, "updated_us": int},
        pk="user", not_null={"password_hash", "updated_us"}, if_not_exists=True,
    )  # fmt: skip
    db.table("sessions").create(
        {"token_hash": str, "user": str, "created_us": int, "expires_us": int},
        pk="token_hash", not_null={"user", "created_us", "expires_us"}, if_not_exists=True,
    )  # fmt: skip


@contextmanager
def _transaction(target: Registry | Database) -> Iterator[Database]:
    if isinstance(target, Registry):
        with target.transaction() as db:
            yield db
    else:
        with target.atomic():
            yield target


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def set_admin_password(target: Registry | Database, user: str, password: str) -> None:
    """Create the admin `user` or change its password; its open sessions end."""
    if not re.fullmatch(USER_PATTERN, user):
        raise ValueError("admin user name: 1-64 of A-Z a-z 0-9 . _ @ -, starting alphanumeric")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"admin password too short: at least {MIN_PASSWORD_LENGTH} characters")
    password_hash = hash_admin_password(password)  # slow: outside the lock
    with _transaction(target) as db:
        _ensure_tables(db)
        db.table("admins").upsert(
            {"user": user, "password_hash": password_hash, "updated_us": utc_now_us()}, pk="user"
        )
        db.execute("DELETE FROM sessions WHERE user = ?", [user])


class AdminAuth:
    def __init__(self, registry: Registry, throttle: LoginThrottle | None = None) -> None:
        self.registry = registry
        self.throttle = throttle or LoginThrottle()
        with registry.transaction() as db:
            _ensure_tables(db)

    def has_admin(self) -> bool:
        with self.registry.transaction() as db:
            return db.execute("SELECT 1 FROM admins LIMIT 1").fetchone() is not None

    def check_admin(self, user: str, password: str) -> bool:
        with self.registry.transaction() as db:
            row = db.execute("SELECT password_hash FROM admins WHERE user = ?", [user]).fetchone()
        ok = verify_admin_password(password, row[0] if row else dummy_hash())
        return ok and row is not None

    def login(
        self, user: str, password: str, client: str = "local", now_us: int | None = None
    ) -> str:
        """A new session token. Raises LoginThrottled (without checking the password) after
        too many failures from `client`, LoginRefused for a wrong user or password."""
        wait = self.throttle.retry_after(client)
        if wait:
            raise LoginThrottled(wait)
        if not self.check_admin(user, password):
            self.throttle.failed(client)
            raise LoginRefused()
        self.throttle.succeeded(client)
        now = utc_now_us() if now_us is None else now_us
        token = secrets.token_urlsafe(32)
        with self.registry.transaction() as db:
            db.execute("DELETE FROM sessions WHERE expires_us <= ?", [now])
            db.table("sessions").insert(
                {"token_hash": _token_hash(token), "user": user, "created_us": now,
                 "expires_us": now + SESSION_TTL_US}
            )  # fmt: skip
        return token

    def session_user(self, token: str, now_us: int | None = None) -> str | None:
        """The admin a session token belongs to, or None if unknown or expired."""
        now = utc_now_us() if now_us is None else now_us
        with self.registry.transaction() as db:
            row = db.execute(
                "SELECT user FROM sessions WHERE token_hash = ? AND expires_us > ?",
                [_token_hash(token), now],
            ).fetchone()
        return row[0] if row else None

    def logout(self, token: str) -> None:
        with self.registry.transaction() as db:
            db.execute("DELETE FROM sessions WHERE token_hash = ?", [_token_hash(token)])
