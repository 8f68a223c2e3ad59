"""Server-sent events framing (text/event-stream, as browsers' EventSource reads it)."""

from __future__ import annotations

import re
from typing import Final

MEDIA_TYPE: Final = "text/event-stream"
# What ends a line for an EventSource: only these (str.splitlines would also split at U+2028
# and the like, which may sit inside a JSON string).
_LINE_END: Final = re.compile(r"\r\n|\r|\n")


def frame(event: str, data: str, event_id: str | None = None) -> bytes:
    """One event: its name, its data (a line each; the reader joins them with newlines) and,
    if given, the id the browser sends back as Last-Event-ID when it reconnects."""
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines += [f"data: {line}" for line in _LINE_END.split(data)]
    return ("\n".join(lines) + "\n\n").encode()


def comment(text: str) -> bytes:
    """A line readers ignore: keeps idle connections (and proxies in between) open."""
    return f": {text}\n\n".encode()
