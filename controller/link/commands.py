"""One-shot commands to agents and their acknowledgements, matched by command id."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field

from fleet.messages import Action, Command, CommandAck
from fleet.utc import now_us


@dataclass
class _Pending:
    agent_id: str
    done: threading.Event = field(default_factory=threading.Event)
    ack: CommandAck | None = None


class CommandTracker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[uuid.UUID, _Pending] = {}

    def issue(self, agent_id: str, action: Action) -> Command:
        command = Command(id=uuid.uuid4(), ts=now_us(), action=action)
        with self._lock:
            self._pending[command.id] = _Pending(agent_id)
        return command

    def resolve(self, agent_id: str, ack: CommandAck) -> None:
        with self._lock:
            pending = self._pending.get(ack.command_id)
            # Only the agent the command went to can answer it.
            if pending is None or pending.agent_id != agent_id:
                return
            pending.ack = ack
        pending.done.set()

    def wait(self, command_id: uuid.UUID, timeout: float) -> CommandAck | None:
        """The ack, or None if none came in time; the command is forgotten either way."""
        with self._lock:
            pending = self._pending.get(command_id)
        if pending is None:
            return None
        pending.done.wait(timeout)
        with self._lock:
            self._pending.pop(command_id, None)
        return pending.ack
