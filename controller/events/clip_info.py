"""What the controller knows about a clip while its chunks arrive, and after."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from fleet.messages import ClipManifest

# pending: chunks or manifest still missing; complete: assembled, hash checked, servable;
# corrupt: every chunk arrived but the whole clip failed its hash or size (parts dropped).
ClipState = Literal["pending", "complete", "corrupt"]


class ClipRejected(ValueError):
    """A manifest or chunk that was refused; the text says why. The clip itself is unchanged."""


class ClipInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    clip_id: UUID
    agent_id: str  # the first agent that sent anything for this clip; only it may send more
    state: ClipState
    reason: str | None = None  # why the clip is corrupt
    manifest: ClipManifest | None = None  # None until it arrives (chunks may come first)
    chunks_received: int
    first_seen_us: int
    updated_us: int
    completed_us: int | None = None

    def progress(self) -> str:
        """How far the clip has come, e.g. "3 of 20 chunks"."""
        if self.manifest is None:
            return f"{self.chunks_received} chunks, manifest not received yet"
        return f"{self.chunks_received} of {self.manifest.chunk_count} chunks"


def expected_chunk_size(m: ClipManifest, index: int) -> int:
    """Bytes chunk `index` must hold: `chunk_size`, except the last, which holds the rest."""
    if index < m.chunk_count - 1:
        return m.chunk_size
    return m.size - m.chunk_size * (m.chunk_count - 1)
