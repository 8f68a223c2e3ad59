"""Firmware profiles: shipped files, URL conventions, validation errors, the `profiles` CLI."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from fleet.cli.profiles import EXAMPLE_HOST, app, describe_degradation
from fleet.profiles import (
    FirmwareProfile,
    MultiClient,
    ProfileError,
    list_profiles,
    load_profile,
    load_profile_file,
)

FAMILIES = ["axis", "dahua", "generic-onvif", "hikvision", "reolink"]

# --- shipped profiles -----------------------------------------------------------------------


def test_every_family_is_shipped_sorted() -> None:
    assert [p.name for p in list_profiles()] == FAMILIES


@pytest.mark.parametrize("name", FAMILIES)
def test_shipped_profile_is_consistent(name: str) -> None:
    profile = load_profile(name)
    assert profile.name == name
    assert profile.sub is not None
    # The simulator serves H.264 only; H.265 options belong in quirks.
    assert profile.main.codec == profile.sub.codec == "h264"
    assert profile.sub.fps <= profile.main.fps
    assert profile.sub.bitrate_kbps < profile.main.bitrate_kbps
    assert 60 <= profile.keepalive.session_timeout_s <= 120
    assert profile.description and profile.quirks


def test_families_cover_the_behaviours_the_simulator_needs() -> None:
    profiles = list_profiles()
    assert {p.transport for p in profiles} == {"tcp", "udp"}
    assert {p.keepalive.method for p in profiles} == {"OPTIONS", "GET_PARAMETER"}
    assert {p.rtcp_sender_reports for p in profiles} == {True, False}
    assert len({p.keepalive.session_timeout_s for p in profiles}) > 1
    assert len({p.max_sessions for p in profiles}) > 1
    assert any(p.multi_client.frames_differ for p in profiles)
    assert any(p.multi_client.fps_divisor == 2 for p in profiles)
    assert any(not p.multi_client.degrades for p in profiles)


def test_unknown_profile_lists_known_names() -> None:
    with pytest.raises(ProfileError, match="unknown firmware profile 'nope'") as info:
        load_profile("nope")
    assert all(name in str(info.value) for name in FAMILIES)


# --- URL building ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "channel", "expected"),
    [
        ("hikvision", "main", 1, "/Streaming/Channels/101"),
        ("hikvision", "sub", 1, "/Streaming/Channels/102"),
        ("hikvision", "main", 3, "/Streaming/Channels/301"),
        ("dahua", "main", 1, "/cam/realmonitor?channel=1&subtype=0"),
        ("dahua", "sub", 2, "/cam/realmonitor?channel=2&subtype=1"),
        ("axis", "main", 1, "/axis-media/media.amp?camera=1"),
        ("axis", "sub", 2, "/axis-media/media.amp?camera=2&resolution=640x360"),
        ("reolink", "main", 1, "/h264Preview_01_main"),
        ("reolink", "sub", 12, "/h264Preview_12_sub"),
        ("generic-onvif", "main", 1, "/onvif/media/profile1/main"),
        ("generic-onvif", "sub", 2, "/onvif/media/profile2/sub"),
    ],
)
def test_stream_path_follows_public_convention(
    name: str, kind: Literal["main", "sub"], channel: int, expected: str
) -> None:
    assert load_profile(name).stream_path(kind, channel) == expected


def test_rtsp_url_quotes_credentials_and_uses_default_port() -> None:
    hik = load_profile("hikvision")
    url = hik.rtsp_url("10.0.0.5", user="admin", password="p@ss:w/rd")
    assert url == "rtsp://admin:p%40ss%3Aw%2Frd@10.0.0.5:554/Streaming/Channels/101"


def test_rtsp_url_port_user_only_and_ipv6() -> None:
    dahua = load_profile("dahua")
    assert (
        dahua.rtsp_url("cam.local", 2, "sub", port=8554, user="viewer")
        == "rtsp://viewer@cam.local:8554/cam/realmonitor?channel=2&subtype=1"
    )
    assert dahua.rtsp_url("fe80::1").startswith("rtsp://[fe80::1]:554/")


@given(
    user=st.text(st.characters(codec="utf-8"), min_size=1),
    password=st.text(st.characters(codec="utf-8")),
    channel=st.integers(min_value=1, max_value=99),
    port=st.integers(min_value=1, max_value=65535),
)
def test_rtsp_url_round_trips_any_credentials(
    user: str, password: str, channel: int, port: int
) -> None:
    profile = load_profile("reolink")
    parts = urlsplit(profile.rtsp_url("10.1.2.3", channel, "main", port, user, password))
    assert parts.scheme == "rtsp"
    assert (parts.hostname, parts.port) == ("10.1.2.3", port)
    assert unquote(parts.username or "") == user
    assert unquote(parts.password or "") == password
    assert parts.path == profile.stream_path("main", channel)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: p.stream_path("main", 0), "channel must be >= 1"),
        (lambda p: p.stream_path("third", 1), "stream kind"),
        (lambda p: p.rtsp_url("10.0.0.1", password="x"), "password needs a user"),
        (lambda p: p.rtsp_url("user@10.0.0.1"), "bad host"),
        (lambda p: p.rtsp_url(""), "bad host"),
        (lambda p: p.rtsp_url("10.0.0.1", port=70000), "bad port"),
    ],
)
def test_bad_url_arguments_raise_profile_error(
    call: Callable[[FirmwareProfile], str], message: str
) -> None:
    with pytest.raises(ProfileError, match=message):
        call(load_profile("axis"))


def test_missing_sub_stream_is_reported() -> None:
    no_sub = load_profile("axis").model_copy(update={"sub": None})
    with pytest.raises(ProfileError, match="no sub stream"):
        no_sub.rtsp_url("10.0.0.1", kind="sub")


@pytest.mark.parametrize(
    ("multi", "degrades", "summary"),
    [
        (MultiClient(), False, "no"),
        (MultiClient(fps_divisor=2, bitrate_factor=0.5), True, "fps/2, bitrate x0.5"),
        (MultiClient(frames_differ=True), True, "frames differ"),
        (MultiClient(bitrate_factor=0.75), True, "bitrate x0.75"),
    ],
)
def test_multi_client_degradation(multi: MultiClient, degrades: bool, summary: str) -> None:
    assert multi.degrades is degrades
    assert describe_degradation(multi) == summary


# --- bad profile files ----------------------------------------------------------------------

VALID = """\
name = "cam"
family = "Test"
description = "test camera"
transport = "tcp"
max_sessions = 2
rtcp_sender_reports = false

