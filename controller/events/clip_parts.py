"""Chunks of clips being received, buffered on disk one file per index (clips can be tens of
MB, so they never sit in memory), and their assembly into one file.

Layout: ROOT/<clip_id>/<index>.part. A part is written to a temporary name, synced and then
renamed, so a crash never leaves a part that looks whole but is not.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Final
from uuid import UUID

_PART_NAME: Final = re.compile(r"^(0|[1-9][0-9]*)\.part$")
ASSEMBLED_NAME: Final = "assembled.tmp"
_COPY_BLOCK: Final = 1024 * 1024


class ClipParts:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _dir(self, clip_id: UUID) -> Path:
        return self.root / str(clip_id)

    def _part(self, clip_id: UUID, index: int) -> Path:
        return self._dir(clip_id) / f"{index}.part"

    def put(self, clip_id: UUID, index: int, data: bytes) -> None:
        """Keep chunk `index`; a repeat replaces it with the same bytes."""
        part = self._part(clip_id, index)
        part.parent.mkdir(parents=True, exist_ok=True)
        tmp = part.with_name(part.name + ".tmp")
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, part)

    def count(self, clip_id: UUID) -> int:
        """How many distinct parts are held for the clip (names only: cheap per chunk)."""
        try:
            return sum(1 for name in os.listdir(self._dir(clip_id)) if _PART_NAME.match(name))
        except FileNotFoundError:
            return 0

    def sizes(self, clip_id: UUID) -> dict[int, int]:
        """Index → size of every part held for the clip."""
        try:
            entries = list(os.scandir(self._dir(clip_id)))
        except FileNotFoundError:
            return {}
        found = ((_PART_NAME.match(e.name), e) for e in entries)
        return {int(m.group(1)): e.stat().st_size for m, e in found if m}

    def remove(self, clip_id: UUID, index: int) -> None:
        self._part(clip_id, index).unlink(missing_ok=True)

    def assemble(self, clip_id: UUID, count: int) -> tuple[Path, int, str]:
        """Concatenate parts 0..count-1 into one synced file beside them: its path, size and
        sha256. Raises FileNotFoundError if a part is missing."""
        out_path = self._dir(clip_id) / ASSEMBLED_NAME
        digest = hashlib.sha256()
        size = 0
        with open(out_path, "wb") as out:
            for index in range(count):
                with open(self._part(clip_id, index), "rb") as part:
                    while block := part.read(_COPY_BLOCK):
                        digest.update(block)
                        out.write(block)
                        size += len(block)
            out.flush()
            os.fsync(out.fileno())
        return out_path, size, digest.hexdigest()

    def drop(self, clip_id: UUID) -> None:
        """Forget every part of the clip (and a half-assembled file)."""
        shutil.rmtree(self._dir(clip_id), ignore_errors=True)

    def held(self) -> list[UUID]:
        """The clips that have parts here (for clearing up after a crash)."""
        held = []
        for entry in os.scandir(self.root):
            try:
                held.append(UUID(entry.name))
            except ValueError:
                continue  # not one of ours
        return held
