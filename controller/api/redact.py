"""Camera URLs as the API shows them: any password replaced by `***`.

Cameras take credentials in the userinfo (`rtsp://admin:secret@host/...`) and some firmware in
the query (`...?user=admin&password=secret`); both are redacted.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit, urlunsplit

MASK: Final = "***"
_SECRET_PARAMS: Final = frozenset({"password", "passwd", "pass", "pwd"})


def _redact_query(query: str) -> str:
    pairs = []
    for pair in query.split("&"):
        key, eq, _ = pair.partition("=")
        pairs.append(f"{key}={MASK}" if eq and key.lower() in _SECRET_PARAMS else pair)
    return "&".join(pairs)


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:{MASK}@{hostport}"
    query = _redact_query(parts.query) if parts.query else parts.query
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))
