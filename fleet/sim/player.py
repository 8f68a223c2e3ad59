"""Plays a camera's cached loop to its sessions in real time, with fresh timestamps.

One tick per scene frame. Every playing session gets the access unit of its variant at its loop
position; a session joins (or switches between normal and degraded variants) only on a keyframe,
so what it receives always decodes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from fleet.rtsp.rtcp import sender_report
from fleet.sim.camera import SimCamera
from fleet.sim.session import SimSession

log = logging.getLogger("camfleet.sim")

SENDER_REPORT_INTERVAL_S = 5.0
# A client this far behind is treated like a real camera treats it: frames are dropped
# until it catches up, then it resumes on the next keyframe.
MAX_BACKLOG_BYTES = 4 * 1024 * 1024


def tick(camera: SimCamera, n: int, now: float) -> None:
    """Send scene frame `n` (counted from the simulator's start) to every playing session."""
    fps = camera.clock.fps
    index_base = n % camera.clock.frame_count
    if camera.degraded:
        camera.degraded_ticks += 1
    for session in camera.playing():
        index = (index_base + session.frame_offset) % camera.clock.frame_count
        _send_frame(camera, session, n, index, fps, now)
    camera.next_frame = n + 1


def _send_frame(
    camera: SimCamera, session: SimSession, n: int, index: int, fps: float, now: float
) -> None:
    wanted = camera.variant_for(session.kind)
    on_gop_boundary = index % camera.gop == 0
    if session.variant is None or (session.variant is not wanted and on_gop_boundary):
        session.variant = wanted
    variant = session.variant
    unit = variant.unit_at(index)
    if unit is None:
        return
    keyframe = variant.loop.units[unit].keyframe
    if session.waiting_keyframe and not keyframe:
        if session.frames_sent:  # it was streaming: frames it misses now are drops
            session.frames_dropped += 1
        return
    if session.sink.backlog() > MAX_BACKLOG_BYTES:
        session.frames_dropped += 1
        session.waiting_keyframe = True
        return
    session.waiting_keyframe = False
    timestamp = session.rtp_timestamp(n, fps)
    session.sink.send_rtp(session.sequencer.packets(variant.payloads[unit], timestamp))
    session.frames_sent += 1
    camera.frames_sent[session.kind] = camera.frames_sent.get(session.kind, 0) + 1
    if camera.profile.rtcp_sender_reports and now - session.last_sender_report >= (
        SENDER_REPORT_INTERVAL_S
    ):
        session.last_sender_report = now
        session.sink.send_rtcp(
            sender_report(
                ssrc=session.ssrc,
                unix_time=camera.clock.frame_time_us(n) / 1e6,
                rtp_timestamp=timestamp,
                packet_count=session.sequencer.packet_count,
                octet_count=session.sequencer.octet_count,
            )
        )


async def play(
    camera: SimCamera, loop_start: float, on_iteration: Callable[[SimCamera, int], None]
) -> None:
    """Tick forever at the scene's fps, on a schedule anchored at `loop_start` (loop.time()).

    `on_iteration(camera, k)` is called as pass `k` of the loop begins (truth is written then).

    Ticks are scheduled against the anchor, not after the previous one, so the stream keeps the
    camera's cadence; if the process falls behind it catches up rather than drifting.
    """
    loop = asyncio.get_running_loop()
    period = 1.0 / camera.clock.fps
    n = camera.next_frame
    while True:
        delay = loop_start + n * period - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            if n % camera.clock.frame_count == 0:
                on_iteration(camera, n // camera.clock.frame_count)
            tick(camera, n, time.monotonic())
        except Exception:  # one bad frame must not silence the camera for good
            log.exception("%s: frame %d", camera.name, n)
        n += 1
