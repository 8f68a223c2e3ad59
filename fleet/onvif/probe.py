"""Find ONVIF devices: send a WS-Discovery Probe over UDP and collect the ProbeMatches."""

from __future__ import annotations

import ipaddress
import random
import socket
import time
from collections.abc import Sequence

from fleet.onvif.wsdiscovery import (
    DISCOVERY_PORT,
    MAX_MESSAGE_BYTES,
    MULTICAST_ADDRESS,
    ProbeMatch,
    WsDiscoveryError,
    build_probe,
    parse_probe_matches,
)

# SOAP-over-UDP retransmission: unicast messages are sent twice, multicast three times, the
# first repeat after 50-250 ms and each later one after twice the previous gap (at most 500 ms).
UNICAST_REPEAT = 1
MULTICAST_REPEAT = 2
UDP_MIN_DELAY = 0.05
UDP_MAX_DELAY = 0.25
UDP_UPPER_DELAY = 0.5


class MatchCollector:
    """Answers to one Probe: filters out other traffic, keeps one match per endpoint."""

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.ignored = 0
        self._by_endpoint: dict[str, ProbeMatch] = {}

    def feed(self, data: bytes) -> None:
        try:
            matches = parse_probe_matches(data)
        except WsDiscoveryError:
            self.ignored += 1
            return
        for match in matches:
            if match.relates_to != self.message_id:
                self.ignored += 1
                continue
            seen = self._by_endpoint.get(match.endpoint)
            # A device that changed (new metadata version) between repeats is reported as now.
            if seen is None or match.metadata_version >= seen.metadata_version:
                self._by_endpoint[match.endpoint] = match

    @property
    def matches(self) -> list[ProbeMatch]:
        return list(self._by_endpoint.values())


def send_times(repeats: int, rng: random.Random) -> list[float]:
    """Offsets (s) at which a message is sent: now, then `repeats` backed-off repeats."""
    times = [0.0]
    gap = rng.uniform(UDP_MIN_DELAY, UDP_MAX_DELAY)
    for _ in range(repeats):
        times.append(times[-1] + gap)
        gap = min(gap * 2, UDP_UPPER_DELAY)
    return times


def discover(
    timeout: float = 2.0,
    address: str = MULTICAST_ADDRESS,
    port: int = DISCOVERY_PORT,
    types: Sequence[str] = ("dn:NetworkVideoTransmitter",),
    scopes: Sequence[str] = (),
    interface: str | None = None,
) -> list[ProbeMatch]:
    """Probe `address` (multicast group or one host) and return what answers within `timeout` s.

    `interface` is the local IPv4 address to send multicast from (default: the routing table's
    choice).
    """
    message_id, probe = build_probe(types=types, scopes=scopes)
    host = socket.gethostbyname(address)
    multicast = ipaddress.IPv4Address(host).is_multicast
    collector = MatchCollector(message_id)
    schedule = send_times(MULTICAST_REPEAT if multicast else UNICAST_REPEAT, random.Random())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        if multicast:
            # Discovery stays on the local link.
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            if interface:
                sock.setsockopt(
                    socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface)
                )
        start = time.monotonic()
        deadline = start + timeout
        while (now := time.monotonic()) < deadline:
            while schedule and start + schedule[0] <= now:
                schedule.pop(0)
                sock.sendto(probe, (host, port))
            wake = min(deadline, start + schedule[0]) if schedule else deadline
            sock.settimeout(max(wake - now, 0.001))
            try:
                data, _ = sock.recvfrom(MAX_MESSAGE_BYTES + 1)
            except TimeoutError:
                continue
            collector.feed(data)
    return collector.matches
