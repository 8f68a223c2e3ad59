"""The models the desired state names, fetched from the controller and verified before use.

Each `ModelRef` is checked first for the controller's Ed25519 signature of its sha256 (the key
came with enrollment), then the download for that size and sha256, and only then kept, as
`<data>/models/<sha256>.camfleet-model`; a file already there is hashed again before it is
used. Fetches run on a thread of their own, so cameras start (and record, and are audited) at
once, and the control thread never waits on the network; a failed fetch is tried again when
the desired state is next applied after `retry_s`.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final, Literal
from urllib.parse import urlsplit

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.detection.model.artifact import MAX_BYTES, sha256
from fleet.enrollment import AgentCredentials
from fleet.messages import ModelRef, model_signed_bytes

log = logging.getLogger("camfleet.agent.fleet.models")

MODELS_DIR: Final = "models"
SUFFIX: Final = ".camfleet-model"
RETRY_S: Final = 30.0
TIMEOUT: Final = httpx.Timeout(30.0, connect=10.0)


class ModelFetchError(Exception):
    """A model that cannot be used; the text, meant for the agent's operator, says why."""


def _nothing() -> None:
    pass


def controller_key(creds: AgentCredentials) -> Ed25519PublicKey:
    """The key the controller signs models with, as the agent got it at enrollment."""
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(creds.signing_public_key))


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname or "", parts.port


def fetch_model(
    client: httpx.Client, ref: ModelRef, key: Ed25519PublicKey, directory: Path,
    auth: httpx.Auth | None = None,
) -> Path:  # fmt: skip
    """The verified artifact file of `ref` in `directory`, downloaded unless a file with the
    right content is there already. ModelFetchError if it cannot be had or fails a check."""
    what = f"model {ref.model_version}"
    try:
        key.verify(ref.signature, model_signed_bytes(ref.sha256))
    except InvalidSignature:
        raise ModelFetchError(
            f"{what}: its signature does not verify with the controller's key from enrollment"
        ) from None
    if ref.size > MAX_BYTES:
        raise ModelFetchError(f"{what}: {ref.size} bytes, over the agent's limit of {MAX_BYTES}")
    path = directory / f"{ref.sha256}{SUFFIX}"
    if path.exists() and sha256(path) == ref.sha256:
        return path
    directory.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{ref.sha256[:16]}.")
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _download(client, ref, auth, out)
            out.flush()
            os.fsync(out.fileno())
        if digest != ref.sha256:
            raise ModelFetchError(f"{what}: the download's sha256 is {digest}, not {ref.sha256}")
        os.replace(temp, path)
    finally:
        Path(temp).unlink(missing_ok=True)
    return path


def _download(client: httpx.Client, ref: ModelRef, auth: httpx.Auth | None, out: BinaryIO) -> str:
    """Writes the response body to `out` (at most `ref.size` bytes); its sha256."""
    what = f"model {ref.model_version}"
    digest, size = hashlib.sha256(), 0
    try:
        with client.stream("GET", ref.url, auth=auth or httpx.USE_CLIENT_DEFAULT) as response:
            if not response.is_success:
                detail = next(response.iter_text(), "")[:200]  # the start says enough
                raise ModelFetchError(
                    f"{what}: the controller answered {response.status_code}: {detail}"
                )
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > ref.size:
                    raise ModelFetchError(f"{what}: the download is longer than {ref.size} bytes")
                digest.update(chunk)
                out.write(chunk)
    except httpx.HTTPError as exc:
        host = urlsplit(ref.url).netloc.rpartition("@")[2]
        raise ModelFetchError(f"{what}: cannot fetch it from {host}: {exc}") from None
    if size != ref.size:
        raise ModelFetchError(f"{what}: the download has {size} bytes, not {ref.size}")
    return digest.hexdigest()


State = Literal["fetching", "ready", "failed"]


@dataclass
class _Entry:
    ref: ModelRef
    state: State
    path: Path | None = None
    error: str | None = None
    failed_at: float = 0.0  # monotonic


class ModelCache:
    """The agent's models by sha256: `resolve` answers which of those wanted are ready and why
    others are not, and starts fetching those missing; `on_change` is called (on the fetch
    thread) when a fetch ends."""

    def __init__(
        self,
        data_dir: Path,
        creds: AgentCredentials,
        on_change: Callable[[], None] = _nothing,
        retry_s: float = RETRY_S,
    ) -> None:
        self.directory = data_dir / MODELS_DIR
        self.retry_s = retry_s
        self._on_change = on_change
        self._key = controller_key(creds)
        # The agent's password goes only to the controller it enrolled with; a model hosted
        # elsewhere is fetched without it (its signature still decides).
        self._controller = _origin(creds.controller_url)
        self._auth = httpx.BasicAuth(creds.agent_id, creds.broker.password.get_secret_value())
        self._http = httpx.Client(timeout=TIMEOUT)
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._ended = False  # a fetch ended since the last resolve
        self._jobs: queue.SimpleQueue[ModelRef | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="model-fetch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._jobs.put(None)
        if self._thread.is_alive():
            self._thread.join(60)
        self._http.close()

    def resolve(self, refs: Iterable[ModelRef]) -> tuple[dict[str, Path], dict[str, str]]:
        """By sha256: the files of the verified models among `refs`, and why each failed one is
        not usable. A model not fetched yet is fetched; a failed one again once `retry_s` has
        passed since it failed."""
        ready, failed = {}, {}
        now = time.monotonic()
        with self._lock:
            self._ended = False
            for ref in refs:
                entry = self._entries.get(ref.sha256)
                if entry is None or entry.ref != ref or (
                    entry.state == "failed" and now - entry.failed_at >= self.retry_s
                ):  # fmt: skip
                    self._entries[ref.sha256] = _Entry(ref, "fetching")
                    self._jobs.put(ref)
                elif entry.state == "ready" and entry.path is not None:
                    ready[ref.sha256] = entry.path
                elif entry.state == "failed" and entry.error is not None:
                    failed[ref.sha256] = entry.error
        return ready, failed

    def due(self) -> bool:
        """Whether `resolve` may answer differently now: a fetch ended since it was last
        called, or a failed fetch may be tried again."""
        now = time.monotonic()
        with self._lock:
            return self._ended or any(
                e.state == "failed" and now - e.failed_at >= self.retry_s
                for e in self._entries.values()
            )

    def stats(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {
                sha: {"model_version": e.ref.model_version, "state": e.state, "error": e.error}
                for sha, e in self._entries.items()
            }

    def _run(self) -> None:
        while (ref := self._jobs.get()) is not None:
            auth = self._auth if _origin(ref.url) == self._controller else None
            try:
                path = fetch_model(self._http, ref, self._key, self.directory, auth)
                done = _Entry(ref, "ready", path=path)
                log.info("model %s ready: %s", ref.model_version, path)
            except (ModelFetchError, OSError) as exc:
                done = _Entry(ref, "failed", error=str(exc), failed_at=time.monotonic())
                log.error("model not used: %s", exc)
            with self._lock:
                if self._entries.get(ref.sha256, done).ref == ref:
                    self._entries[ref.sha256] = done
                self._ended = True
            self._on_change()
