"""A full disk under a running agent: recording stops with an alarm, everything else goes on, and
recording resumes when space returns, with the outage in the gap ledger and verify passing."""

from __future__ import annotations

import errno
import os
import re
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require_tool, start_sim, unavailable, wait_for
from test_agent_e2e import SIM_ARGS, Agent, Agents, streaming, verify

from fleet.utc import parse_time_us

DISK_MB = 24
CAMERAS = ("cam1", "cam2")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A size-limited tmpfs on tmp_path/data, unmounted whatever the test did."""
    mount = tmp_path / "data"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(mount)],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    if done.returncode != 0:
        unavailable(
            f"cannot mount a {DISK_MB} MiB tmpfs for the full-disk test (needs root with "
            f"CAP_SYS_ADMIN): {done.stderr.strip() or done.returncode}"
        )
    try:
        yield mount
    finally:
        # `agents` is set up after this fixture, so its processes are gone by now; a lazy
        # unmount still detaches the filesystem if something holds a file open.
        if subprocess.run(["umount", str(mount)], capture_output=True, timeout=10).returncode:
            subprocess.run(["umount", "-l", str(mount)], check=True, timeout=10)


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Agents]:
    started = Agents(tmp_path)
    yield started
    started.kill_all()


class DiskFiller:
    """Keeps a filesystem full from another writer: whatever space frees up, the filler takes.

    A one-off fill is not enough: the recorder cuts its failed segment back, which frees pages,
    and the next keyframe would then record into them.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.full_at: float | None = None  # epoch s when the disk first said no
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        self._stop = threading.Event()
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        big, page = bytes(1 << 20), bytes(4096)
        try:
            while not self._stop.is_set():
                try:
                    os.write(self._fd, big if self.full_at is None else page)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    if self.full_at is None:
                        self.full_at = time.time()
                    self._stop.wait(0.01)
        except OSError as exc:
            self._error = exc

    def remove(self) -> float:
        """Stop filling and delete the filler; returns when the space was given back (epoch s)."""
        self._stop.set()
        self._thread.join(5)
        os.close(self._fd)
        self.path.unlink()
        if self._error:
            raise self._error
        return time.time()


def _snapshot_stamp(agent: Agent, camera: str) -> str | None:
    r = agent.get(f"/cameras/{camera}/snapshot.jpg")
    return r.headers["X-Camfleet-Stamp"] if r.status_code == 200 else None


def _recorder_states(agent: Agent) -> set[str]:
    streams = agent.stats()["recorder"]["streams"]
    return {streams[f"{c}/main"]["state"] for c in CAMERAS}


def _packets(agent: Agent) -> dict[str, int]:
    return {k: s["packets"] for k, s in agent.stats()["streams"].items()}


def _closed_after(agent: Agent, camera: str, after: float) -> bool:
    segments = agent.get(f"/cameras/{camera}/recordings").json()["segments"]
    return any(s["status"] == "closed" and _epoch_s(s["start"]) > after for s in segments)


def _epoch_s(iso: str) -> float:
    return parse_time_us(iso) / 1e6


def _query(data: Path, sql: str, *args: object) -> list[tuple]:  # type: ignore[type-arg]
    with sqlite3.connect(data / "index.db") as db:
        return db.execute(sql, args).fetchall()


