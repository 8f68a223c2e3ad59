"""WS-Discovery: message building/parsing, scope matching, and a real UDP probe/answer."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
import string
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import pytest
from conftest import unavailable, wait_for
from hypothesis import given
from hypothesis import strategies as st

from fleet.onvif.probe import MatchCollector, discover, send_times
from fleet.onvif.wsdiscovery import (
    MATCH_BY_RFC2396,
    MATCH_BY_STRCMP0,
    MATCH_BY_UUID,
    MAX_MESSAGE_BYTES,
    MULTICAST_ADDRESS,
    NS_WSD,
    Probe,
    ProbeMatch,
    WsDiscoveryError,
    build_probe,
    build_probe_matches,
    parse_probe,
    parse_probe_matches,
    probe_wants,
    scope_matches,
)
from fleet.sim.discovery import DiscoveryResponder, start_discovery_responder

NVT = "dn:NetworkVideoTransmitter"
ONVIF = "onvif://www.onvif.org"

# --- strategies ---------------------------------------------------------------------------

_URI_CHARS = string.ascii_letters + string.digits + "-._~%!$&'()*+,;=:@"
_segment = st.text(alphabet=_URI_CHARS.replace(".", ""), min_size=1, max_size=12)
_uri_text = st.text(
    alphabet=st.characters(exclude_categories=("Cs", "Cc", "Cn", "Zs", "Zl", "Zp")),
    min_size=1,
    max_size=40,
).filter(lambda s: not any(c.isspace() for c in s))
message_ids = st.uuids().map(lambda u: f"urn:uuid:{u}") | _uri_text
scopes = st.builds(
    lambda kind, segs: f"{ONVIF}/{kind}/" + "/".join(segs),
    st.sampled_from(["name", "hardware", "type", "location", "Profile"]),
    st.lists(_segment, min_size=1, max_size=3),
)
xaddrs = st.builds(
    lambda scheme, port, path: f"{scheme}://127.0.0.1:{port}/{path}",
    st.sampled_from(["rtsp", "http"]),
    st.integers(1, 65535),
    _segment,
)
type_names = st.lists(
    st.sampled_from([NVT, "tds:Device", "wsdp:Device", "{urn:example:types}Thing", "Bare"]),
    unique=True,
    max_size=4,
).map(tuple)
scope_lists = st.lists(scopes, max_size=5).map(tuple)
probe_matches = st.builds(
    ProbeMatch,
    endpoint=st.uuids().map(lambda u: f"urn:uuid:{u}"),
    types=type_names,
    scopes=scope_lists,
    xaddrs=st.lists(xaddrs, max_size=3).map(tuple),
    metadata_version=st.integers(0, 2**32 - 1),
)

# --- round trips ----------------------------------------------------------------------------


@given(message_ids, type_names, scope_lists)
def test_probe_round_trip(
    message_id: str, types: tuple[str, ...], scope_list: tuple[str, ...]
) -> None:
    sent_id, data = build_probe(message_id, types=types, scopes=scope_list)
    assert sent_id == message_id
    assert parse_probe(data) == Probe(message_id, types, scope_list)


def test_build_probe_makes_a_fresh_uuid_message_id() -> None:
    first, data = build_probe()
    second, _ = build_probe()
    assert first.startswith("urn:uuid:") and first != second
    assert parse_probe(data) == Probe(first, (NVT,), ())


@given(message_ids, st.lists(probe_matches, max_size=4))
def test_probe_matches_round_trip(relates_to: str, matches: list[ProbeMatch]) -> None:
    data = build_probe_matches(relates_to, matches)
    assert parse_probe_matches(data) == [replace(m, relates_to=relates_to) for m in matches]


def test_probe_carries_match_rule() -> None:
    _, data = build_probe(scopes=[f"{ONVIF}/name/cam1"], match_by=MATCH_BY_STRCMP0)
    assert parse_probe(data).match_by == MATCH_BY_STRCMP0


@pytest.mark.parametrize(
    "build",
    [
        lambda: build_probe("urn:uuid:has space"),
        lambda: build_probe(scopes=[f"{ONVIF}/name/cam 1"]),
        lambda: build_probe(scopes=[""]),
        lambda: build_probe(types=["xx:Unknown"]),
        lambda: build_probe(types=["dn:1bad"]),
        lambda: build_probe_matches("urn:uuid:1", [ProbeMatch("urn:uuid:2", (), (), ("a\tb",))]),
        lambda: build_probe_matches(
            "urn:uuid:1", [ProbeMatch("urn:uuid:2", (), (), (), metadata_version=-1)]
        ),
    ],
)
def test_build_rejects_what_cannot_round_trip(build: Callable[[], object]) -> None:
    with pytest.raises(WsDiscoveryError):
        build()


# --- real-world-looking messages -------------------------------------------------------------

# ONVIF Device Manager style: default namespaces everywhere, tds declared on the envelope.
ODM_PROBE = b"""<?xml version="1.0" encoding="utf-8"?>
<Envelope xmlns:tds="http://www.onvif.org/ver10/device/wsdl"
          xmlns="http://www.w3.org/2003/05/soap-envelope">
  <Header>
    <wsa:MessageID xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing"
      >uuid:84ede3de-7dec-11d0-c360-f01234567890</wsa:MessageID>
    <wsa:To xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing"
      >urn:schemas-xmlsoap-org:ws:2005:04:discovery</wsa:To>
    <wsa:Action xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing"
      >http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</wsa:Action>
  </Header>
  <Body>
    <Probe xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
           xmlns:xsd="http://www.w3.org/2001/XMLSchema"
           xmlns="http://schemas.xmlsoap.org/ws/2005/04/discovery">
      <Types>tds:Device</Types>
      <Scopes />
    </Probe>
  </Body>
