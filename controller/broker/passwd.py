"""Broker password hashes in Mosquitto's own `$7$` format (PBKDF2-HMAC-SHA512).

One stored hash serves both brokers: the registry keeps it, `camfleet broker config` writes it
into Mosquitto's password file as is, and the embedded broker verifies against it. Agent and
controller broker passwords are random 256-bit secrets, so the iteration count only needs to
make a stolen file useless against such keys, not against guessable passwords.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from typing import Final

ITERATIONS: Final = 1000
SALT_BYTES: Final = 12  # what mosquitto_passwd uses
HASH_BYTES: Final = 64


def new_secret() -> str:
    """A random password for a machine identity: 43 URL-safe characters."""
    return secrets.token_urlsafe(32)


def hash_password(password: str, iterations: int = ITERATIONS) -> str:
    salt = os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, HASH_BYTES)
    return f"$7${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches a `$7$` hash; False (never an exception) for a malformed one."""
    parts = stored.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7":
        return False
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except ValueError:
        return False
    if not 1 <= iterations <= 10_000_000:
        return False
    digest = hashlib.pbkdf2_hmac(
        "sha512", password.encode("utf-8"), salt, iterations, len(expected)
    )
    return hmac.compare_digest(digest, expected)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
