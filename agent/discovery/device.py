"""A WS-Discovery answer turned into a FoundCamera: where it is, what it is, how to stream it."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import TypeAdapter, ValidationError

from agent.discovery.profile_match import (
    GENERIC_PROFILE,
    guess_profile,
    self_description,
    stream_urls,
)
from fleet.messages import FoundCamera, HttpUrl, printable_ascii
from fleet.onvif.wsdiscovery import ProbeMatch

log = logging.getLogger("camfleet.agent.discovery")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Items of FoundCamera's lists: a device's odd scope or address is dropped, not the device.
_SCOPE: TypeAdapter[str] = TypeAdapter(Annotated[str, printable_ascii(512)])
_HTTP_URL: TypeAdapter[str] = TypeAdapter(HttpUrl)


def device_address(xaddrs: Sequence[str]) -> IpAddress | None:
    """The device's IP address from the hosts of its announced addresses, IPv4 first."""
    found: list[IpAddress] = []
    for xaddr in xaddrs:
        try:
            host = urlsplit(xaddr).hostname
            found.append(ipaddress.ip_address(host or ""))
        except ValueError:  # a host name, or no URL at all
            continue
    return min(found, key=lambda a: a.version, default=None)


def found_camera(match: ProbeMatch, answered_from: IpAddress | None) -> FoundCamera | None:
    """What the agent makes of one answer; None (logged) for a device it cannot describe.

    The address comes from the device's own addresses: one responder may answer for several
    devices (an NVR, the simulator). `answered_from` is used only if it names none.
    """
    address = device_address(match.xaddrs) or answered_from
    if address is None:
        log.warning("discovery: %s announces no IP address; skipped", match.endpoint[:100])
        return None
    guess = guess_profile(match.scopes, match.xaddrs)
    main_url = sub_url = None
    if guess is not None:
        main_url, sub_url = stream_urls(guess.profile, str(address), match.xaddrs)
    named_vendor = (
        guess is not None and guess.family_named and guess.profile.name != GENERIC_PROFILE
    )
    try:
        return FoundCamera(
            endpoint=match.endpoint,
            address=str(address),
            xaddrs=[x for x in match.xaddrs if _fits(_HTTP_URL, x)],
            scopes=[s for s in match.scopes if _fits(_SCOPE, s)],
            manufacturer=guess.profile.family if guess is not None and named_vendor else None,
            model=self_description(match.scopes).get("hardware"),
            suggested_profile=None if guess is None else guess.profile.name,
            main_url=main_url,
            sub_url=sub_url,
        )
    except ValidationError as exc:
        log.warning("discovery: cannot describe %s at %s: %s", match.endpoint[:100], address, exc)
        return None


def _fits(adapter: TypeAdapter[str], value: str) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True