</Envelope>"""

# python-ws-discovery style: generated prefix for the ONVIF namespace, an explicit match rule.
LIBRARY_PROBE = b"""<?xml version="1.0" ?><s:Envelope
 xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing"
 xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery"
 xmlns:s="http://www.w3.org/2003/05/soap-envelope"
 xmlns:dp0="http://www.onvif.org/ver10/network/wsdl"><s:Header><a:Action
 >http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</a:Action><a:MessageID
 >urn:uuid:3b4f8a1e-9d52-4c0e-8f7a-2d6c1b0e9f11</a:MessageID><a:To
 >urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To><a:ReplyTo><a:Address
 >http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo
 ></s:Header><s:Body><d:Probe><d:Types>dp0:NetworkVideoTransmitter</d:Types><d:Scopes
 MatchBy="http://schemas.xmlsoap.org/ws/2005/04/discovery/strcmp0"
 >onvif://www.onvif.org/name/cam2</d:Scopes></d:Probe></s:Body></s:Envelope>"""

# Hikvision style: env/wsa/tdn prefixes, AppSequence, scopes with MAC and percent-encoded name,
# an IPv6 XAddr beside the IPv4 one.
HIKVISION_MATCHES = b"""<?xml version="1.0" encoding="UTF-8"?>
<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"
 xmlns:soapenc="http://www.w3.org/2003/05/soap-encoding"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
 xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:tt="http://www.onvif.org/ver10/schema"
 xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing"
 xmlns:tdn="http://www.onvif.org/ver10/network/wsdl"
 xmlns:tds="http://www.onvif.org/ver10/device/wsdl"
 xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery">
<env:Header>
<wsa:MessageID>urn:uuid:c9f2b1a0-1dd2-11b2-8079-bcbac2b3b7aa</wsa:MessageID>
<wsa:RelatesTo>uuid:84ede3de-7dec-11d0-c360-f01234567890</wsa:RelatesTo>
<wsa:To env:mustUnderstand="true"
 >http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsa:To>
<wsa:Action env:mustUnderstand="true"
 >http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</wsa:Action>
<d:AppSequence env:mustUnderstand="true" MessageNumber="68" InstanceId="1560427519"/>
</env:Header>
<env:Body>
<d:ProbeMatches>
<d:ProbeMatch>
<wsa:EndpointReference>
<wsa:Address>urn:uuid:a43d4d57-e4b8-4f95-8a4e-bcbac2b3b7aa</wsa:Address>
</wsa:EndpointReference>
<d:Types>tdn:NetworkVideoTransmitter tds:Device</d:Types>
<d:Scopes>onvif://www.onvif.org/type/video_encoder onvif://www.onvif.org/Profile/Streaming
 onvif://www.onvif.org/MAC/bc:ba:c2:b3:b7:aa onvif://www.onvif.org/hardware/DS-2CD2143G0-I
 onvif://www.onvif.org/name/HIKVISION%20DS-2CD2143G0-I onvif://www.onvif.org/location/city/hangzhou
</d:Scopes>
<d:XAddrs>http://192.168.1.64/onvif/device_service
 http://[fe80::beba:c2ff:feb3:b7aa]/onvif/device_service</d:XAddrs>
<d:MetadataVersion>10</d:MetadataVersion>
</d:ProbeMatch>
</d:ProbeMatches>
</env:Body>
</env:Envelope>"""

