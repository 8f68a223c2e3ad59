"""`camfleet demo`: a whole site on one machine, through the same doors a real one uses.

A controller with its embedded broker, simulated cameras, and one local agent enrolled with a
real one-time token; the cameras are added through the API and assigned to the agent, with
inspection on. Everything runs as separate `camfleet` processes, as on a site. Ports other than
the web port are chosen free on the first run and kept in the data directory, so a second run
reuses the data (the agent's credentials name the broker's port).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import typer

from controller.cli.options import PASSWORD_ENV, fail
from controller.client import ClientError, ControllerClient

AGENT_NAME = "demo-agent"


@dataclass
class DemoPorts:
    http: int
    mqtt: int
    rtsp: int
    sim_http: int
    agent_http: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _ports(data: Path, http: int) -> DemoPorts:
    path = data / "demo-ports.json"
    if path.exists():
        ports = DemoPorts(**json.loads(path.read_text()))
        ports.http = http
    else:
        ports = DemoPorts(http, _free_port(), _free_port(), _free_port(), _free_port())
        path.write_text(json.dumps(asdict(ports)))
    busy = [f"{k} {v}" for k, v in asdict(ports).items() if not _port_free(v)]
    if busy:
        raise fail(f"port(s) in use: {', '.join(busy)} (another demo running? or use --data)")
    return ports


def _password(data: Path) -> str:
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    path = data / "admin-password"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(12))
    return path.read_text().strip()


class Processes:
    """Child processes, stopped in reverse order of start."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("ab")
        cmd = [sys.executable, "-m", "fleet.cli.main", *args]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        self.procs.append((name, proc))
        return proc

    def check(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise fail(f"{name} exited ({proc.returncode}); see {self.log_dir / name}.log")

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _wait_http(url: str, procs: Processes, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs.check()
        try:
            if httpx.get(url, timeout=2).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise fail(f"{what} did not answer at {url} within {timeout:.0f} s")


def demo_command(
    data: Path = typer.Option(Path("camfleet-data"), help="Where everything is kept."),
    port: int = typer.Option(8080, help="The controller's web/API port."),
    cameras: int = typer.Option(4, min=1, max=64, help="Simulated cameras."),
) -> None:
    """Run a controller, simulated cameras and one enrolled agent; Ctrl-C stops everything."""
    data = data.resolve()
    for sub in ("controller", "agent", "sim", "logs"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    ports = _ports(data, port)
    password = _password(data)
    env = {**os.environ, PASSWORD_ENV: password}
    procs = Processes(data / "logs", env)
    url = f"http://127.0.0.1:{ports.http}"
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        typer.echo("starting the simulator (the first run encodes the scenes: a minute or two)")
        procs.start("sim", "sim", "--cameras", str(cameras), "--port", str(ports.rtsp),
                    "--http-port", str(ports.sim_http), "--profile", "hikvision",
                    "--truth", str(data / "sim" / "truth.jsonl"))  # fmt: skip
        procs.start("controller", "controller", "run", "--data", str(data / "controller"),
                    "--http-port", str(ports.http), "--mqtt-port", str(ports.mqtt))  # fmt: skip
        _wait_http(f"{url}/api/v1/health", procs, "the controller")
        with ControllerClient(url, password) as client:
            agent_dir = data / "agent"
            if not (agent_dir / "enrollment.json").exists():
                token = client.create_token(AGENT_NAME, 600)["token"]
                subprocess.run(
                    [sys.executable, "-m", "fleet.cli.main", "agent", "enroll", "--controller",
                     url, "--data", str(agent_dir), "--subnet", "127.0.0.0/8"],
                    env={**env, "CAMFLEET_ENROLL_TOKEN": token}, check=True,
                )  # fmt: skip
            procs.start("agent", "agent", "run", "--data", str(agent_dir),
                        "--http-port", str(ports.agent_http))  # fmt: skip
            _wait_http(f"http://127.0.0.1:{ports.sim_http}/health", procs, "the simulator")
            known = {c["name"] for c in client.cameras()}
            for i in range(1, cameras + 1):
                name = f"cam{i}"
                if name not in known:
                    client.add_camera({
                        "name": name, "profile": "hikvision", "placement": AGENT_NAME,
                        "main_url": f"rtsp://127.0.0.1:{ports.rtsp}/Streaming/Channels/{i}01",
                        "sub_url": f"rtsp://127.0.0.1:{ports.rtsp}/Streaming/Channels/{i}02",
                    })  # fmt: skip
                client.update_camera(name, {"inspection": True})
    except (ClientError, subprocess.CalledProcessError) as exc:
        procs.stop()
        raise fail(str(exc)) from None
    except BaseException:
        procs.stop()
        raise
    typer.echo(
        f"""
camfleet demo is running (Ctrl-C to stop):
  web view / API   {url}   user admin, password {password}
  agent            http://127.0.0.1:{ports.agent_http}/stats
  cameras          rtsp://127.0.0.1:{ports.rtsp}/Streaming/Channels/101 .. {cameras}01
  logs             {data / "logs"}
try:
  export CAMFLEET_CONTROLLER={url} {PASSWORD_ENV}={password}
  camfleet agents list
  camfleet camera list
  camfleet inspect stop cam1
  camfleet events list
"""
    )
    try:
        while not stop:
            procs.check()
            time.sleep(0.5)
    finally:
        typer.echo("stopping the agent, the controller and the simulator", err=True)
        procs.stop()
