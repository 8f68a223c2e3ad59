"""Admin password hashes: scrypt (n=2**14, r=8, p=1), a random salt each, compared in constant
time. People choose these passwords, so unlike the machine secrets they need a slow hash."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
from typing import Final

N: Final = 2**14
R: Final = 8
P: Final = 1
SALT_BYTES: Final = 16
KEY_BYTES: Final = 32
_MAXMEM: Final = 64 * 1024 * 1024


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=length, maxmem=_MAXMEM
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_admin_password(password: str) -> str:
    """`scrypt$n$r$p$salt$key`, salt and key in base64."""
    salt = os.urandom(SALT_BYTES)
    key = _scrypt(password, salt, N, R, P, KEY_BYTES)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(key)}"


def verify_admin_password(password: str, stored: str) -> bool:
    """False (never an exception) for a wrong password or a malformed hash."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt = base64.b64decode(parts[4], validate=True)
        expected = base64.b64decode(parts[5], validate=True)
        key = _scrypt(password, salt, n, r, p, len(expected))
    except ValueError:  # malformed numbers or base64, or parameters scrypt refuses
        return False
    return hmac.compare_digest(key, expected)


@functools.cache
def dummy_hash() -> str:
    """Checked against when the user does not exist, so that answer takes as long as any."""
    return hash_admin_password(os.urandom(16).hex())
