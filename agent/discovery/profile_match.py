"""Which firmware profile a discovered device looks like, and its stream URLs by that profile.

Evidence, stronger first: an RTSP address the device announces has the path of one of the
profile's streams; the device's name or hardware scope names the profile or its family
(manufacturer), as in "HIKVISION DS-2CD2143G0-I" (the simulator announces
"camfleet-sim-<profile>"). Names match as whole words, case-insensitively.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote, urlsplit

from fleet.messages import CameraSpec
from fleet.profiles import FirmwareProfile, ProfileError, StreamKind, list_profiles

ONVIF_SCOPE_PREFIX: Final = "onvif://www.onvif.org/"
_SELF_DESCRIBING: Final = ("name", "hardware")  # scope kinds whose value is the device's own text
# The profile a camera gets when nothing more is known. Its paths are stand-ins for the
# simulator (the real ones come from ONVIF GetStreamUri), so no URL is ever guessed from it.
GENERIC_PROFILE: Final[str] = CameraSpec.model_fields["profile"].default

PATH_EVIDENCE, NAME_EVIDENCE = 2, 1


@dataclass(frozen=True, slots=True)
class ProfileGuess:
    profile: FirmwareProfile
    evidence: int
    family_named: bool  # the device names the profile's family (its manufacturer)


@functools.cache
def shipped_profiles() -> tuple[FirmwareProfile, ...]:
    return tuple(list_profiles())


def suggest_profile(
    scopes: Sequence[str],
    xaddrs: Sequence[str],
    profiles: Sequence[FirmwareProfile] | None = None,
) -> str | None:
    """The name of the profile the device most likely follows, or None if nothing points to
    one or the evidence is a tie between vendors."""
    guess = guess_profile(scopes, xaddrs, profiles)
    return None if guess is None else guess.profile.name


def guess_profile(
    scopes: Sequence[str],
    xaddrs: Sequence[str],
    profiles: Sequence[FirmwareProfile] | None = None,
) -> ProfileGuess | None:
    described = [_words(value) for value in self_description(scopes).values()]
    paths = [_path(x) for x in xaddrs if x.lower().startswith(("rtsp://", "rtsps://"))]
    guesses = [
        _weigh(profile, described, paths)
        for profile in (shipped_profiles() if profiles is None else profiles)
    ]
    best = max((g.evidence for g in guesses), default=0)
    top = [g for g in guesses if g.evidence == best > 0]
    if len(top) > 1:  # a vendor's profile is more specific than the generic one
        top = [g for g in top if g.profile.name != GENERIC_PROFILE]
    return top[0] if len(top) == 1 else None


def self_description(scopes: Sequence[str]) -> dict[str, str]:
    """The device's name and hardware scope values, decoded (the first of each)."""
    found: dict[str, str] = {}
    for scope in scopes:
        if not scope.lower().startswith(ONVIF_SCOPE_PREFIX):
            continue
        kind, _, value = scope[len(ONVIF_SCOPE_PREFIX) :].partition("/")
        if kind.lower() in _SELF_DESCRIBING and value:
            found.setdefault(kind.lower(), unquote(value))
    return found


def stream_urls(
    profile: FirmwareProfile, address: str, xaddrs: Sequence[str]
) -> tuple[str | None, str | None]:
    """(main, sub) URLs: from the RTSP addresses the device announces, completed by the
    profile's templates on the same host and port; else from the templates on the device's
    address and the profile's default port (channel 1), unless the profile is the generic one."""
    announced: dict[StreamKind, tuple[str, int]] = {}  # kind -> (base URL, channel)
    for xaddr in xaddrs:
        parts = urlsplit(xaddr)
        if parts.scheme.lower() not in ("rtsp", "rtsps"):
            continue
        for kind in ("main", "sub"):
            channel = stream_channel(profile, kind, _path(xaddr))
            if channel is not None:
                announced.setdefault(kind, (f"{parts.scheme}://{parts.netloc}", channel))
    if announced:
        base, channel = announced.get("main") or announced["sub"]
        return _url(profile, "main", base, channel), _url(profile, "sub", base, channel)
    if profile.name == GENERIC_PROFILE:
        return None, None
    main = profile.rtsp_url(address, 1, "main")
    sub = profile.rtsp_url(address, 1, "sub") if profile.sub is not None else None
    return main, sub


def stream_channel(profile: FirmwareProfile, kind: StreamKind, path: str) -> int | None:
    """The channel whose `kind` stream has this path (+query) in the profile, if any."""
    stream = profile.main if kind == "main" else profile.sub
    if stream is None:
        return None
    pattern = "".join(
        re.escape(literal) + (r"(\d+)" if field is not None else "")
        for literal, field, _, _ in string.Formatter().parse(stream.path)
    )
    match = re.fullmatch(pattern, path)
    if match is None:
        return None
    channel = int(match.group(1))
    # The digits must also format back the same way (e.g. {channel:02d} wants "01", not "1").
    return channel if channel >= 1 and profile.stream_path(kind, channel) == path else None


def _weigh(profile: FirmwareProfile, described: list[list[str]], paths: list[str]) -> ProfileGuess:
    family_named = any(_has_run(words, _words(profile.family)) for words in described)
    if any(stream_channel(profile, kind, p) for p in paths for kind in ("main", "sub")):
        evidence = PATH_EVIDENCE
    elif family_named or any(_has_run(words, _words(profile.name)) for words in described):
        evidence = NAME_EVIDENCE
    else:
        evidence = 0
    return ProfileGuess(profile, evidence, family_named)


def _url(profile: FirmwareProfile, kind: StreamKind, base: str, channel: int) -> str | None:
    try:
        return base + profile.stream_path(kind, channel)
    except ProfileError:  # the family has no such stream
        return None


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _has_run(words: list[str], run: list[str]) -> bool:
    """Whether `run` occurs in `words` as consecutive whole words."""
    n = len(run)
    return n > 0 and any(words[i : i + n] == run for i in range(len(words) - n + 1))