# gSOAP/Axis style: SOAP-ENV prefix, the type namespace declared on Types itself, tabs and
# newlines between list items, two devices in one envelope (a recorder and its channel).
GSOAP_MATCHES = b"""<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope"
 xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing"
 xmlns:wsdd="http://schemas.xmlsoap.org/ws/2005/04/discovery">
<SOAP-ENV:Header>
<wsa:MessageID>urn:uuid:5b4f2e7c-0000-4000-8000-00408c123456</wsa:MessageID>
<wsa:RelatesTo>urn:uuid:3b4f8a1e-9d52-4c0e-8f7a-2d6c1b0e9f11</wsa:RelatesTo>
<wsa:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsa:To>
<wsa:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</wsa:Action>
</SOAP-ENV:Header>
<SOAP-ENV:Body><wsdd:ProbeMatches>
<wsdd:ProbeMatch>
<wsa:EndpointReference><wsa:Address>urn:uuid:00075f8a-4b1c-4e2d-9a00-00408c123456</wsa:Address>
</wsa:EndpointReference>
<wsdd:Types xmlns:ns1="http://www.onvif.org/ver10/network/wsdl"
 >ns1:NetworkVideoTransmitter</wsdd:Types>
<wsdd:Scopes>
\tonvif://www.onvif.org/name/AXIS%20P1448-LE
\tonvif://www.onvif.org/hardware/P1448-LE\tonvif://www.onvif.org/type/video_encoder
</wsdd:Scopes>
<wsdd:XAddrs>http://10.0.0.12:80/onvif/device_service</wsdd:XAddrs>
<wsdd:MetadataVersion> 3 </wsdd:MetadataVersion>
</wsdd:ProbeMatch>
<wsdd:ProbeMatch>
<wsa:EndpointReference><wsa:Address>urn:uuid:00075f8a-4b1c-4e2d-9a00-00408c654321</wsa:Address>
</wsa:EndpointReference>
<wsdd:Types>Bare</wsdd:Types>
<wsdd:Scopes/>
</wsdd:ProbeMatch>
</wsdd:ProbeMatches></SOAP-ENV:Body></SOAP-ENV:Envelope>"""


def test_parse_onvif_device_manager_probe() -> None:
    probe = parse_probe(ODM_PROBE)
    assert probe == Probe("uuid:84ede3de-7dec-11d0-c360-f01234567890", ("tds:Device",), ())


def test_parse_library_probe_with_own_prefix_and_match_rule() -> None:
    probe = parse_probe(LIBRARY_PROBE)
    assert probe.types == (NVT,)
    assert probe.scopes == (f"{ONVIF}/name/cam2",)
    assert probe.match_by == MATCH_BY_STRCMP0


