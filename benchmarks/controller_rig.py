"""The system under test for the controller benchmark, as a site runs it: a real Mosquitto with
the config camfleet generates, and `camfleet controller run` against it, keeping the broker's
password and ACL files current (and reloading it) on every enrollment. Agents are enrolled
through the real API, so each simulated agent has its own credentials and ACL."""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx

from benchmarks.simulator import REPO, free_port
from controller.broker.identities import CONTROLLER_USERNAME
from controller.broker.mosquitto_config import write_mosquitto_config
from controller.cli.options import PASSWORD_ENV
from controller.registry import Registry
from fleet.enrollment import ENROLL_PATH

PR_SET_PDEATHSIG: Final = 1  # linux/prctl.h
START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 30.0
API: Final = "/api/v1"


class RigError(RuntimeError):
    pass


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


@dataclass
class ControllerRig:
    work: Path
    http_port: int
    broker_port: int
    admin_password: str = field(repr=False)
    controller_login: Credentials  # the controller's broker identity
    mosquitto: subprocess.Popen[bytes]
    controller: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def events_db(self) -> Path:
        return self.work / "controller" / "events.db"

    def login(self) -> httpx.Client:
        """An API client logged in as the admin (bearer token); close it after use."""
        client = httpx.Client(base_url=self.api_url, timeout=30)
        r = client.post(f"{API}/login", json={"username": "admin",
                                              "password": self.admin_password})  # fmt: skip
        _check(r, "login")
        client.headers["Authorization"] = f"Bearer {r.json()['token']}"
        return client

    def enroll(self, n: int, max_cameras: int) -> list[Credentials]:
        """Enroll `n` agents the way `camfleet token create` + `camfleet agent enroll` do."""
        enrolled = []
        with (
            contextlib.closing(self.login()) as api,
            httpx.Client(base_url=self.api_url, timeout=30) as anonymous,
        ):
            for i in range(n):
                name = f"sim-{i + 1:03d}"
                r = api.post(f"{API}/tokens", json={"name": name, "ttl_s": 600})
                _check(r, "token create")
                r = anonymous.post(ENROLL_PATH, json={
                    "token": r.json()["token"], "hostname": name, "software_version": "bench-0",
                    "max_cameras": max_cameras,
                })  # fmt: skip
                _check(r, "enroll")
                broker = r.json()["broker"]
                enrolled.append(Credentials(broker["username"], broker["password"]))
        return enrolled

    def stop_controller(self) -> None:
        if self.controller is not None:
            _stop(self.controller)
            self.controller = None


def _check(r: httpx.Response, what: str) -> None:
    if not r.is_success:
        raise RigError(f"{what}: HTTP {r.status_code}: {r.text[:300]}")


def anywhere() -> dict[str, Any]:
    """Popen arguments for a child of this run: it may use every CPU (whatever this process is
    pinned to), it is out of reach of the terminal's Ctrl-C (this process stops its children
    itself, in order) and the kernel stops it should this process die without doing so."""

    def prepare() -> None:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return {"preexec_fn": prepare, "start_new_session": True}


@contextlib.contextmanager
def controller_rig(work: Path) -> Iterator[ControllerRig]:
    """Mosquitto and the controller on free ports under `work`; both stopped on leaving."""
    data, mosquitto_dir = work / "controller", work / "mosquitto"
    with Registry.open(data) as registry:
        controller_password = registry.controller_broker_password()
        broker_port = free_port()
        files = write_mosquitto_config(mosquitto_dir, registry.identities(), port=broker_port)
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with _process([binary, "-c", str(files.config)], work / "mosquitto.log") as mosquitto:
        _wait(lambda: _accepting(broker_port), mosquitto, work / "mosquitto.log", "mosquitto")
        pid_file = mosquitto_dir / "mosquitto.pid"
        pid_file.write_text(f"{mosquitto.pid}\n")
        config = work / "controller.toml"
        url = f"mqtt://127.0.0.1:{broker_port}"
        config.write_text(
            f'data_dir = "{data}"\n[mqtt]\nurl = "{url}"\nmosquitto_dir = "{mosquitto_dir}"\n'
            f'mosquitto_pid_file = "{pid_file}"\n'
        )
        rig = ControllerRig(
            work, free_port(), broker_port, secrets.token_urlsafe(16),
            Credentials(CONTROLLER_USERNAME, controller_password), mosquitto,
        )  # fmt: skip
        cmd = [
            sys.executable, "-m", "fleet.cli.main", "controller", "run", "--data", str(data),
            "--http-port", str(rig.http_port), "--mqtt-url", url, "--config", str(config),
        ]  # fmt: skip
        env = {**os.environ, PASSWORD_ENV: rig.admin_password}
        with _process(cmd, work / "controller.log", env=env) as controller:
            rig.controller = controller
            _wait(lambda: _answers(f"{rig.api_url}{API}/health"), controller,
                  work / "controller.log", "controller")  # fmt: skip
            try:
                yield rig
            finally:
                rig.stop_controller()


@contextlib.contextmanager
def _process(
    cmd: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, **anywhere())  # fmt: skip
    try:
        yield proc
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait(ready: Any, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        if proc.poll() is not None:
            raise RigError(f"{what} exited with {proc.returncode}:\n{tail(log)}")
        if time.monotonic() > deadline:
            raise RigError(f"{what} did not start within {START_TIMEOUT_S:.0f} s:\n{tail(log)}")
        time.sleep(0.1)


def _accepting(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).is_success
    except httpx.HTTPError:
        return False


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
