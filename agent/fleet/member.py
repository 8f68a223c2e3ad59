"""The agent as a fleet member: runs the cameras its desired state names, reports what runs,
sends heartbeats, answers commands, and raises events with their clips.

Threads: paho's network thread only hands things over (LinkListener); the control thread
applies desired states, sends heartbeats and reported states; commands, clips and the outbox
sender have a thread each. Slow work (stopping a camera, waiting for a clip's recording)
never runs on the network thread.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from typing import Any, Final

from agent.fleet.clips import ClipJob, ClipWorker
from agent.fleet.commands import CommandRunner, DiscoverHook, no_discovery
from agent.fleet.desired_cache import cache_age_s, load_desired, save_desired, touch_contact
from agent.fleet.heartbeat import HeartbeatBuilder
from agent.fleet.link import AgentLink
from agent.fleet.models import ModelCache
from agent.fleet.options import AgentOptions
from agent.fleet.outbox import Outbox, OutboxMessage
from agent.fleet.reconcile import (
    cameras_from_desired,
    model_errors,
    reported_state,
    same_report,
)
from agent.fleet.sender import OutboxSender
from agent.fleet.session import SessionCounter
from agent.fleet.version import software_version
from agent.runtime import AgentRuntime
from fleet.config import CameraConfig
from fleet.enrollment import AgentCredentials
from fleet.messages import (
    IDENTITY,
    BaseMessage,
    Command,
    CommandAck,
    DesiredState,
    Event,
    ReportedState,
)
from fleet.topics import TopicKind
from fleet.utc import now_us

log = logging.getLogger("camfleet.agent.fleet")

HEARTBEAT_S: Final = 5.0
# How long a starting agent waits for the broker (and its retained desired state) before it
# considers running its cached cameras.
CACHE_WAIT_S: Final = 5.0

# (runtime stats, now µs) -> camera-health events to raise; the health monitor plugs in here.
HealthHook = Callable[[Mapping[str, Any], int], Iterable[Event]]


def no_health_events(stats: Mapping[str, Any], now: int) -> list[Event]:
    """Until the health monitor is wired in, nothing is raised from stats."""
    return []


class FleetMember:
    def __init__(
        self,
        runtime: AgentRuntime,
        creds: AgentCredentials,
        options: AgentOptions,
        *,
        heartbeat_s: float = HEARTBEAT_S,
        discover: DiscoverHook = no_discovery,
        health_events: HealthHook = no_health_events,
    ) -> None:
        self.runtime = runtime
        self.agent_id = creds.agent_id
        self.heartbeat_s = heartbeat_s
        self.health_events = health_events
        data_dir = runtime.data_dir
        self.outbox = Outbox.open(data_dir)
        http = runtime.config.http
        host = socket.gethostname() if http.host in ("0.0.0.0", "::") else http.host
        self.link = AgentLink(
            creds, SessionCounter.open(data_dir), self, software_version(), options.subnets,
            http_url=f"http://{host}:{http.port}",
        )  # fmt: skip
        self.sender = OutboxSender(self.outbox, self.link)
        self.clips = ClipWorker(data_dir, self.agent_id, self.outbox, self.sender.wake,
                                self._clip_acked)  # fmt: skip
        self.commands = CommandRunner(self.agent_id, self.outbox, self.clips, self.sender.wake,
                                      discover, options.subnets)  # fmt: skip
        self.heartbeats = HeartbeatBuilder(heartbeat_s, options.max_cameras)
        self._lock = threading.Lock()
        self._incoming: DesiredState | None = None  # the latest not applied
        # The cached state runs only if the broker stays out of reach at start, and only within
        # its lease: after a restart the controller's retained state is what counts.
        self._cached = load_desired(data_dir)
        self._started = time.monotonic()
        # Only the control thread writes these.
        self._applied_version: int | None = None
        self._applied: DesiredState | None = None
        self._wanted: list[CameraConfig] = []
        self._errors: dict[str, str] = {}
        self._reported: ReportedState | None = None  # last published
        self._report_due = threading.Event()  # (re)connected: publish even if unchanged
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.models = ModelCache(data_dir, creds, on_change=self._wake.set)
        self._thread = threading.Thread(target=self._run, name="fleet-control", daemon=True)

    def start(self) -> None:
        self.clips.start()
        self.commands.start()
        self.sender.start()
        self.models.start()
        self.link.start()
        self._thread.start()

    def stop(self) -> None:
        """Stop talking to the controller (offline status sent); the runtime is the caller's."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(60)
        self.models.stop()
        self.commands.stop()
        self.clips.stop()
        self.sender.stop()
        self.link.stop()
        self.outbox.close()

    def raise_event(self, event: Event, clip_window: tuple[int, int] | None = None) -> Event:
        """Queue an event for the controller; with `clip_window` (from_us, to_us) its clip
        follows (the event then names it). Returns the event as sent.

        ClipRequestError if the clip window is refused (too long, too far ahead).
        """
        if clip_window is not None:
            job = ClipJob(uuid.uuid4(), event.camera, *clip_window, event_id=event.id)
            # The clip is promised first: a crash in between leaves a clip, never an event
            # whose clip is lost.
            self.clips.schedule(job)
            event = event.model_copy(update={"clip_id": job.clip_id})
        self.outbox.put(OutboxMessage.of(self.agent_id, TopicKind.EVENTS, event))
        self.sender.wake()
        return event

    def raise_test_event(self, camera: str, pre_s: float, post_s: float) -> Event:
        """A synthetic anomaly now, with a clip from pre_s before to post_s after."""
        peak = now_us()
        event = Event(
            id=uuid.uuid4(), camera=camera, roi_id="test", kind="anomaly", start_us=peak,
            end_us=peak, peak_us=peak, peak_score=1.0, detail="synthetic event (test hook)",
            adjustment=IDENTITY,
        )  # fmt: skip
        return self.raise_event(event, (peak - round(pre_s * 1e6), peak + round(post_s * 1e6)))

    def stats(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "connected": self.link.connected,
            "session": self.link.session,
            "desired_version": self._applied_version,
            "outbox": asdict(self.outbox.stats()),
            "clip_jobs": len(self.clips.jobs.pending()),
            "sender": asdict(self.sender.stats()),
            "refused": self.link.refusals(),
            "models": self.models.stats(),
        }

    # -- LinkListener (paho's network thread: hand over, never block) -------------------------

    def connected(self, session: int) -> None:
        self._report_due.set()
        self.sender.wake()
        self._wake.set()

    def disconnected(self, reason: str) -> None:
        pass  # paho reconnects; the outbox keeps what waits

    def published(self, mid: int) -> None:
        self.sender.acked(mid)

    def received(self, kind: TopicKind, message: BaseMessage) -> None:
        if isinstance(message, DesiredState):
            with self._lock:
                self._cached = None
                pending = self._incoming
                if pending is None or message.version >= pending.version:
                    self._incoming = message
            self._wake.set()
        elif isinstance(message, Command):
            self.commands.submit(message)
        else:
            log.info("ignoring a %s message: not supported yet", kind.value)

    # -- the control thread -------------------------------------------------------------------

    def _clip_acked(self, ack: CommandAck) -> None:
        self.commands.remember(ack)

    def _run(self) -> None:
        next_beat = time.monotonic()
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self._reconcile()
                stats = self.runtime.stats()
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self.heartbeat_s
                    self._beat(stats)
                self._report(stats)
            except Exception:
                log.exception("fleet control step failed; retrying")
            self._wake.wait(max(0.0, next_beat - time.monotonic()))

    def _fall_back_to_cache(self) -> None:
        """At start, with the broker out of reach for a while: run the cached state if its lease
        (counted from the last contact with the broker) has not run out."""
        with self._lock:
            cached = self._cached
            if cached is None or time.monotonic() - self._started < CACHE_WAIT_S:
                return
            self._cached = None
        age_s = cache_age_s(self.runtime.data_dir)
        if cached.lease_s is None or age_s is None or age_s > cached.lease_s:
            log.warning("broker out of reach; not running cached desired state %d: last contact "
                        "%s s ago, older than its lease (%s s)", cached.version,
                        "?" if age_s is None else f"{age_s:.0f}", cached.lease_s)  # fmt: skip
            return
        log.warning("broker out of reach; running cached desired state %d (last contact %.0f s "
                    "ago, lease %.0f s)", cached.version, age_s, cached.lease_s)  # fmt: skip
        with self._lock:
            if self._incoming is None:
                self._incoming = cached

    def _reconcile(self) -> None:
        if not self.link.connected:
            self._fall_back_to_cache()
        with self._lock:
            desired, self._incoming = self._incoming, None
        if desired is None:
            # The same state again once a model fetch ended or a failed one may be retried.
            if self._applied is not None and self.models.due():
                self._apply(self._applied)
            return
        if self._applied_version is not None and desired.version < self._applied_version:
            log.warning("ignoring desired state %d: %d is applied already", desired.version,
                        self._applied_version)  # fmt: skip
            return
        self._apply(desired)
        log.info("desired state %d applied: %d cameras, %d not started or without their model",
                 desired.version, len(self._wanted), len(self._errors))  # fmt: skip
        try:
            save_desired(self.runtime.data_dir, desired)
        except OSError as exc:
            log.error("cannot cache the desired state: %s", exc)

    def _apply(self, desired: DesiredState) -> None:
        """Run the state's cameras, each with its model if that is verified and at hand."""
        ready, failed = self.models.resolve(c.model for c in desired.cameras if c.model)
        cameras = cameras_from_desired(desired, ready)
        not_started = self.runtime.apply_cameras(cameras)
        self._errors = {**model_errors(desired, failed), **not_started}
        self._applied_version, self._applied, self._wanted = desired.version, desired, cameras

    def _beat(self, stats: Mapping[str, Any]) -> None:
        now = now_us()
        heartbeat = self.heartbeats.build(stats, now)
        if self.link.connected:
            self.link.send(TopicKind.HEARTBEAT, heartbeat)
            touch_contact(self.runtime.data_dir)
        for event in self.health_events(stats, now):
            self.raise_event(event)

    def _report(self, stats: Mapping[str, Any]) -> None:
        if not self.link.connected:
            return
        report = reported_state(
            self._applied_version, self._wanted, stats["streams"], self._errors, now_us()
        )
        if self._report_due.is_set() or not same_report(self._reported, report):
            self._report_due.clear()
            self.link.send(TopicKind.REPORTED_STATE, report)
            self._reported = report