def test_parse_probe_with_undeclared_well_known_prefix() -> None:
    _, data = build_probe("urn:uuid:1")
    undeclared = data.replace(b' xmlns:dn="http://www.onvif.org/ver10/network/wsdl"', b"")
    assert b"xmlns:dn" not in undeclared
    assert parse_probe(undeclared).types == (NVT,)


def test_parse_hikvision_probe_matches() -> None:
    [match] = parse_probe_matches(HIKVISION_MATCHES)
    assert match == ProbeMatch(
        endpoint="urn:uuid:a43d4d57-e4b8-4f95-8a4e-bcbac2b3b7aa",
        types=(NVT, "tds:Device"),
        scopes=(
            f"{ONVIF}/type/video_encoder",
            f"{ONVIF}/Profile/Streaming",
            f"{ONVIF}/MAC/bc:ba:c2:b3:b7:aa",
            f"{ONVIF}/hardware/DS-2CD2143G0-I",
            f"{ONVIF}/name/HIKVISION%20DS-2CD2143G0-I",
            f"{ONVIF}/location/city/hangzhou",
        ),
        xaddrs=(
            "http://192.168.1.64/onvif/device_service",
            "http://[fe80::beba:c2ff:feb3:b7aa]/onvif/device_service",
        ),
        relates_to="uuid:84ede3de-7dec-11d0-c360-f01234567890",
        metadata_version=10,
    )
    assert probe_wants(parse_probe(ODM_PROBE), match.types, match.scopes)


def test_parse_gsoap_probe_matches_with_two_devices() -> None:
    axis, bare = parse_probe_matches(GSOAP_MATCHES)
    assert axis.types == (NVT,)
    assert axis.scopes == (
        f"{ONVIF}/name/AXIS%20P1448-LE",
        f"{ONVIF}/hardware/P1448-LE",
        f"{ONVIF}/type/video_encoder",
    )
    assert axis.xaddrs == ("http://10.0.0.12:80/onvif/device_service",)
    assert axis.metadata_version == 3
    assert axis.relates_to == bare.relates_to == "urn:uuid:3b4f8a1e-9d52-4c0e-8f7a-2d6c1b0e9f11"
    assert bare == ProbeMatch(
        "urn:uuid:00075f8a-4b1c-4e2d-9a00-00408c654321",
        ("Bare",),
        (),
        (),
        relates_to=axis.relates_to,
    )


# --- garbage --------------------------------------------------------------------------------

_HELLO = HIKVISION_MATCHES.replace(b"ProbeMatches", b"Hello").replace(b"ProbeMatch>", b"Hello>")
_BAD_MESSAGES = {
    "empty": b"",
    "not xml": b"\x00\x01garbage",
    "not utf-8": b"<\xff\xfe/>",
    "utf-16": ODM_PROBE.decode().replace("utf-8", "utf-16").encode("utf-16"),
    "too big": ODM_PROBE.replace(
        b"<Scopes />", b"<Scopes>" + b"x" * MAX_MESSAGE_BYTES + b"</Scopes>"
    ),
    "doctype": b'<!DOCTYPE x [<!ENTITY a "aaaa">]>' + ODM_PROBE.split(b"?>", 1)[1],
    "not soap": b"<Envelope><Body><Probe/></Body></Envelope>",
    "soap 1.1": ODM_PROBE.replace(b"2003/05/soap-envelope", b"schemas.xmlsoap.org/soap/envelope/"),
    "ws-discovery 1.1": LIBRARY_PROBE.replace(
        b'schemas.xmlsoap.org/ws/2005/04/discovery"',
        b'docs.oasis-open.org/ws-dd/ns/discovery/2009/01"',
    ),
    "no body": b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"/>',
    "no message id": LIBRARY_PROBE.replace(b"MessageID", b"Nope"),
    "wrong action": LIBRARY_PROBE.replace(b"discovery/Probe<", b"discovery/Resolve<"),
    "unknown type prefix": LIBRARY_PROBE.replace(b"dp0:Network", b"zz:Network"),
    "bad type": LIBRARY_PROBE.replace(b"dp0:NetworkVideoTransmitter", b"dp0:1"),
    "hello": _HELLO,
    "matches without relates-to": HIKVISION_MATCHES.replace(b"RelatesTo", b"Nope"),
    "bad metadata version": HIKVISION_MATCHES.replace(b">10<", b">ten<"),
    "match without address": GSOAP_MATCHES.replace(b"<wsa:Address>", b"<wsa:X>").replace(
        b"</wsa:Address>", b"</wsa:X>"
    ),
}


