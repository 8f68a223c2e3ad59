"""Probe for ONVIF cameras and keep those on the agent's subnets.

Without `targets` the probe is multicast on the local link (239.255.255.250, `port`); with
them each target gets its own unicast probe, all at once, for cameras beyond the local link or
a responder on another port (the simulator's `--discovery-port`).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from agent.discovery.device import IpAddress, found_camera
from fleet.messages import FoundCamera
from fleet.onvif.probe import discover
from fleet.onvif.wsdiscovery import DISCOVERY_PORT, MULTICAST_ADDRESS, ProbeMatch

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAX_PARALLEL_PROBES = 32


class DiscoveryError(ValueError):
    """A scan that cannot be done as asked (bad subnet, target or timeout, socket failure)."""


def scan(
    subnets: Sequence[str],
    *,
    timeout_s: float = 3.0,
    port: int = DISCOVERY_PORT,
    targets: Sequence[str] | None = None,
) -> list[FoundCamera]:
    """Cameras that answered within `timeout_s`, on one of `subnets` (any, if none is given),
    one per endpoint, ordered by address."""
    networks = parse_subnets(subnets)
    if not timeout_s > 0:
        raise DiscoveryError(f"timeout must be > 0 s, got {timeout_s}")
    if not 1 <= port <= 65535:
        raise DiscoveryError(f"bad port {port}")
    destinations: list[tuple[str, IpAddress | None]] = (
        [(str(ip), ip) for ip in (_resolve(t) for t in targets)]
        if targets
        else [(MULTICAST_ADDRESS, None)]
    )

    def probe(destination: tuple[str, IpAddress | None]) -> list[ProbeMatch]:
        try:
            return discover(timeout=timeout_s, address=destination[0], port=port)
        except OSError as exc:
            raise DiscoveryError(f"cannot probe {destination[0]}:{port}: {exc}") from None

    with ThreadPoolExecutor(min(len(destinations), _MAX_PARALLEL_PROBES)) as pool:
        answers = list(pool.map(probe, destinations))
    by_endpoint: dict[str, FoundCamera] = {}
    for (_, answered_from), matches in zip(destinations, answers, strict=True):
        for match in matches:
            camera = found_camera(match, answered_from)
            if camera is not None and in_subnets(camera.address, networks):
                by_endpoint.setdefault(camera.endpoint, camera)
    return sorted(by_endpoint.values(), key=lambda c: (_ip_key(c.address), c.endpoint))


def parse_subnets(subnets: Sequence[str]) -> list[IpNetwork]:
    try:
        return [ipaddress.ip_network(s, strict=False) for s in subnets]
    except ValueError as exc:
        raise DiscoveryError(f"bad subnet: {exc}") from None


def in_subnets(address: str, networks: Sequence[IpNetwork]) -> bool:
    """Whether `address` lies in one of `networks`; every address does if there are none."""
    ip = ipaddress.ip_address(address)
    return not networks or any(ip in network for network in networks)


def _resolve(target: str) -> IpAddress:
    try:
        return ipaddress.ip_address(target)
    except ValueError:
        pass
    try:
        return ipaddress.ip_address(socket.gethostbyname(target))
    except OSError as exc:
        raise DiscoveryError(f"cannot resolve target {target!r}: {exc}") from None


def _ip_key(address: str) -> tuple[int, int]:
    ip = ipaddress.ip_address(address)
    return ip.version, int(ip)
