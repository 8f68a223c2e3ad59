"""`camfleet agent run --config FILE` through the real CLI: what the file says is what runs, the
command line adds to it, and a bad file is refused with its name and key, never a password."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, free_port, start_sim, wait_for
from test_agent_e2e import SIM_ARGS, Agent, Agents, streaming, verify

from fleet.utc import parse_time_us

PASSWORD = "s3cret-pw"  # in camera URLs; must never be printed


def agent_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "fleet.cli.main", "agent", "run", *args]


class ConfiguredAgent(Agent):
    """`camfleet agent run` with exactly the test's arguments, reached on `port`."""

    def __init__(self, log: Path, port: int, *args: str) -> None:
        # Not Agent.__init__: that one starts its own command line.
        self.port, self.log = port, log
        self.http = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            agent_command(*args), stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=REPO
        )


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[Agents]:
    """Holds the test's ConfiguredAgents (in `started`) and kills what a failed test left."""
    agents = Agents(tmp_path)
    yield agents
    agents.kill_all()


def start_configured(agents: Agents, port: int, *args: str) -> ConfiguredAgent:
    agent = ConfiguredAgent(agents.tmp_path / f"agent{len(agents.started)}.log", port, *args)
    agents.started.append(agent)
    return agent


def camera_toml(name: str, url: str, sub_url: str | None = None) -> str:
    sub = f'sub_url = "{sub_url}"\n' if sub_url else ""
    return f'[[cameras]]\nname = "{name}"\nurl = "{url}"\n{sub}profile = "hikvision"\n'


def _with_password(url: str) -> str:
    return url.replace("rtsp://", f"rtsp://viewer:{PASSWORD}@", 1)


def _segments(data: Path) -> dict[int, tuple[str, str]]:
    """Every segment in the index: id -> (camera, status)."""
    with sqlite3.connect(data / "index.db") as db:
        rows = db.execute("SELECT id, camera, status FROM segments").fetchall()
    return {i: (camera, status) for i, camera, status in rows}


def test_config_file_runs_the_agent_and_the_command_line_adds_to_it(
    tmp_path: Path, configured: Agents
) -> None:
    port = free_port()
    data = tmp_path / "data"
    config = tmp_path / "agent.toml"

    def write_config(max_age_hours: float) -> None:
        config.write_text(
            f'data_dir = "data"\n[http]\nport = {port}\n[defaults]\nsegment_seconds = 2\n'
            f"[retention]\nmax_age_hours = {max_age_hours}\nmax_disk_gb = 1\n"
            + camera_toml("cam1", _with_password(f"{sim.rtsp}/cam1"))
        )

    sim = start_sim(str(tmp_path), *SIM_ARGS, cameras=2)
    try:
        write_config(max_age_hours=72)
        # The file gives the cameras, the port and the segment length; the command line adds a
        # camera (and the data dir, the same the file names).
        agent = start_configured(
            configured, port, "--config", str(config), "--data", str(data),
            "--camera", f"cam2={sim.rtsp}/cam2", "--profile", "hikvision",
        )  # fmt: skip
        wait_for(lambda: streaming(agent, "cam1/main", "cam2/main"), timeout=30,
                 what="both cameras streaming on the file's http port")  # fmt: skip
        assert set(agent.stats()["streams"]) == {"cam1/main", "cam2/main"}

        def closed() -> list[dict[str, str]]:
            segs = agent.get("/cameras/cam1/recordings").json()["segments"]
            return [s for s in segs if s["status"] == "closed"]

        wait_for(lambda: len(closed()) >= 2, timeout=20, what="two closed segments")
        segs = closed()
        # The file's 2 s, not the 10 s default (segments end on the keyframe after 2 s: 2 or 4 s).
        lengths = [(parse_time_us(s["end"]) - parse_time_us(s["start"])) / 1e6 for s in segs]
        assert all(1.5 < n < 4.5 for n in lengths), lengths
        assert PASSWORD not in agent.get("/stats").text
        agent.stop()
        run1 = _segments(data)
        assert {c for c, _ in run1.values()} == {"cam1", "cam2"}
        assert {s for _, s in run1.values()} == {"closed"}

        # Everything from the file now, data dir included; its retention (0.36 s) removes the
        # first run's segments as the recorder starts.
        write_config(max_age_hours=0.0001)
        agent = start_configured(configured, port, "--config", str(config))
        wait_for(lambda: streaming(agent, "cam1/main"), timeout=30, what="the second run")
        assert set(agent.stats()["streams"]) == {"cam1/main"}
        wait_for(
            lambda: {_segments(data)[i][1] for i in run1} == {"deleted"},
            timeout=10, what="retention to delete the first run's segments",
        )  # fmt: skip
        agent.stop()
    finally:
        sim.stop()
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("agent*.log"))
    assert PASSWORD not in logs
    code, out = verify(data, "cam1")
    assert code == 0, out
    assert int(out.split("expired")[1].split()[0]) >= 1, out


BAD_CONFIGS = {
    "unknown-key": (
        camera_toml("cam1", f"rtsp://viewer:{PASSWORD}@cam.local/1") + 'colour = "red"\n',
        "cameras[0].colour",
    ),
    "unknown-section-key": ('[retention]\nmax_days = 3\n', "retention.max_days"),
    "bad-url-scheme": (camera_toml("cam1", f"http://viewer:{PASSWORD}@cam.local/1"),
                       "cameras[0].url"),
    "bad-url-port": (camera_toml("cam1", f"rtsp://viewer:{PASSWORD}@cam.local:99999/1"),
                     "cameras[0].url"),
    "duplicate-camera": (
        camera_toml("cam1", f"rtsp://viewer:{PASSWORD}@cam.local/1")
        + camera_toml("cam1", f"rtsp://viewer:{PASSWORD}@cam.local/2"),
        "cameras",
    ),
    "shared-stream-url": (
        camera_toml("cam1", f"rtsp://viewer:{PASSWORD}@cam.local/1")
        + camera_toml("cam2", f"rtsp://viewer:{PASSWORD}@cam.local/1"),
        "cameras",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_bad_config_file_is_refused_naming_file_and_key(tmp_path: Path, case: str) -> None:
    body, key = BAD_CONFIGS[case]
    config = tmp_path / "agent.toml"
    config.write_text('data_dir = "data"\n' + body)
    out = subprocess.run(
        agent_command("--config", str(config), "--data", str(tmp_path / "data"),
                      "--http-port", str(free_port())),
        capture_output=True, text=True, timeout=30, cwd=REPO,
    )  # fmt: skip
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    assert str(config) in out.stderr and key in out.stderr, text
    assert PASSWORD not in text
    assert not (tmp_path / "data").exists(), "a refused config must not start recording"


def test_command_line_camera_clashing_with_the_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('data_dir = "data"\n' + camera_toml("cam1", "rtsp://cam.local/1"))
    out = subprocess.run(
        agent_command("--config", str(config), "--data", str(tmp_path / "data"),
                      "--camera", f"cam1=rtsp://viewer:{PASSWORD}@cam.local/2"),
        capture_output=True, text=True, timeout=30, cwd=REPO,
    )  # fmt: skip
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    assert "'cam1'" in out.stderr and str(config) in out.stderr, text
    assert PASSWORD not in text