@pytest.mark.parametrize("name", list(_BAD_MESSAGES))
def test_bad_messages_raise_wsdiscovery_error(name: str) -> None:
    data = _BAD_MESSAGES[name]
    for parse in (parse_probe, parse_probe_matches):
        with pytest.raises(WsDiscoveryError):
            parse(data)


def test_probe_and_matches_are_not_each_other() -> None:
    with pytest.raises(WsDiscoveryError, match="ProbeMatches"):
        parse_probe_matches(ODM_PROBE)
    with pytest.raises(WsDiscoveryError, match="Probe"):
        parse_probe(HIKVISION_MATCHES)


def _parse_or_reject(data: bytes) -> None:
    """Fails the test on any exception other than WsDiscoveryError (a crash on garbage)."""
    for parse in (parse_probe, parse_probe_matches):
        with contextlib.suppress(WsDiscoveryError):
            parse(data)


@given(st.binary(max_size=2048))
def test_random_bytes_only_raise_wsdiscovery_error(data: bytes) -> None:
    _parse_or_reject(data)


@given(
    st.sampled_from([ODM_PROBE, LIBRARY_PROBE, HIKVISION_MATCHES, GSOAP_MATCHES]),
    st.lists(
        st.tuples(st.integers(0, 4000), st.integers(0, 40), st.binary(max_size=8)), max_size=4
    ),
)
def test_mangled_messages_only_raise_wsdiscovery_error(
    original: bytes, edits: list[tuple[int, int, bytes]]
) -> None:
    data = original
    for at, cut, insert in edits:
        at %= len(data) + 1
        data = data[:at] + insert + data[at + cut :]
    _parse_or_reject(data)


# --- matching -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("probe_scope", "target_scope", "expected"),
    [
        (f"{ONVIF}/name/cam1", f"{ONVIF}/name/cam1", True),
        (f"{ONVIF}/name", f"{ONVIF}/name/cam1", True),
        (f"{ONVIF}/name/", f"{ONVIF}/name/cam1", True),
        (f"{ONVIF}", f"{ONVIF}/name/cam1", True),
        ("ONVIF://WWW.ONVIF.ORG/name/cam1", f"{ONVIF}/name/cam1", True),
        (f"{ONVIF}/name/cam1", f"{ONVIF}/name/cam1?x=1#f", True),
        (f"{ONVIF}/name/cam", f"{ONVIF}/name/cam1", False),
        (f"{ONVIF}/Name/cam1", f"{ONVIF}/name/cam1", False),
        (f"{ONVIF}/name/cam1/x", f"{ONVIF}/name/cam1", False),
        ("onvif://other.org/name/cam1", f"{ONVIF}/name/cam1", False),
        ("http://www.onvif.org/name/cam1", f"{ONVIF}/name/cam1", False),
        (f"{ONVIF}/name/./cam1", f"{ONVIF}/name/./cam1", False),
        (f"{ONVIF}/name/..", f"{ONVIF}/name/../x", False),
    ],
)
def test_rfc2396_scope_matching(probe_scope: str, target_scope: str, expected: bool) -> None:
    assert scope_matches(probe_scope, target_scope, MATCH_BY_RFC2396) is expected


