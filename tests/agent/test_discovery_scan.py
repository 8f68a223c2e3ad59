"""Camera discovery: against the simulator's real WS-Discovery responder, and the pure parts
(profile suggestion, stream URLs, what a FoundCamera holds, subnet filtering)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator

import av
import pytest
from conftest import SimProcess, free_port, start_sim

from agent.discovery.device import found_camera
from agent.discovery.profile_match import stream_urls, suggest_profile
from agent.discovery.scan import DiscoveryError, in_subnets, parse_subnets, scan
from fleet.onvif.wsdiscovery import ProbeMatch
from fleet.profiles import load_profile

ONVIF = "onvif://www.onvif.org"
HIKVISION_SCOPES = (
    f"{ONVIF}/type/video_encoder",
    f"{ONVIF}/Profile/Streaming",
    f"{ONVIF}/MAC/bc:ba:c2:b3:b7:aa",
    f"{ONVIF}/hardware/DS-2CD2143G0-I",
    f"{ONVIF}/name/HIKVISION%20DS-2CD2143G0-I",
    f"{ONVIF}/location/city/hangzhou",
)
HIKVISION_XADDRS = (
    "http://192.168.1.64/onvif/device_service",
    "http://[fe80::beba:c2ff:feb3:b7aa]/onvif/device_service",
)


# --- against the simulator -------------------------------------------------------------------


@pytest.fixture(scope="module")
def hik_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimProcess, int]]:
    port = free_port(socket.SOCK_DGRAM)
    sim = start_sim(
        str(tmp_path_factory.mktemp("sim")),
        "--profile", "hikvision", "--main-size", "320x180", "--loop-seconds", "4",
        "--distinct-scenes", "1", "--discovery-port", str(port),
        cameras=2,
    )  # fmt: skip
    yield sim, port
    sim.stop()


def test_scan_finds_the_simulators_cameras_with_working_urls(
    hik_sim: tuple[SimProcess, int],
) -> None:
    sim, port = hik_sim
    found = scan([], timeout_s=1.0, port=port, targets=["127.0.0.1"])
    assert len(found) == 2 and all(c.endpoint.startswith("urn:uuid:") for c in found)
    by_name = {c.scopes[0].removeprefix(f"{ONVIF}/name/"): c for c in found}
    for channel in (1, 2):
        camera = by_name[f"cam{channel}"]
        assert camera.address == "127.0.0.1"
        assert camera.suggested_profile == "hikvision"
        assert (camera.manufacturer, camera.model) == ("Hikvision", "camfleet-sim-hikvision")
        assert camera.xaddrs == [f"{sim.http}/onvif/device_service/cam{channel}"]
        assert camera.main_url == f"{sim.rtsp}/Streaming/Channels/{channel}01"
        assert camera.sub_url == f"{sim.rtsp}/Streaming/Channels/{channel}02"
    # The URLs really stream.
    url = by_name["cam2"].main_url
    assert url is not None
    with av.open(url, options={"rtsp_transport": "tcp", "timeout": "5000000"}) as c:
        frame = next(c.decode(video=0))
    assert (frame.width, frame.height) == (320, 180)


def test_scan_keeps_cameras_on_the_subnets_once_per_endpoint(
    hik_sim: tuple[SimProcess, int],
) -> None:
    _, port = hik_sim
    # Two targets reaching the same responder: each camera is listed once.
    both = scan(["127.0.0.0/8"], timeout_s=0.5, port=port, targets=["127.0.0.1", "localhost"])
    assert len(both) == 2 and len({c.endpoint for c in both}) == 2
    assert scan(["10.0.0.0/8", "fd00::/8"], timeout_s=0.5, port=port, targets=["127.0.0.1"]) == []


def test_scan_of_a_silent_port_finds_nothing_in_its_timeout() -> None:
    silent = free_port(socket.SOCK_DGRAM)
    assert scan([], timeout_s=0.3, port=silent, targets=["127.0.0.1"]) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"subnets": ["10.0.0.0/33"]}, "bad subnet"),
        ({"subnets": ["not a net"]}, "bad subnet"),
        ({"subnets": [], "timeout_s": 0}, "timeout must be > 0"),
        ({"subnets": [], "port": 70000}, "bad port 70000"),
    ],
)
def test_scan_refuses_bad_input(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DiscoveryError, match=message):
        scan(**kwargs)  # type: ignore[arg-type]


# --- profile suggestion ----------------------------------------------------------------------

SUGGESTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str | None]] = {
    "Hikvision by the manufacturer in its name": (HIKVISION_SCOPES, HIKVISION_XADDRS, "hikvision"),
    "Axis": ((f"{ONVIF}/name/AXIS%20P1448-LE", f"{ONVIF}/hardware/P1448-LE"), (), "axis"),
    "Dahua": ((f"{ONVIF}/name/Dahua", f"{ONVIF}/hardware/IPC-HFW1230S"), (), "dahua"),
    "the simulator names the profile": ((f"{ONVIF}/hardware/camfleet-sim-reolink",), (), "reolink"),
    "the generic profile by the path it announces": (
        (f"{ONVIF}/hardware/camfleet-sim-generic-onvif",),
        ("rtsp://127.0.0.1:8554/onvif/media/profile1/main",),
        "generic-onvif",
    ),
    "an announced stream path beats a name": (
        (f"{ONVIF}/name/HIKVISION",),
        ("rtsp://10.0.0.9:554/cam/realmonitor?channel=1&subtype=0",),
        "dahua",
    ),
    "a path must format like the template (two-digit channel)": (
        (f"{ONVIF}/name/IPC",),
        ("rtsp://10.0.0.9/h264Preview_1_main",),
        None,
    ),
    "Reolink by its path alone": ((), ("rtsp://10.0.0.9/h264Preview_01_sub",), "reolink"),
    "a vendor is more specific than ONVIF": ((f"{ONVIF}/name/Hikvision%20ONVIF",), (), "hikvision"),
    "two vendors: no guess": ((f"{ONVIF}/name/Hikvision%20Dahua",), (), None),
    "whole words only": ((f"{ONVIF}/name/Axisfake", f"{ONVIF}/hardware/XHIKVISION"), (), None),
    "only name and hardware scopes describe the device": (
        (f"{ONVIF}/location/axis-street", "urn:vendor/hikvision"),
        (),
        None,
    ),
    "nothing known": ((f"{ONVIF}/name/IPCamera", f"{ONVIF}/type/video_encoder"), (), None),
}


@pytest.mark.parametrize("case", list(SUGGESTIONS))
def test_suggest_profile(case: str) -> None:
    scopes, xaddrs, expected = SUGGESTIONS[case]
    assert suggest_profile(scopes, xaddrs) == expected


def test_stream_urls_from_the_template_and_the_device_address() -> None:
    hik, generic = load_profile("hikvision"), load_profile("generic-onvif")
    assert stream_urls(hik, "192.168.1.64", HIKVISION_XADDRS) == (
        "rtsp://192.168.1.64:554/Streaming/Channels/101",
        "rtsp://192.168.1.64:554/Streaming/Channels/102",
    )
    assert stream_urls(hik, "fd00::7", ()) == (
        "rtsp://[fd00::7]:554/Streaming/Channels/101",
        "rtsp://[fd00::7]:554/Streaming/Channels/102",
    )
    # An announced stream fixes host, port and channel; the other stream follows the template.
    assert stream_urls(hik, "10.0.0.9", ("rtsp://10.0.0.9:8554/Streaming/Channels/302",)) == (
        "rtsp://10.0.0.9:8554/Streaming/Channels/301",
        "rtsp://10.0.0.9:8554/Streaming/Channels/302",
    )
    # The generic profile's paths are stand-ins: no URL unless the device announces one.
    assert stream_urls(generic, "10.0.0.9", ()) == (None, None)
    assert stream_urls(generic, "10.0.0.9", ("rtsp://10.0.0.9/onvif/media/profile2/main",)) == (
        "rtsp://10.0.0.9/onvif/media/profile2/main",
        "rtsp://10.0.0.9/onvif/media/profile2/sub",
    )
    no_sub = hik.model_copy(update={"sub": None})
    assert stream_urls(no_sub, "10.0.0.9", ())[1] is None


# --- what a FoundCamera holds ----------------------------------------------------------------


def test_found_camera_from_a_hikvision_answer() -> None:
    match = ProbeMatch("urn:uuid:a43d4d57-e4b8-4f95-8a4e-bcbac2b3b7aa", (), HIKVISION_SCOPES,
                       HIKVISION_XADDRS)  # fmt: skip
    camera = found_camera(match, answered_from=None)
    assert camera is not None
    assert camera.address == "192.168.1.64"  # IPv4 before the link-local IPv6 address
    assert camera.xaddrs == list(HIKVISION_XADDRS) and camera.scopes == list(HIKVISION_SCOPES)
    assert (camera.manufacturer, camera.model) == ("Hikvision", "DS-2CD2143G0-I")
    assert camera.suggested_profile == "hikvision"
    assert camera.main_url == "rtsp://192.168.1.64:554/Streaming/Channels/101"


def test_found_camera_address_falls_back_to_who_answered() -> None:
    match = ProbeMatch("urn:uuid:1", (), (), ("http://cam-7.local/onvif/device_service",))
    camera = found_camera(match, answered_from=ipaddress.ip_address("10.0.0.7"))
    assert camera is not None and camera.address == "10.0.0.7"
    assert camera.suggested_profile is None and camera.main_url is None
    assert found_camera(match, answered_from=None) is None


def test_found_camera_drops_what_does_not_fit_but_keeps_the_device() -> None:
    match = ProbeMatch(
        "urn:uuid:2",
        (),
        (f"{ONVIF}/name/Caméra", f"{ONVIF}/hardware/P1448-LE", "x" * 600),
        ("http://10.0.0.8/onvif/device_service", "ftp://10.0.0.8/", "rtsp://10.0.0.8/axis"),
    )
    camera = found_camera(match, answered_from=None)
    assert camera is not None
    assert camera.scopes == [f"{ONVIF}/hardware/P1448-LE"]
    assert camera.xaddrs == ["http://10.0.0.8/onvif/device_service"]
    assert found_camera(ProbeMatch("urn:" + "é" * 10, (), (), match.xaddrs), None) is None


def test_subnet_filter() -> None:
    nets = parse_subnets(["10.0.1.0/24", "fd00::/64", "192.168.1.7/16"])
    assert [in_subnets(a, nets) for a in ("10.0.1.9", "10.0.2.9", "fd00::1", "192.168.200.1")] == [
        True,
        False,
        True,
        True,
    ]
    assert in_subnets("203.0.113.5", [])  # no subnets: everything
