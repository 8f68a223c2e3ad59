"""A controller, agents and CLI calls as real processes, for end-to-end fleet tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from conftest import REPO, free_port, wait_for
from mqtt_broker import mosquitto

from controller.client import ControllerClient

PASSWORD = "e2e-admin-password"


def camfleet(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CAMFLEET_ADMIN_PASSWORD": PASSWORD, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "fleet.cli.main", *args], capture_output=True, text=True,
        timeout=60, cwd=REPO, env=env,
    )  # fmt: skip


class Process:
    def __init__(self, name: str, log: Path, *args: str) -> None:
        self.name, self.log = name, log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fleet.cli.main", *args], cwd=REPO,
            stdout=log.open("ab"), stderr=subprocess.STDOUT,
            env={**os.environ, "CAMFLEET_ADMIN_PASSWORD": PASSWORD},
        )  # fmt: skip

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited: {self.log.read_text()[-3000:]}")
        return True

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Controller(Process):
    def __init__(self, data: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data.mkdir(parents=True, exist_ok=True)
        super().__init__("controller", data / "controller.log", "controller", "run", "--data",
                         str(data), "--http-port", str(self.port), *args)  # fmt: skip
        wait_for(lambda: self.alive() and httpx.get(f"{self.url}/api/v1/health").is_success,
                 timeout=30, what="controller health")  # fmt: skip

    def client(self) -> ControllerClient:
        return ControllerClient(self.url, PASSWORD)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return camfleet(*args, env={"CAMFLEET_CONTROLLER": self.url})


class FleetAgent(Process):
    def __init__(self, controller: Controller, name: str, data: Path, *run_args: str) -> None:
        self.run_args = run_args
        token = controller.cli("token", "create", "--name", name, "--ttl", "10m")
        assert token.returncode == 0, token.stderr
        self.token = token.stdout.strip()
        enrolled = camfleet("agent", "enroll", "--controller", controller.url, "--data",
                            str(data), "--subnet", "127.0.0.0/8",
                            env={"CAMFLEET_ENROLL_TOKEN": self.token})  # fmt: skip
        assert enrolled.returncode == 0, enrolled.stderr
        self.agent_name, self.data = name, data
        self.start()

    def start(self) -> None:
        self.port = free_port()
        self.http = f"http://127.0.0.1:{self.port}"
        super().__init__(self.agent_name, self.data / "agent.log", "agent", "run", "--data",
                         str(self.data), "--http-port", str(self.port), "--heartbeat-s", "1",
                         "--test-hooks", *self.run_args)  # fmt: skip


def camera_row(client: ControllerClient, name: str) -> dict[str, object]:
    (row,) = [c for c in client.fleet_health()["cameras"] if c["name"] == name]
    return row


def agent_state(client: ControllerClient, agent_id: str) -> str:
    (row,) = [a for a in client.fleet_health()["agents"] if a["agent_id"] == agent_id]
    return str(row["state"])


class ManagedMosquitto:
    """An external Mosquitto whose password and ACL files the controller keeps current: the
    controller's config names the files and the pid file it sends SIGHUP to."""

    def __init__(self, tmp_path: Path, fleet_toml: str = "") -> None:
        self.port, self.dir = free_port(), tmp_path / "mosquitto"
        self.controller_config = tmp_path / "controller.toml"
        self.controller_config.write_text(
            f'data_dir = "{tmp_path / "controller"}"\n[mqtt]\n'
            f'url = "mqtt://127.0.0.1:{self.port}"\nmosquitto_dir = "{self.dir}"\n'
            f'mosquitto_pid_file = "{self.dir / "pid"}"\n{fleet_toml}'
        )

    def controller(self) -> Controller:
        """The controller writes the broker's files as it starts (it needs no broker for that)."""
        return Controller(self.controller_config.parent / "controller", "--config",
                          str(self.controller_config))  # fmt: skip

    @contextmanager
    def running(self) -> Iterator[None]:
        with mosquitto(self.dir / "mosquitto.conf", self.port) as broker:
            (self.dir / "pid").write_text(str(broker.pid))
            yield
