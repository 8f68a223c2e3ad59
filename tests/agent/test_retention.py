"""Retention: oldest first, by age and by budget, never what an undelivered clip needs."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from test_recording import T0, demuxed, info_of, record, stamped

from agent.recording.chain import verify_chain
from agent.recording.index import Pin, SegmentRow, SegmentStatus
from agent.recording.retention import apply_retention, plan_retention

S = 1_000_000  # µs


def seg(
    i: int, start_s: int, size: int = 100, status: SegmentStatus = "closed", camera: str = "cam1"
) -> SegmentRow:
    """Segment `i`: 10 s from `start_s` seconds after T0."""
    start = T0 + start_s * S
    end = None if status == "recording" else start + 10 * S
    return SegmentRow(
        i, camera, "main", f"{i}.mp4", start, end, 150, size, "0" * 64, i, "0" * 64, status, 0
    )


def test_age_deletes_segments_that_ended_before_the_cutoff() -> None:
    segs = [seg(1, 0), seg(2, 10), seg(3, 20)]
    now = T0 + 40 * S
    assert plan_retention(segs, now, max_age_s=20, budget_bytes=None, pins=[]) == [1, 2]
    assert plan_retention(segs, now, max_age_s=30, budget_bytes=None, pins=[]) == [1]
    assert plan_retention(segs, now, max_age_s=None, budget_bytes=None, pins=[]) == []


def test_budget_deletes_oldest_first_across_cameras() -> None:
    segs = [seg(3, 20, 300), seg(1, 0, 100, camera="cam2"), seg(2, 10, 200), seg(4, 30, 400)]
    now = T0 + 50 * S
    assert plan_retention(segs, now, None, budget_bytes=700, pins=[]) == [1, 2]
    assert plan_retention(segs, now, None, budget_bytes=1000, pins=[]) == []
    assert plan_retention(segs, now, None, budget_bytes=0, pins=[]) == [1, 2, 3, 4]


def test_undelivered_pins_keep_their_segments() -> None:
    segs = [seg(1, 0), seg(2, 10), seg(3, 20)]
    now = T0 + 100 * S
    pin = Pin("clip-a", "cam1", "main", T0 + 12 * S, T0 + 15 * S)
    assert plan_retention(segs, now, 10, None, [pin]) == [1, 3]
    # Budget: segment 2 still counts, so one more (younger) segment goes instead.
    assert plan_retention(segs, now, None, 150, [pin]) == [1, 3]
    delivered = Pin("clip-a", "cam1", "main", T0 + 12 * S, T0 + 15 * S, delivered=True)
    assert plan_retention(segs, now, 10, None, [delivered]) == [1, 2, 3]
    other_stream = Pin("clip-b", "cam1", "sub", T0, T0 + 30 * S)
    other_camera = Pin("clip-c", "cam2", "main", T0, T0 + 30 * S)
    assert plan_retention(segs, now, 10, None, [other_stream, other_camera]) == [1, 2, 3]


def test_open_and_deleted_segments_are_left_alone() -> None:
    segs = [seg(1, 0, status="deleted"), seg(2, 10, status="recording"), seg(3, 20)]
    assert plan_retention(segs, T0 + 10**3 * S, 1, 0, []) == [3]


segments_st = st.lists(
    st.tuples(
        st.integers(0, 1000),
        st.integers(1, 1000),
        st.sampled_from(["closed", "closed", "closed", "recording", "deleted"]),
    ),
    max_size=30,
)
pins_st = st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 100), st.booleans()), max_size=5)


@settings(max_examples=200, deadline=None)
@given(
    segments_st,
    pins_st,
    st.one_of(st.none(), st.integers(0, 1200)),
    st.one_of(st.none(), st.integers(0, 20_000)),
)
def test_plan_properties(
    raw: list[tuple[int, int, SegmentStatus]],
    raw_pins: list[tuple[int, int, bool]],
    max_age_s: int | None,
    budget: int | None,
) -> None:
    segs = [seg(i, start, size, status) for i, (start, size, status) in enumerate(raw)]
    pins = [
        Pin(f"p{i}", "cam1", "main", T0 + a * S, T0 + (a + length) * S, delivered)
        for i, (a, length, delivered) in enumerate(raw_pins)
    ]
    now = T0 + 1200 * S
    plan = plan_retention(segs, now, max_age_s, budget, pins)
    by_id = {s.id: s for s in segs}

    def pinned(s: SegmentRow) -> bool:
        end = s.end_us or s.start_us
        return any(not p.delivered and p.from_us < end and s.start_us <= p.to_us for p in pins)

    assert len(set(plan)) == len(plan)
    assert [by_id[i].start_us for i in plan] == sorted(by_id[i].start_us for i in plan)
    assert all(by_id[i].status == "closed" and not pinned(by_id[i]) for i in plan)
    kept = [s for s in segs if s.status == "closed" and s.id not in plan]
    cutoff = None if max_age_s is None else now - max_age_s * S
    for s in kept:
        if not pinned(s):
            assert cutoff is None or (s.end_us or 0) > cutoff, "too old, yet kept"
    if budget is not None and sum(s.bytes for s in kept) > budget:
        assert all(pinned(s) for s in kept), "over budget with deletable segments left"
    elif budget is not None and plan:
        # Nothing was deleted for the budget alone that was not needed.
        youngest = by_id[plan[-1]]
        aged_out = cutoff is not None and (youngest.end_us or 0) <= cutoff
        assert aged_out or sum(s.bytes for s in kept) + youngest.bytes > budget


def test_apply_deletes_files_keeps_records_and_the_chain(tmp_path: Path) -> None:
    stream, packets = demuxed(6)
    index = record(tmp_path, stamped(packets, info_of(stream)))
    segs = index.segments("cam1")
    index.add_pin(Pin("clip-1", "cam1", "main", segs[1].start_us, segs[1].start_us + 1))
    deleted = apply_retention(index, T0 + 100 * S, max_age_s=10, budget_bytes=None)
    assert deleted == [segs[0].id, segs[2].id]
    for s in index.segments("cam1"):
        assert index.resolve(s.path).exists() == (s.id == segs[1].id)
        assert bool(index.segment_frames(s.id)) == (s.id == segs[1].id)
    assert verify_chain(index, "cam1", "main").ok
    index.mark_delivered("clip-1")
    assert apply_retention(index, T0 + 100 * S, max_age_s=10, budget_bytes=None) == [segs[1].id]
    assert [s.status for s in index.segments("cam1")] == ["deleted"] * 3
    assert verify_chain(index, "cam1", "main").ok