[main]
path = "/live/{channel}/main"
width = 1920
height = 1080
fps = 25
gop = 50
codec = "h264"
bitrate_kbps = 4000

[sub]
path = "/live/{channel}/sub"
width = 640
height = 360
fps = 10.0
gop = 20
codec = "h264"
bitrate_kbps = 500

[keepalive]
method = "OPTIONS"
session_timeout_s = 60

[multi_client]
"""


def write_profile(tmp_path: Path, text: str, stem: str = "cam") -> Path:
    path = tmp_path / f"{stem}.toml"
    path.write_text(text)
    return path


def test_minimal_file_loads_with_defaults(tmp_path: Path) -> None:
    profile = load_profile_file(write_profile(tmp_path, VALID))
    assert isinstance(profile, FirmwareProfile)
    assert profile.default_port == 554
    assert profile.quirks == []
    assert profile.main.fps == 25.0
    assert not profile.multi_client.degrades
    assert profile.rtsp_url("h", 4, "sub") == "rtsp://h:554/live/4/sub"


@pytest.mark.parametrize(
    ("old", "new", "key", "detail"),
    [
        ("[main]\n", "[main]\nresolution = '640x360'\n", "main.resolution", "Extra inputs"),
        ('name = "cam"\n', 'name = "cam"\ncolour = 1\n', "colour", "Extra inputs"),
        ("/live/{channel}/main", "/live/{stream}/main", "main.path", "{stream}"),
        ("/live/{channel}/sub", "/live/{}/sub", "sub.path", "placeholder"),
        ("/live/{channel}/main", "/live/{channel.real}/main", "main.path", "placeholder"),
        ("/live/{channel}/main", "/live/{channel:q}/main", "main.path", "channel=1"),
        ("/live/{channel}/main", "/live/{channel/main", "main.path", "bad template"),
        ("/live/{channel}/main", "live/{channel}/main", "main.path", "start with '/'"),
        ("/live/{channel}/main", "/live /{channel}", "main.path", "whitespace"),
        ("gop = 50", "gop = 0", "main.gop", "greater than or equal to 1"),
        ("width = 640", "width = 0", "sub.width", "greater than 0"),
        ("fps = 25", 'fps = "25"', "main.fps", "valid number"),
        ('codec = "h264"', 'codec = "mjpeg"', "main.codec", "'h264' or 'h265'"),
        ('method = "OPTIONS"', 'method = "PING"', "keepalive.method", "'GET_PARAMETER'"),
        ("[multi_client]\n", "[multi_client]\nfps_divisor = 0\n", "multi_client.fps_divisor", ""),
        ("max_sessions = 2\n", "", "max_sessions", "Field required"),
        ("width = 640\nheight = 360", "width = 2560\nheight = 1440", "sub", "smaller than main"),
        ("width = 640\nheight = 360", "width = 1920\nheight = 1080", "sub", "smaller than main"),
        ('name = "cam"', 'name = "other"', "name", "file stem 'cam'"),
        ('name = "cam"', 'name = "Cam"', "name", "lowercase"),
    ],
)
def test_bad_file_names_file_and_key(
    tmp_path: Path, old: str, new: str, key: str, detail: str
) -> None:
    assert old in VALID
    path = write_profile(tmp_path, VALID.replace(old, new, 1))
    with pytest.raises(ProfileError) as info:
        load_profile_file(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert re.search(rf"(^|[ :]){re.escape(key)}[:.]?\s", message + " "), message
    assert detail in message


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile_file(write_profile(tmp_path, VALID + "oops ="))
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile_file(tmp_path / "missing.toml")


# --- CLI ------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_list_has_one_row_per_profile() -> None:
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    header, rule, *rows = result.stdout.splitlines()
    columns = ["NAME", "FAMILY", "TRANSPORT", "KEEP-ALIVE", "MAX SESSIONS", "DEGRADES", "RTCP SR"]
    assert re.split(r"\s{2,}", header) == columns
    assert set(rule) == {"-", " "}
    by_name = {cells[0]: cells for cells in (re.split(r"\s{2,}", row) for row in rows)}
    assert sorted(by_name) == FAMILIES
    for profile in list_profiles():
        assert by_name[profile.name] == [
            profile.name,
            profile.family,
            profile.transport,
            f"{profile.keepalive.method} / {profile.keepalive.session_timeout_s}s",
            str(profile.max_sessions),
            describe_degradation(profile.multi_client),
            "yes" if profile.rtcp_sender_reports else "no",
        ]


@pytest.mark.parametrize("name", FAMILIES)
def test_cli_show_prints_fields_and_example_urls(name: str) -> None:
    profile = load_profile(name)
    result = runner.invoke(app, ["show", name])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(f"{name} ({profile.family})")
    assert profile.rtsp_url(EXAMPLE_HOST) in out
    assert profile.rtsp_url(EXAMPLE_HOST, kind="sub") in out
    assert profile.main.path in out
    assert profile.keepalive.method in out
    assert f"max sessions:    {profile.max_sessions}" in out
    assert all(quirk in out for quirk in profile.quirks)


def test_cli_show_literal_hikvision_urls() -> None:
    out = runner.invoke(app, ["show", "hikvision"]).stdout
    assert "main: rtsp://192.0.2.10:554/Streaming/Channels/101" in out
    assert "sub: rtsp://192.0.2.10:554/Streaming/Channels/102" in out


def test_cli_show_unknown_exits_2_with_message_on_stderr() -> None:
    result = runner.invoke(app, ["show", "nope"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "unknown firmware profile 'nope'" in result.stderr
    assert "hikvision" in result.stderr
