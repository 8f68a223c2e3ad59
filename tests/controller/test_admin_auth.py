"""Admin passwords (scrypt), sessions (12 h) and login throttling, on a real registry database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.auth import (
    SESSION_TTL_US,
    AdminAuth,
    LoginRefused,
    LoginThrottle,
    LoginThrottled,
    set_admin_password,
)
from controller.auth.kdf import hash_admin_password, verify_admin_password
from controller.registry import Registry

PASSWORD = "correct horse battery"
T0 = 1_790_000_000_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry.open(tmp_path) as reg:
        set_admin_password(reg, "admin", PASSWORD)
        yield reg


def test_the_password_is_checked_and_stored_only_as_a_scrypt_hash(registry: Registry) -> None:
    auth = AdminAuth(registry)
    assert auth.has_admin()
    assert auth.check_admin("admin", PASSWORD)
    assert not auth.check_admin("admin", PASSWORD + "!")
    assert not auth.check_admin("admin", "")
    assert not auth.check_admin("root", PASSWORD)
    with registry.transaction() as db:
        (stored,) = db.execute("SELECT password_hash FROM admins").fetchone()
    assert stored.startswith("scrypt$16384$8$1$") and PASSWORD not in stored
    assert stored != hash_admin_password(PASSWORD)  # salted


def test_malformed_hashes_never_verify() -> None:
    good = hash_admin_password(PASSWORD)
    assert verify_admin_password(PASSWORD, good)
    for bad in ("", "scrypt$", good.replace("scrypt", "bcrypt"), good + "$x",
                good.replace("$16384$", "$abc$"), good.replace("$16384$", "$3$")):  # fmt: skip
        assert not verify_admin_password(PASSWORD, bad)


def test_weak_passwords_and_bad_user_names_are_refused(registry: Registry) -> None:
    with pytest.raises(ValueError, match="too short"):
        set_admin_password(registry, "admin", "short")
    with pytest.raises(ValueError, match="user name"):
        set_admin_password(registry, "bad user", PASSWORD)


def test_a_session_lasts_twelve_hours_and_ends_at_logout(registry: Registry) -> None:
    auth = AdminAuth(registry)
    with pytest.raises(LoginRefused, match="wrong username or password"):
        auth.login("admin", "wrong password")
    token = auth.login("admin", PASSWORD, now_us=T0)
    assert auth.session_user(token, T0 + SESSION_TTL_US - 1) == "admin"
    assert auth.session_user(token, T0 + SESSION_TTL_US) is None
    assert auth.session_user(token + "x", T0) is None
    with registry.transaction() as db:
        assert (
            db.execute("SELECT count(*) FROM sessions WHERE token_hash = ?", [token]).fetchone()[0]
            == 0
        )
    other = auth.login("admin", PASSWORD, now_us=T0)
    assert other != token
    auth.logout(other)
    assert auth.session_user(other, T0) is None
    assert auth.session_user(token, T0) == "admin"  # one logout ends one session


def test_changing_the_password_ends_the_users_sessions(registry: Registry) -> None:
    auth = AdminAuth(registry)
    token = auth.login("admin", PASSWORD)
    set_admin_password(registry, "admin", "another long password")
    assert auth.session_user(token) is None
    assert not auth.check_admin("admin", PASSWORD)
    assert auth.check_admin("admin", "another long password")


def test_failed_logins_are_throttled_per_client_without_sleeping(registry: Registry) -> None:
    clock = FakeClock()
    auth = AdminAuth(registry, LoginThrottle(limit=10, window_s=60, clock=clock))
    for _ in range(10):
        with pytest.raises(LoginRefused):
            auth.login("admin", "guess", client="10.0.0.66")
        clock.now += 1
    started = time.perf_counter()
    with pytest.raises(LoginThrottled) as info:
        auth.login("admin", PASSWORD, client="10.0.0.66")  # even the right password
    assert time.perf_counter() - started < 0.02  # refused at once: no KDF, no sleep
    assert info.value.retry_after_s == pytest.approx(50)  # the first failure ages out then
    assert "try again in 50 s" in str(info.value)
    assert auth.login("admin", PASSWORD, client="10.0.0.7")  # other clients are not affected
    clock.now += 50
    assert auth.login("admin", PASSWORD, client="10.0.0.66")


def test_a_success_clears_the_clients_failures() -> None:
    throttle = LoginThrottle(limit=2, window_s=60, clock=FakeClock())
    throttle.failed("a")
    throttle.succeeded("a")
    throttle.failed("a")
    assert throttle.retry_after("a") == 0
    throttle.failed("a")
    assert throttle.retry_after("a") == pytest.approx(60)


def test_the_throttle_forgets_the_oldest_client_beyond_its_bound() -> None:
    throttle = LoginThrottle(limit=2, window_s=60, clock=FakeClock(), max_clients=2)
    for client in ("a", "a", "b", "b"):
        throttle.failed(client)
    assert throttle.retry_after("a") > 0 and throttle.retry_after("b") > 0
    throttle.failed("c")
    assert throttle.retry_after("a") == 0  # memory stays bounded under many addresses
    assert throttle.retry_after("b") > 0
