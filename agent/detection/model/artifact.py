"""A trained model as one file: a tar of manifest.json, its sha256 (manifest.sha256),
extractor.tflite, one PaDiM .npz per ROI and, when the extractor carries third-party weights,
their LICENSE notice.

The tar is written in one canonical form (fixed order, owner, mode and time), and its sha256
is the artifact's identity, which the controller signs. Reading trusts nothing: the manifest's
format version is checked first, then the manifest against its digest, every file against the
size and sha256 the manifest lists, every set of statistics against the manifest, and last that
the file is exactly the canonical tar of what it holds (so no byte of headers or padding can
change either). Anything damaged, truncated, extra, of an unknown format or made for another
preprocessing is refused with a `ModelArtifactError` that says which. The digests catch damage
and careless edits; deliberate tampering that rewrites them too is what the signature is for.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.detection import padim
from agent.detection.model.extractor import BuiltExtractor, Preprocessing
from agent.detection.model.manifest import (
    EXTRACTOR_FILE,
    FORMAT_VERSION,
    LICENSE_FILE,
    FileEntry,
    ModelManifest,
    RoiModelEntry,
    RoiTraining,
    TrainingMetrics,
    TrainingRange,
)
from fleet.messages import RoiSpec

MANIFEST_FILE = "manifest.json"
DIGEST_FILE = "manifest.sha256"
MAX_BYTES = 256 * 1024 * 1024  # far above any real artifact; bounds what a reader loads


class ModelArtifactError(ValueError):
    """A file that is not a complete, untampered model artifact this agent can use."""


@dataclass(frozen=True, eq=False)
class ModelArtifact:
    """A verified artifact in memory: the manifest, every file's content and the parsed
    statistics by ROI id. Build one with `pack` (training) or `read` (from a file)."""

    manifest: ModelManifest
    manifest_json: bytes  # as stored, so a reader rewrites the file byte for byte
    files: Mapping[str, bytes]
    statistics: Mapping[str, padim.PadimStats]

    @property
    def extractor_tflite(self) -> bytes:
        return self.files[EXTRACTOR_FILE]

    @property
    def license(self) -> str | None:
        notice = self.files.get(LICENSE_FILE)
        return None if notice is None else notice.decode("utf-8")

    @classmethod
    def pack(
        cls,
        *,
        camera: str,
        rois: Sequence[RoiSpec],
        extractor: BuiltExtractor,
        statistics: Mapping[str, padim.PadimStats],
        roi_training: Mapping[str, RoiTraining],
        training: TrainingRange,
        metrics: TrainingMetrics,
        created: datetime,
        license: str | None = None,
    ) -> ModelArtifact:
        """Serialise and hash the files and write the manifest that lists them."""
        files = {EXTRACTOR_FILE: extractor.tflite}
        if license is not None:
            files[LICENSE_FILE] = license.encode("utf-8")
        entries = {}
        for roi_id, stats in statistics.items():
            name = f"padim-{roi_id}.npz"
            buffer = io.BytesIO()
            padim.save(stats, buffer)
            files[name] = buffer.getvalue()
            entries[roi_id] = RoiModelEntry(
                statistics=name,
                threshold=stats.threshold,
                change_threshold=stats.change_threshold,
                quantile=stats.quantile,
                cells=stats.feature_shape[:2],
                brightness_centres=stats.centres.tolist(),
                training=roi_training[roi_id],
            )
        listed = {name: _entry(content) for name, content in sorted(files.items())}
        digest = hashlib.sha256(
            json.dumps({n: e.sha256 for n, e in listed.items()}, sort_keys=True).encode()
        ).hexdigest()
        try:
            manifest = ModelManifest(
                format_version=FORMAT_VERSION,
                model_version=f"{camera}-{created:%Y%m%dT%H%M%SZ}-{digest[:8]}",
                created=created,
                camera=camera,
                rois=list(rois),
                extractor=extractor.name,
                preprocessing=extractor.preprocessing,
                input_shape=(1, *_hwc(extractor.preprocessing)),
                feature_shape=extractor.feature_shape,
                roi_models=entries,
                files=listed,
                training=training,
                metrics=metrics,
            )
        except ValidationError as exc:
            raise ModelArtifactError(f"cannot make a manifest of this model: {exc}") from exc
        raw = manifest.model_dump_json(indent=2).encode()
        return cls(manifest, raw, files, _verified_statistics(manifest, files))

    def to_bytes(self) -> bytes:
        """The artifact file's content: the same artifact always gives the same bytes."""
        buffer = io.BytesIO()
        digest = hashlib.sha256(self.manifest_json).hexdigest().encode()
        members = {MANIFEST_FILE: self.manifest_json, DIGEST_FILE: digest}
        members.update(sorted(self.files.items()))
        mtime = int(self.manifest.created.timestamp())
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name, content in members.items():
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(content), mtime, 0o644
                tar.addfile(info, io.BytesIO(content))
        return buffer.getvalue()

    def write(self, path: str | os.PathLike[str]) -> str:
        """Write the artifact to `path` atomically (a reader never sees half of it); its sha256."""
        content = self.to_bytes()
        target = Path(path)
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(content)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return hashlib.sha256(content).hexdigest()

    @classmethod
    def read(
        cls, path: str | os.PathLike[str], expect: Preprocessing | None = None
    ) -> ModelArtifact:
        """Load and verify an artifact; with `expect`, refuse one made for other preprocessing."""
        size = os.path.getsize(path)
        if size > MAX_BYTES:
            raise ModelArtifactError(f"{os.fspath(path)!r} is {size} bytes, over {MAX_BYTES}")
        with open(path, "rb") as file:
            return cls.from_bytes(file.read(), expect)

    @classmethod
    def from_bytes(cls, content: bytes, expect: Preprocessing | None = None) -> ModelArtifact:
        members = _members(content)
        manifest, raw = _manifest(members)
        if expect is not None and manifest.preprocessing != expect:
            raise ModelArtifactError(
                f"model {manifest.model_version} needs preprocessing "
                f"{_describe(manifest.preprocessing)}; this agent does {_describe(expect)}"
            )
        if extra := sorted(set(members) - set(manifest.files)):
            raise ModelArtifactError(f"artifact holds files its manifest does not list: {extra}")
        artifact = cls(manifest, raw, members, _verified_statistics(manifest, members))
        if artifact.to_bytes() != content:
            raise ModelArtifactError(
                "artifact differs from the canonical form of its content (truncated, or a tar "
                "header or padding byte changed): it was altered or damaged"
            )
        return artifact


def sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a whole artifact file: its identity."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _entry(content: bytes) -> FileEntry:
    return FileEntry(sha256=hashlib.sha256(content).hexdigest(), size=len(content))


def _hwc(p: Preprocessing) -> tuple[int, int, int]:
    return p.height, p.width, p.channels


def _describe(p: Preprocessing) -> str:
    return f"{p.kind} {p.height}x{p.width}x{p.channels}"


def _members(content: bytes) -> dict[str, bytes]:
    """Every regular file of the tar by name; refuses anything else in it, and duplicates."""
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(content), mode="r:") as tar:
            for info in tar:
                if not info.isreg():
                    raise ModelArtifactError(f"artifact member {info.name!r} is not a file")
                if info.name in members:
                    raise ModelArtifactError(f"artifact holds {info.name!r} twice")
                data = tar.extractfile(info)
                members[info.name] = data.read() if data is not None else b""
    except (tarfile.TarError, EOFError) as exc:
        raise ModelArtifactError(f"not a readable model artifact (truncated?): {exc}") from exc
    return members


def _manifest(members: dict[str, bytes]) -> tuple[ModelManifest, bytes]:
    """Takes the manifest and its digest out of the members: the manifest, once it matches its
    digest and its format version is known, and its raw bytes. A digest that does not match is
    reported first (a damaged manifest may not even show its version); a missing digest only
    after the version, as another format may not have one."""
    raw, digest = members.pop(MANIFEST_FILE, None), members.pop(DIGEST_FILE, None)
    if raw is None:
        raise ModelArtifactError(f"not a model artifact: no {MANIFEST_FILE}")
    if digest is not None and digest != hashlib.sha256(raw).hexdigest().encode():
        raise ModelArtifactError(
            f"{MANIFEST_FILE} does not match {DIGEST_FILE}: the artifact was altered or damaged"
        )
    try:
        data: Any = json.loads(raw)
    except ValueError as exc:
        raise ModelArtifactError(f"{MANIFEST_FILE} is not JSON: {exc}") from exc
    version = data.get("format_version") if isinstance(data, dict) else None
    if version != FORMAT_VERSION:
        raise ModelArtifactError(
            f"model artifact format {version!r} is not supported (this agent reads "
            f"format {FORMAT_VERSION})"
        )
    if digest is None:
        raise ModelArtifactError(f"not a complete model artifact: no {DIGEST_FILE}")
    try:
        return ModelManifest.model_validate(data), raw
    except ValidationError as exc:
        raise ModelArtifactError(f"invalid {MANIFEST_FILE}: {exc}") from exc


def _verified_statistics(
    manifest: ModelManifest, files: Mapping[str, bytes]
) -> dict[str, padim.PadimStats]:
    """Checks every listed file's size and sha256, then parses each ROI's statistics and checks
    them against the manifest."""
    for name, listed in manifest.files.items():
        content = files.get(name)
        if content is None:
            raise ModelArtifactError(f"artifact is missing {name} (truncated or damaged)")
        if _entry(content) != listed:
            raise ModelArtifactError(
                f"{name} does not match the sha256 and size in the manifest: the artifact was "
                "altered or damaged"
            )
    statistics = {}
    for roi_id, entry in manifest.roi_models.items():
        try:
            stats = padim.load(io.BytesIO(files[entry.statistics]))
        except padim.PadimFormatError as exc:
            raise ModelArtifactError(f"statistics of ROI {roi_id}: {exc}") from exc
        if (
            stats.feature_shape != manifest.feature_shape
            or stats.threshold != entry.threshold
            or stats.change_threshold != entry.change_threshold
            or stats.centres.tolist() != entry.brightness_centres
        ):
            raise ModelArtifactError(f"statistics of ROI {roi_id} disagree with the manifest")
        statistics[roi_id] = stats
    return statistics