@given(st.lists(_segment, min_size=1, max_size=5), st.integers(0, 5), st.sampled_from("xZ9"))
def test_rfc2396_matches_segment_prefixes_only(segs: list[str], keep: int, extra: str) -> None:
    target = f"{ONVIF}/" + "/".join(segs)
    prefix = segs[: min(keep, len(segs))]
    assert scope_matches(f"{ONVIF}/" + "/".join(prefix), target)
    # Growing the last kept segment makes it a string prefix but not a segment prefix.
    if prefix:
        grown = [*prefix[:-1], prefix[-1] + extra]
        assert scope_matches(f"{ONVIF}/" + "/".join(grown), target) is (grown == segs[: len(grown)])


def test_other_match_rules() -> None:
    u = "uuid:0F2D3C4B-0000-4000-8000-00408C123456"
    assert scope_matches(u, u.lower(), MATCH_BY_UUID)
    assert not scope_matches(u, "uuid:0f2d3c4b-0000-4000-8000-00408c123457", MATCH_BY_UUID)
    assert not scope_matches("uuid:nonsense", "uuid:nonsense", MATCH_BY_UUID)
    assert scope_matches(f"{ONVIF}/name/cam1", f"{ONVIF}/name/cam1", MATCH_BY_STRCMP0)
    assert not scope_matches(f"{ONVIF}/name", f"{ONVIF}/name/cam1", MATCH_BY_STRCMP0)
    ldap = f"{NS_WSD}/ldap"
    assert not scope_matches(f"{ONVIF}/name/cam1", f"{ONVIF}/name/cam1", ldap)


def test_probe_wants_types_and_scopes() -> None:
    types = (NVT, "tds:Device")
    scope_list = (f"{ONVIF}/name/cam1", f"{ONVIF}/hardware/camfleet-sim")
    assert probe_wants(Probe("m", (), ()), (), ())
    assert probe_wants(Probe("m", (NVT,), ()), types, scope_list)
    assert probe_wants(Probe("m", ("tds:Device", NVT), (f"{ONVIF}/name",)), types, scope_list)
    assert probe_wants(
        Probe("m", (), (f"{ONVIF}/name/cam1", f"{ONVIF}/hardware")), types, scope_list
    )
    assert not probe_wants(Probe("m", ("wsdp:Device",), ()), types, scope_list)
    assert not probe_wants(Probe("m", (), (f"{ONVIF}/name/cam2",)), types, scope_list)
    assert not probe_wants(
        Probe("m", (), (f"{ONVIF}/name/cam1", f"{ONVIF}/location")), types, scope_list
    )
    # Types compare by namespace, not by the prefix the prober happened to use.
    assert probe_wants(parse_probe(LIBRARY_PROBE), types, (f"{ONVIF}/name/cam2",))


# --- client-side collection -----------------------------------------------------------------


def test_collector_keeps_answers_to_its_probe_once_per_device() -> None:
    cam = ProbeMatch("urn:uuid:1", (NVT,), (), ("rtsp://127.0.0.1:8554/cam1",))
    collector = MatchCollector("urn:uuid:mine")
    collector.feed(build_probe_matches("urn:uuid:mine", [cam]))
    collector.feed(build_probe_matches("urn:uuid:mine", [replace(cam, metadata_version=2)]))
    collector.feed(build_probe_matches("urn:uuid:mine", [cam]))  # a stale repeat
    collector.feed(build_probe_matches("urn:uuid:other", [replace(cam, endpoint="urn:uuid:2")]))
    collector.feed(b"garbage")
    assert collector.matches == [replace(cam, relates_to="urn:uuid:mine", metadata_version=2)]
    assert collector.ignored == 2


def test_send_times_back_off_within_soap_over_udp_bounds() -> None:
    for seed in range(20):
        times = send_times(3, random.Random(seed))
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert times[0] == 0 and len(gaps) == 3
        assert 0.05 <= gaps[0] <= 0.25
        for earlier, later in itertools.pairwise(gaps):
            assert later == pytest.approx(min(2 * earlier, 0.5))


# --- real UDP -------------------------------------------------------------------------------

