"""Configuration files: good ones load, every kind of mistake names its file and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fleet.config import (
    AgentConfig,
    ConfigError,
    ControllerConfig,
    load_agent_config,
    load_config,
    load_controller_config,
)

AGENT_TOML = """\
agent_id = "edge-01"
data_dir = "var/agent"
controller_url = "http://controller.local:8080"

[http]
host = "0.0.0.0"
port = 8091

[defaults]
detect_fps = 4
segment_seconds = 6

[retention]
max_age_hours = 48
max_disk_gb = 120

[[cameras]]
name = "gate"
url = "rtsp://viewer:hunter2@10.0.0.21:554/Streaming/Channels/101"
sub_url = "rtsp://viewer:hunter2@10.0.0.21:554/Streaming/Channels/102"
profile = "hikvision"

[[cameras]]
name = "yard_2"
url = "rtsp://10.0.0.22/axis-media/media.amp"
detect_fps = 10
"""

CONTROLLER_TOML = """\
data_dir = "/srv/camfleet"

[http]
port = 9000

[mqtt]
url = "mqtts://broker.local:8883"
username = "controller"
password = "s3cret-broker"

[admin]
user = "root"
password = "s3cret-admin"
"""


def write(tmp_path: Path, text: str, name: str = "camfleet.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- good files ----------------------------------------------------------------------------------


def test_agent_config_loads(tmp_path: Path) -> None:
    config = load_agent_config(write(tmp_path, AGENT_TOML))
    assert config.agent_id == "edge-01"
    assert config.data_dir == tmp_path / "var/agent"  # relative to the file, not the cwd
    assert (config.http.host, config.http.port) == ("0.0.0.0", 8091)
    assert config.controller_url == "http://controller.local:8080"
    assert (config.retention.max_age_hours, config.retention.max_disk_gb) == (48, 120)
    assert config.defaults.segment_seconds == 6
    gate, yard = config.cameras
    assert gate.profile == "hikvision" and gate.sub_url is not None
    assert yard.profile == "generic-onvif" and yard.sub_url is None
    assert [config.detect_fps_for(c) for c in config.cameras] == [4, 10]


def test_agent_config_defaults(tmp_path: Path) -> None:
    config = load_agent_config(write(tmp_path, 'data_dir = "/var/lib/camfleet"\n'))
    assert config.data_dir == Path("/var/lib/camfleet")
    assert config.cameras == [] and config.agent_id is None and config.controller_url is None
    assert config.defaults.segment_seconds == 10
    assert (config.http.host, config.http.port) == ("127.0.0.1", 8090)


def test_a_partial_section_keeps_the_other_defaults(tmp_path: Path) -> None:
    text = 'data_dir = "d"\n[http]\nhost = "0.0.0.0"\n[defaults]\ndetect_fps = 2\n'
    agent = load_agent_config(write(tmp_path, text))
    assert (agent.http.host, agent.http.port) == ("0.0.0.0", 8090)
    assert agent.defaults.segment_seconds == 10
    controller = load_controller_config(write(tmp_path, 'data_dir = "d"\n[http]\nhost = "::"\n'))
    assert (controller.http.host, controller.http.port) == ("::", 8080)


def test_controller_config_loads(tmp_path: Path) -> None:
    config = load_controller_config(write(tmp_path, CONTROLLER_TOML))
    assert config.data_dir == Path("/srv/camfleet")
    assert config.http.port == 9000
    assert not config.mqtt.embedded
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == "s3cret-broker"
    assert config.admin.user == "root"


def test_controller_defaults_to_the_embedded_broker(tmp_path: Path) -> None:
    config = load_controller_config(write(tmp_path, 'data_dir = "d"\n[mqtt]\nembedded_port = 1884'))
    assert config.mqtt.embedded and config.mqtt.embedded_port == 1884
    config = load_controller_config(write(tmp_path, 'data_dir = "d"\n'))
    assert config.mqtt.embedded and config.mqtt.embedded_port == 1883
    assert config.admin.password is None


def test_generic_loader_takes_the_model(tmp_path: Path) -> None:
    assert isinstance(
        load_config(write(tmp_path, 'data_dir = "d"\n'), ControllerConfig), ControllerConfig
    )
    assert isinstance(
        load_config(str(write(tmp_path, 'data_dir = "d"\n')), AgentConfig), AgentConfig
    )


def test_secrets_stay_out_of_repr(tmp_path: Path) -> None:
    agent = load_agent_config(write(tmp_path, AGENT_TOML))
    controller = load_controller_config(write(tmp_path, CONTROLLER_TOML))
    shown = repr(agent) + str(agent) + repr(controller) + str(controller)
    for secret in ("hunter2", "s3cret-broker", "s3cret-admin"):
        assert secret not in shown


# --- mistakes ------------------------------------------------------------------------------------


def _camera(**fields: str) -> str:
    """A [[cameras]] entry; `fields` are TOML literals overriding a valid camera."""
    body = {"name": '"cam"', "url": '"rtsp://10.0.0.9/live"'} | fields
    return "[[cameras]]\n" + "".join(f"{k} = {v}\n" for k, v in body.items())


# Each is added to an otherwise valid file.
AGENT_MISTAKES = [
    ('data_dri = "e"', "data_dri: Extra inputs are not permitted"),
    ("[htttp]\nport = 1", "htttp: Extra inputs are not permitted"),
    ("[http]\nport = 70000", "http.port: Input should be less than or equal to 65535"),
    ('[http]\nport = "80x"', "http.port: Input should be a valid integer"),
    ("[defaults]\ndetect_fps = 0", "defaults.detect_fps: Input should be greater than 0"),
    ("[retention]\nmax_disk_gb = -1", "retention.max_disk_gb: Input should be greater"),
    ('controller_url = "ftp://c"', "controller_url: Value error, URL scheme"),
    ('agent_id = "a/b"', "agent_id: String should match pattern"),
    (_camera(name='"Front Door"'), "cameras[0].name: String should match"),
    (_camera(urll='"rtsp://x/y"'), "cameras[0].urll: Extra inputs"),
    (_camera(profile='"Hik Vision"'), "cameras[0].profile: String should"),
    (_camera(detect_fps="-1"), "cameras[0].detect_fps: Input should be"),
    (
        _camera() + _camera(name='"b"', url='"http://u:hunter2@cam/1"'),
        "cameras[1].url: Value error, URL scheme must be one of rtsp, rtsps",
    ),
    (
        _camera() + _camera(url='"rtsp://10.0.0.10/live"'),
        "cameras: Value error, camera name 'cam' is used twice",
    ),
    (
        _camera() + _camera(name='"b"'),
        "cameras: Value error, cameras 'cam' and 'b' share a stream url",
    ),
    ('cameras = "gate"', "cameras: Input should be a valid list"),
]


@pytest.mark.parametrize(("mistake", "says"), AGENT_MISTAKES)
def test_agent_mistakes_name_the_key(tmp_path: Path, mistake: str, says: str) -> None:
    path = write(tmp_path, f'data_dir = "d"\n{mistake}\n')
    with pytest.raises(ConfigError, match=re.escape(says)) as caught:
        load_agent_config(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert caught.value.path == path
    assert "hunter2" not in str(caught.value)


def test_missing_required_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data_dir: Field required"):
        load_agent_config(write(tmp_path, "[http]\nport = 1\n"))


CONTROLLER_MISTAKES = [
    ('[mqtt]\nurl = "mqtt://b"\nembedded_port = 1', "mqtt: Value error, set either"),
    ('[mqtt]\nurl = "mqtt://u:s3cret@b"', "mqtt.url: Value error, URL must not"),
    ('[mqtt]\nurl = "http://b"', "mqtt.url: Value error, URL scheme"),
    ('[mqtt]\npassword = "s3cret"', "mqtt: Value error, username, password and mosquitto_*"),
    ('[admin]\nuser = ""', "admin.user: String should match pattern"),
    ('[admin]\npasword = "s3cret"', "admin.pasword: Extra inputs"),
]


@pytest.mark.parametrize(("mistake", "says"), CONTROLLER_MISTAKES)
def test_controller_mistakes_name_the_key(tmp_path: Path, mistake: str, says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)) as caught:
        load_controller_config(write(tmp_path, f'data_dir = "d"\n{mistake}\n'))
    assert "s3cret" not in str(caught.value)


def test_every_problem_is_listed(tmp_path: Path) -> None:
    text = '[http]\nport = 0\n[[cameras]]\nname = "x"\n'
    with pytest.raises(ConfigError) as caught:
        load_agent_config(write(tmp_path, text))
    keys = [problem.split(":")[0] for problem in caught.value.problems]
    assert keys == ["data_dir", "http.port", "cameras[0].url"]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'data_dir = "d"\n[http\n', "invalid TOML: "),
        (b'data_dir = "d"\ndata_dir = "e"\n', "invalid TOML: "),
        (b"data_dir = \xff\xfe\n", "not UTF-8 text"),
        (b"x = " + b"[" * 5000, "invalid TOML: "),
    ],
)
def test_unreadable_files(tmp_path: Path, content: bytes, says: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=re.escape(f"{path}: {says}")):
        load_agent_config(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml: cannot read: No such file"):
        load_agent_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="cannot read: Is a directory"):
        load_controller_config(tmp_path)


def test_drift_bounds_are_the_trackers_settings(tmp_path: Path) -> None:
    from agent.detection.drift import DriftSettings

    text = 'data_dir = "d"\n[drift]\nmax_shift_px = 3.5\nmax_angle_deg = 0.5\n'
    agent = load_agent_config(write(tmp_path, text))
    settings = DriftSettings(**agent.drift.model_dump())
    assert (settings.max_shift_px, settings.max_angle_deg, settings.max_scale_change) == (
        3.5, 0.5, 0.03,
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"drift\.max_shift_px"):
        load_agent_config(write(tmp_path, 'data_dir = "d"\n[drift]\nmax_shift_px = 0\n'))
