"""The segments' hash chain: chain_n = sha256(chain_{n-1} || sha256_n), from a per-stream genesis.

Each closed segment's file hash is linked to everything recorded before it on the same camera
stream, so a deleted, altered or reordered file — or a removed index record — shows up as a
broken link. Retention deletes files but keeps their records, so the chain carries over them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from fleet.utc import iso_us

if TYPE_CHECKING:
    from agent.recording.index import Index, SegmentRow

ProblemKind = Literal["deleted", "altered", "reordered", "missing"]


def genesis(camera: str, stream: str) -> str:
    return hashlib.sha256(f"camfleet-chain-v1\0{camera}\0{stream}".encode()).hexdigest()


def chain_link(prev_chain: str, sha256_hex: str) -> str:
    """The next link: sha256 over the previous link's and the file's digests (raw bytes)."""
    return hashlib.sha256(bytes.fromhex(prev_chain) + bytes.fromhex(sha256_hex)).hexdigest()


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@dataclass(frozen=True, slots=True)
class ChainProblem:
    kind: ProblemKind
    camera: str
    stream: str
    segment_id: int | None
    link: int | None
    detail: str


@dataclass(slots=True)
class ChainReport:
    camera: str
    stream: str
    checked: int = 0  # segment files hashed
    problems: list[ChainProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def kinds(self) -> set[ProblemKind]:
        return {p.kind for p in self.problems}


def check_links(
    rows: list[SegmentRow], anchor: SegmentRow | None, camera: str, stream: str
) -> list[ChainProblem]:
    """Check index records alone: consecutive links, chain values, start order (no file I/O).

    `rows` are in link order; `anchor` is the record chained just before the first of them
    (None when they should start at the genesis).
    """
    problems: list[ChainProblem] = []
    prev_link, prev_chain, prev_start = (
        (anchor.link or 0, anchor.chain or "", anchor.start_us)
        if anchor
        else (0, genesis(camera, stream), None)
    )

    def problem(kind: ProblemKind, row: SegmentRow, detail: str) -> None:
        problems.append(ChainProblem(kind, camera, stream, row.id, row.link, detail))

    for row in rows:
        link = row.link or 0
        if link != prev_link + 1:
            problem(
                "missing",
                row,
                f"links {prev_link + 1}..{link - 1} missing before segment {row.id}"
                f" (starting {iso_us(row.start_us)})",
            )
        elif row.sha256 is None or row.chain != chain_link(prev_chain, row.sha256):
            problem(
                "altered",
                row,
                f"segment {row.id}'s record does not chain from link {prev_link}"
                " (a record was changed or removed and the rest renumbered)",
            )
        if prev_start is not None and row.start_us <= prev_start:
            problem("reordered", row, f"segment {row.id} starts before the one chained before it")
        prev_link, prev_chain, prev_start = link, row.chain or "", row.start_us
    return problems


def verify_chain(
    index: Index,
    camera: str,
    stream: str,
    from_us: int | None = None,
    to_us: int | None = None,
) -> ChainReport:
    """Check the chain records and hash every closed segment file overlapping [from_us, to_us]."""
    chain = index.chain_rows(camera, stream)
    picked = [
        i
        for i, row in enumerate(chain)
        if (to_us is None or row.start_us <= to_us)
        and (from_us is None or (row.end_us or row.start_us) > from_us)
    ]
    report = ChainReport(camera, stream)
    if not picked:
        return report
    rows = chain[picked[0] : picked[-1] + 1]
    anchor = chain[picked[0] - 1] if picked[0] > 0 else None
    report.problems.extend(check_links(rows, anchor, camera, stream))
    owner = {row.sha256: row.id for row in chain if row.sha256}
    for row in rows:
        if row.status != "closed":
            continue  # deleted by retention: recorded, and its hash still links the chain
        path = index.resolve(row.path)
        report.checked += path.exists()
        found = _file_problem(path, row, owner)
        if found is not None:
            kind, detail = found
            report.problems.append(ChainProblem(kind, camera, stream, row.id, row.link, detail))
    return report


def _file_problem(
    path: Path, row: SegmentRow, owner: dict[str, int]
) -> tuple[ProblemKind, str] | None:
    if not path.exists():
        return "deleted", f"{row.path} is gone"
    actual = file_sha256(path)
    if actual == row.sha256:
        return None
    if actual in owner:
        return "reordered", f"{row.path} holds the content of segment {owner[actual]}"
    return "altered", f"{row.path} changed: sha256 {actual} != recorded {row.sha256}"