CAMS = [
    ProbeMatch(
        endpoint=f"urn:uuid:00000000-0000-4000-8000-00000000000{i}",
        types=(NVT, "tds:Device"),
        scopes=(
            f"{ONVIF}/name/cam{i}",
            f"{ONVIF}/hardware/camfleet-sim",
            f"{ONVIF}/type/video_encoder",
        ),
        xaddrs=(
            f"http://127.0.0.1:8080/onvif/device_service/cam{i}",
            f"rtsp://127.0.0.1:8554/cam{i}",
        ),
    )
    for i in (1, 2)
]

Responder = tuple[DiscoveryResponder, int]


@pytest.fixture
def responder_on() -> Iterator[Callable[..., Responder]]:
    """Starts responders in an event loop running in a thread, as the simulator would."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    transports: list[asyncio.DatagramTransport] = []

    def start(
        matches: Callable[[], Sequence[ProbeMatch]], host: str = "127.0.0.1", **kw: bool
    ) -> Responder:
        coro = start_discovery_responder(host, 0, matches, **kw)
        transport, responder = asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=5)
        transports.append(transport)
        return responder, transport.get_extra_info("sockname")[1]

    yield start
    for transport in transports:
        loop.call_soon_threadsafe(transport.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    loop.close()


def _sorted(matches: list[ProbeMatch]) -> list[ProbeMatch]:
    return sorted((replace(m, relates_to="") for m in matches), key=lambda m: m.endpoint)


def test_discover_over_udp_and_survive_garbage(responder_on: Callable[..., Responder]) -> None:
    cams = list(CAMS)
    responder, port = responder_on(lambda: cams)
    found = discover(timeout=0.4, address="127.0.0.1", port=port)
    assert _sorted(found) == CAMS
    assert {m.relates_to for m in found} != {""}
    # The repeated unicast probe (same MessageID) is answered once.
    wait_for(lambda: responder.duplicates == 1, timeout=5, what="repeated probe seen")
    assert responder.probes_answered == 1

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"<not a probe", ("127.0.0.1", port))
        sock.sendto(HIKVISION_MATCHES, ("127.0.0.1", port))
    wait_for(lambda: responder.garbage == 2, timeout=5, what="garbage counted")

    # The device list is read per probe, and scopes narrow who answers.
    cams.append(replace(CAMS[0], endpoint="urn:uuid:00000000-0000-4000-8000-000000000003"))
    found = discover(timeout=0.4, address="127.0.0.1", port=port, scopes=[f"{ONVIF}/name/cam1"])
    assert _sorted(found) == [CAMS[0], cams[2]]
    assert discover(timeout=0.3, address="127.0.0.1", port=port, types=["wsdp:Device"]) == []
    wait_for(lambda: responder.probes_unmatched == 1, timeout=5, what="unmatched probe seen")
    assert responder.probes_answered == 2


def test_responder_survives_a_failing_device_list(responder_on: Callable[..., Responder]) -> None:
    broken = [True]

    def matches() -> list[ProbeMatch]:
        if broken[0]:
            raise RuntimeError("simulator state unavailable")
        return CAMS

    responder, port = responder_on(matches)
    assert discover(timeout=0.3, address="127.0.0.1", port=port) == []
    assert responder.errors == 1
    broken[0] = False
    assert _sorted(discover(timeout=0.4, address="127.0.0.1", port=port)) == CAMS


def test_discover_over_loopback_multicast(responder_on: Callable[..., Responder]) -> None:
    try:
        responder, port = responder_on(lambda: CAMS[:1], join_multicast=True)
    except OSError as exc:  # e.g. no multicast route in a minimal container
        unavailable(f"cannot join {MULTICAST_ADDRESS} on loopback (needs a multicast route): {exc}")
    found = discover(timeout=1.0, port=port, interface="127.0.0.1")
    assert _sorted(found) == CAMS[:1]
    wait_for(lambda: responder.duplicates == 2, timeout=5, what="both repeats seen")
    assert responder.probes_answered == 1
