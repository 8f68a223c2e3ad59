"""WS-Discovery responder: the simulator's cameras answer ONVIF Probes like real ones."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import cast

from fleet.onvif.wsdiscovery import (
    MULTICAST_ADDRESS,
    ProbeMatch,
    WsDiscoveryError,
    build_probe_matches,
    parse_probe,
    probe_wants,
)

log = logging.getLogger(__name__)

# SOAP-over-UDP clients repeat each Probe with the same MessageID; answer it once.
_REMEMBERED_PROBES = 256


class DiscoveryResponder(asyncio.DatagramProtocol):
    """Answers Probes for the devices `matches()` returns at the time of each probe.

    Every matching device answers in its own ProbeMatches datagram, as separate cameras would:
    datagrams stay small (no IP fragmentation) and clients that read only the first match of an
    envelope still see every camera.
    """

    def __init__(self, matches: Callable[[], Sequence[ProbeMatch]]) -> None:
        self._matches = matches
        self._transport: asyncio.DatagramTransport | None = None
        self._seen: OrderedDict[str, None] = OrderedDict()
        # AppSequence: a new instance per responder start, messages numbered within it.
        self._instance_id = int(time.time())
        self._message_number = 0
        self.probes_answered = 0
        self.probes_unmatched = 0
        self.duplicates = 0
        self.garbage = 0
        self.errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A datagram endpoint's transport, though 3.11's class does not inherit DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            self._answer(data, addr)
        except Exception:  # a bad device list must not take the responder down
            self.errors += 1
            log.exception("discovery: failed to answer a probe from %s", addr)

    def _answer(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            probe = parse_probe(data)
        except WsDiscoveryError as exc:
            self.garbage += 1
            log.debug("discovery: ignored datagram from %s: %s", addr, exc)
            return
        if probe.message_id in self._seen:
            self.duplicates += 1
            return
        self._seen[probe.message_id] = None
        if len(self._seen) > _REMEMBERED_PROBES:
            self._seen.popitem(last=False)
        wanted = [m for m in self._matches() if probe_wants(probe, m.types, m.scopes)]
        if not wanted:
            self.probes_unmatched += 1
            return
        for match in wanted:
            self._message_number += 1
            reply = build_probe_matches(
                probe.message_id,
                [match],
                instance_id=self._instance_id,
                message_number=self._message_number,
            )
            if self._transport is not None:
                self._transport.sendto(reply, addr)
        self.probes_answered += 1


async def start_discovery_responder(
    host: str,
    port: int,
    matches: Callable[[], Sequence[ProbeMatch]],
    join_multicast: bool = False,
) -> tuple[asyncio.DatagramTransport, DiscoveryResponder]:
    """Listen for Probes on host:port (port 0 picks a free one).

    With `join_multicast` the socket joins 239.255.255.250 on the interface whose address is
    `host` (any interface for "" or 0.0.0.0) and so binds the wildcard address: Linux delivers
    group datagrams only to sockets bound to the wildcard or the group.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if join_multicast:
            # Other WS-Discovery services on this host may hold the port too.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("", port))
            interface = socket.inet_aton(host or "0.0.0.0")
            membership = socket.inet_aton(MULTICAST_ADDRESS) + interface
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        else:
            sock.bind((host, port))
        loop = asyncio.get_running_loop()
        transport, responder = await loop.create_datagram_endpoint(
            lambda: DiscoveryResponder(matches), sock=sock
        )
    except BaseException:
        sock.close()
        raise
    return transport, responder