def test_full_disk_stops_recording_with_an_alarm_and_recording_resumes(
    tmp_path: Path, small_disk: Path, agents: Agents
) -> None:
    ffprobe = require_tool("ffprobe")
    data = small_disk
    sim = start_sim(str(tmp_path), *SIM_ARGS, cameras=2)
    try:
        agent = agents({c: f"{sim.rtsp}/{c}" for c in CAMERAS}, data)
        wait_for(lambda: streaming(agent, "cam1/main", "cam2/main"), timeout=30, what="streaming")
        for cam in CAMERAS:
            wait_for(lambda cam=cam: _closed_after(agent, cam, 0), timeout=20,  # type: ignore[misc]
                     what=f"a segment of {cam}")  # fmt: skip

        filler = DiskFiller(data / "filler")
        try:
            wait_for(lambda: filler.full_at, timeout=10, what="the filler to fill the disk")
            # Each camera's recorder finds out at its next fragment (its next keyframe).
            wait_for(lambda: _recorder_states(agent) == {"disk_full"}, timeout=10,
                     what="both recorders to be stopped by the full disk")  # fmt: skip
            assert agent.stats()["recorder"]["disk_full"], "no disk-full alarm"
            # Everything but the recorder goes on: HTTP, ingest, the live view.
            assert agent.get("/health").status_code == 200
            before_packets = _packets(agent)
            before_snaps = {c: _snapshot_stamp(agent, c) for c in CAMERAS}
            for cam in CAMERAS:
                wait_for(
                    lambda cam=cam: _snapshot_stamp(agent, cam) not in (None, before_snaps[cam]),  # type: ignore[misc]
                    timeout=10, what=f"{cam}'s snapshot to move on while the disk is full",
                )  # fmt: skip
            wait_for(
                lambda: all(n > before_packets[k] + 25 for k, n in _packets(agent).items()),
                timeout=10, what="ingest to keep streaming while the disk is full",
            )  # fmt: skip
            assert streaming(agent, "cam1/main", "cam2/main")
            assert agent.stats()["recorder"]["disk_full"]
        finally:
            freed_at = filler.remove()
        full_at = filler.full_at
        assert full_at is not None

        for cam in CAMERAS:
            wait_for(lambda cam=cam: _closed_after(agent, cam, freed_at), timeout=20,  # type: ignore[misc]
                     what=f"{cam} to record a new segment once space is back")  # fmt: skip
        wait_for(lambda: not agent.stats()["recorder"]["disk_full"], timeout=5,
                 what="the alarm to clear")  # fmt: skip
        for cam in CAMERAS:
            gaps = agent.get(f"/cameras/{cam}/recordings").json()["gaps"]
            assert any(g["reason"] == "disk_full" for g in gaps), gaps
        agent.stop()
    finally:
        sim.stop()

    for cam in CAMERAS:
        gaps = _query(data, "SELECT start_us, end_us FROM gaps WHERE camera = ? AND stream = "
                            "'main' AND reason = 'disk_full'", cam)  # fmt: skip
        # Stamps follow the agent's clock: the gap starts by the time the disk was full (plus a
        # frame) and ends no earlier than space came back (less the recorder's queue latency).
        assert any(s <= (full_at + 0.1) * 1e6 and e >= (freed_at - 0.5) * 1e6 for s, e in gaps), (
            cam, gaps, full_at, freed_at,
        )  # fmt: skip
        for start, end in gaps:
            inside = _query(data, "SELECT count(*) FROM frames WHERE camera = ? AND stamp_us >= ?"
                                  " AND stamp_us < ?", cam, start, end)  # fmt: skip
            assert inside == [(0,)], (cam, start, end)
        code, out = verify(data, cam)
        assert code == 0, out
        assert int(out.split("frames checked")[1].split()[0]) >= 10, out
        # Frames analysed during the outage are not recorded, and the ledger says why.
        known = re.search(r"known gaps\s+(\d+) \((\d+) audited frames in gaps\)", out)
        assert known and int(known[1]) >= 1 and int(known[2]) >= 5, out

    closed = dict(_query(data, "SELECT path, frames FROM segments WHERE status = 'closed'"))
    on_disk = {str(p.relative_to(data)) for p in (data / "recordings").rglob("*.mp4")}
    assert on_disk == set(closed), "segment files and the index disagree"
    for rel, frames in closed.items():
        probe = subprocess.run(
            [ffprobe, "-v", "error", "-count_packets", "-select_streams", "v:0",
             "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", str(data / rel)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert probe.returncode == 0 and not probe.stderr, (rel, probe.stderr)
        assert int(probe.stdout) == frames, (rel, probe.stdout, frames)
