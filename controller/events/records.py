"""What the event center hands out: stored events with their receipt and acknowledgement."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from fleet.messages import AgentId, Event, StampUs


class UnknownEvent(LookupError):
    """No event with that id has been stored."""


class EventRecord(Event):
    """An Event as the controller stored it: who sent it, when, and what was done about it.

    `clip_id` is the event's own clip or, failing that, a complete clip whose manifest names
    the event; `clip_complete` says whether that clip can be served. `open`, `threshold` and
    `scores` are as the agent's latest message for the event said.
    """

    agent_id: AgentId
    received_us: StampUs
    acknowledged_by: Annotated[str, Field(max_length=256)] | None = None
    acknowledged_us: StampUs | None = None
    clip_complete: bool = False


class EventPage(BaseModel):
    """One page of a query, newest first; pass `next_cursor` back for the next (None: no more)."""

    model_config = ConfigDict(frozen=True)

    items: list[EventRecord]
    next_cursor: str | None
