"""The model store: artifact files under the controller's data dir, named by their sha256, with
their records (and the controller's signature of each) in the registry's database.

An upload is written to a private temporary file beside the store while it is hashed and
counted, so no artifact is ever held in memory whole; only a complete, checked file is renamed
to its sha256, and only then recorded, so a recorded model always has its file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from controller.models.artifact import MAX_BYTES, ArtifactTooLarge, read_artifact_info
from controller.models.records import (
    ModelRecord,
    add_model,
    all_models,
    assigned_to_agent,
    one_model,
)
from controller.registry import Registry
from fleet.messages import model_signed_bytes
from fleet.utc import now_us as utc_now_us

MODELS_DIR: Final = "models"
SUFFIX: Final = ".camfleet-model"


class UnknownModel(LookupError):
    def __init__(self, sha256: str) -> None:
        super().__init__(f"no model {sha256}")


class Upload:
    """One artifact arriving in pieces; `close` removes what was not committed."""

    def __init__(self, directory: Path) -> None:
        fd, name = tempfile.mkstemp(dir=directory, prefix=".upload-")  # mode 0600
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self._kept = False
        self.size = 0

    def write(self, chunk: bytes) -> None:
        """ArtifactTooLarge once the upload passes MAX_BYTES."""
        self.size += len(chunk)
        if self.size > MAX_BYTES:
            raise ArtifactTooLarge()
        self._file.write(chunk)
        self._hash.update(chunk)

    def finish(self) -> str:
        """Make the file durable; its sha256."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return self._hash.hexdigest()

    def keep(self, path: Path) -> None:
        """Move the finished file to `path`."""
        os.replace(self.path, path)
        self._kept = True

    def close(self) -> None:
        self._file.close()
        if not self._kept:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.close()


class ModelStore:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.directory = registry.data_dir / MODELS_DIR

    def upload(self) -> Upload:
        self.directory.mkdir(mode=0o700, exist_ok=True)
        return Upload(self.directory)

    def commit(self, upload: Upload, now_us: int | None = None) -> tuple[ModelRecord, bool]:
        """Check the uploaded artifact, sign its sha256 and keep it; the record and whether it
        is new (the same bytes uploaded again change nothing). InvalidArtifact if it is not
        one."""
        sha256 = upload.finish()
        info = read_artifact_info(upload.path)
        signature = self.registry.signing_key().sign(model_signed_bytes(sha256))
        upload.keep(self.file(sha256))
        created = utc_now_us() if now_us is None else now_us
        rec = ModelRecord(sha256=sha256, model_version=info.model_version, camera=info.camera,
                          size=upload.size, created_us=created, signature=signature)  # fmt: skip
        with self.registry.transaction() as db:
            return add_model(db, rec)

    def models(self) -> list[ModelRecord]:
        with self.registry.transaction() as db:
            return all_models(db)

    def model(self, sha256: str) -> ModelRecord | None:
        with self.registry.transaction() as db:
            return one_model(db, sha256)

    def file(self, sha256: str) -> Path:
        return self.directory / f"{sha256}{SUFFIX}"

    def readable_file(self, sha256: str, agent_id: str | None) -> Path:
        """The artifact file, for an admin (None) or for an agent whose cameras use it; for any
        other agent UnknownModel, as for a model that does not exist, so an agent cannot probe
        for other sites' models."""
        with self.registry.transaction() as db:
            known = one_model(db, sha256) is not None
            if not known or (agent_id is not None and not assigned_to_agent(db, sha256, agent_id)):
                raise UnknownModel(sha256)
        return self.file(sha256)
