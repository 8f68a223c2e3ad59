"""The controller's own secrets on disk: files of mode 0600, created once and then kept.

Creation is exclusive (write a private temporary file, then hard-link it into place), so two
processes starting at once agree on one secret instead of each keeping its own.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from controller.broker.passwd import new_secret
from controller.registry.errors import RegistryError

SECRETS_FILE: Final = "controller-secrets.json"
SIGNING_KEY_FILE: Final = "signing-key.pem"
PRIVATE_MODE: Final = 0o600


def create_private_file(path: Path, data: bytes) -> bool:
    """Write `data` to `path` with mode 0600 unless it exists; False if it already did."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp: 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)


def read_or_create(path: Path, make: Callable[[], bytes]) -> bytes:
    """The file's content, creating it from `make()` first if it does not exist."""
    if not path.exists():
        create_private_file(path, make())
    return path.read_bytes()


def controller_broker_password(data_dir: Path) -> str:
    path = data_dir / SECRETS_FILE
    raw = read_or_create(path, lambda: json.dumps({"broker_password": new_secret()}).encode())
    try:
        password = json.loads(raw)["broker_password"]
    except (ValueError, KeyError, TypeError):
        password = None
    if not isinstance(password, str) or not password:
        raise RegistryError(f"{path} has no broker_password: delete it to make a new one")
    return password


def signing_key(data_dir: Path) -> Ed25519PrivateKey:
    path = data_dir / SIGNING_KEY_FILE
    pem = read_or_create(
        path,
        lambda: Ed25519PrivateKey.generate().private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        ),
    )
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise RegistryError(f"{path} is not an unencrypted Ed25519 private key (PEM)")
    return key
