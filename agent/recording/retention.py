"""Retention: which closed segments to delete (pure policy), and deleting them.

Oldest first, by maximum age and by a disk budget, never a segment an undelivered event clip
still needs. Deleted segments keep their index records (status "deleted"), so the hash chain
carries over them and a verifier can tell retention from tampering.
"""

from __future__ import annotations

from collections.abc import Sequence

from agent.recording.index import Index, Pin, SegmentRow


def plan_retention(
    segments: Sequence[SegmentRow],
    now_us: int,
    max_age_s: float | None,
    budget_bytes: int | None,
    pins: Sequence[Pin],
) -> list[int]:
    """Ids of the segments to delete, oldest first.

    A closed segment goes when it ended more than `max_age_s` before `now_us`, or while the
    closed segments' total size exceeds `budget_bytes`. Pinned segments stay and still count
    toward the budget (so the budget can stay exceeded); segments still recording are neither
    deletable nor counted. None disables a limit.
    """
    closed = sorted((s for s in segments if s.status == "closed"), key=lambda s: (s.start_us, s.id))
    open_pins = [p for p in pins if not p.delivered]
    total = sum(s.bytes for s in closed)
    cutoff = None if max_age_s is None else now_us - round(max_age_s * 1_000_000)
    doomed: list[int] = []
    for seg in closed:
        too_old = cutoff is not None and seg.end_us is not None and seg.end_us <= cutoff
        over_budget = budget_bytes is not None and total > budget_bytes
        if (too_old or over_budget) and not any(_pins(p, seg) for p in open_pins):
            doomed.append(seg.id)
            total -= seg.bytes
    return doomed


def apply_retention(
    index: Index, now_us: int, max_age_s: float | None, budget_bytes: int | None
) -> list[int]:
    """Plan and delete; returns the deleted segment ids.

    The index marks a segment deleted before its file goes: a crash in between leaves an
    orphan file, never a recorded segment whose file vanished (which would read as tampering).
    """
    closed = index.segments(status="closed")
    doomed = plan_retention(closed, now_us, max_age_s, budget_bytes, index.pins())
    paths = {s.id: index.resolve(s.path) for s in closed}
    index.mark_deleted(doomed)
    for seg_id in doomed:
        paths[seg_id].unlink(missing_ok=True)
    return doomed


def _pins(pin: Pin, seg: SegmentRow) -> bool:
    end = seg.end_us if seg.end_us is not None else seg.start_us
    return (
        pin.camera == seg.camera
        and pin.stream == seg.stream
        and pin.from_us < end
        and seg.start_us <= pin.to_us
    )
