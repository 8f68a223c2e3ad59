"""One-shot commands from the controller, run on their own thread and answered with a
CommandAck through the outbox.

A command id seen again (QoS 1 redelivery) is answered with its first ack, not run again; one
still running is answered when it ends. An extract_clip's clip id derives from the command id,
so even a command re-run after an agent restart yields the same clip (harmless repeats).
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from agent.fleet.clips import ClipJob, ClipRequestError, ClipWorker
from agent.fleet.outbox import Outbox, OutboxMessage
from agent.fleet.reconcile import short_text
from fleet.messages import (
    CaptureReference,
    Command,
    CommandAck,
    Discover,
    DiscoveryReport,
    ExtractClip,
    FoundCamera,
)
from fleet.topics import TopicKind
from fleet.utc import now_us

log = logging.getLogger("camfleet.agent.fleet.commands")

DiscoverHook = Callable[[Sequence[str], float], list[FoundCamera]]  # (subnets, timeout_s)
RECENT: Final = 1024  # command ids remembered
_CLIP_IDS: Final = uuid.UUID("5b0c3f9e-2f4e-4d8a-9c1b-0e6c7a1d2b3f")  # namespace for uuid5


def no_discovery(subnets: Sequence[str], timeout_s: float) -> list[FoundCamera]:
    """Until discovery is wired in, a probe finds nothing."""
    return []


class CommandRunner:
    def __init__(
        self,
        agent_id: str,
        outbox: Outbox,
        clips: ClipWorker,
        on_queued: Callable[[], None],
        discover: DiscoverHook = no_discovery,
        subnets: Sequence[str] = (),
    ) -> None:
        self.agent_id, self.outbox, self.clips = agent_id, outbox, clips
        self.on_queued, self.discover, self.subnets = on_queued, discover, list(subnets)
        self._lock = threading.Lock()
        self._recent: OrderedDict[uuid.UUID, CommandAck | None] = OrderedDict()  # None: running
        self._queue: queue.SimpleQueue[Command | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="fleet-commands", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(35)  # a discovery probe takes at most 30 s

    def submit(self, command: Command) -> None:
        """From the network thread: queue only."""
        self._queue.put(command)

    def remember(self, ack: CommandAck) -> None:
        """The final answer to a command (the clip worker's, for extract_clip)."""
        with self._lock:
            self._recent[ack.command_id] = ack
            self._recent.move_to_end(ack.command_id)
            while len(self._recent) > RECENT:
                self._recent.popitem(last=False)

    def _run(self) -> None:
        while (command := self._queue.get()) is not None:
            try:
                self._handle(command)
            except Exception:  # the outbox failing (disk): the controller may ask again
                log.exception("command %s failed", command.id)

    def _handle(self, command: Command) -> None:
        with self._lock:
            seen = command.id in self._recent
            ack = self._recent.get(command.id)
            if not seen:
                self._recent[command.id] = None
        if seen:
            if ack is not None:
                self._queue_ack(ack)
            return
        action = command.action
        log.info("command %s: %s", command.id, action.name)
        if isinstance(action, ExtractClip):
            self._extract_clip(command.id, action)
        elif isinstance(action, CaptureReference):
            self._answer(command.id, f"{action.name} is not supported yet")
        elif isinstance(action, Discover):
            self._discover(command.id, action)

    def _extract_clip(self, command_id: uuid.UUID, action: ExtractClip) -> None:
        try:
            job = ClipJob(uuid.uuid5(_CLIP_IDS, str(command_id)), action.camera, action.from_us,
                          action.to_us, action.event_id, command_id)  # fmt: skip
            self.clips.schedule(job)  # the clip worker acks once the clip is queued
        except ClipRequestError as exc:
            self._answer(command_id, str(exc))

    def _discover(self, command_id: uuid.UUID, action: Discover) -> None:
        try:
            found = self.discover(self.subnets, action.timeout_s)
            report = DiscoveryReport(ts=now_us(), subnets=self.subnets, cameras=found)
        except Exception as exc:
            log.exception("discovery failed")
            self._answer(command_id, f"discovery failed: {exc}")
            return
        report_message = OutboxMessage.of(self.agent_id, TopicKind.DISCOVERY, report)
        self._answer(command_id, None, [report_message])

    def _answer(
        self, command_id: uuid.UUID, error: str | None, before: Iterable[OutboxMessage] = ()
    ) -> None:
        """Queue what the command produced, then its ack (ok unless `error`)."""
        text = None if error is None else short_text(error)
        ack = CommandAck(command_id=command_id, ts=now_us(), ok=error is None, error=text)
        ack_message = OutboxMessage.of(self.agent_id, TopicKind.ACKS, ack)
        self.outbox.put_all([*before, ack_message])
        self.remember(ack)
        self.on_queued()

    def _queue_ack(self, ack: CommandAck) -> None:
        self.outbox.put(OutboxMessage.of(self.agent_id, TopicKind.ACKS, ack))
        self.on_queued()
