"""`camfleet demo`: a whole site on one machine, through the same doors a real one uses.

A controller with its embedded broker, simulated cameras, and one local agent enrolled with a
real one-time token; the cameras are added through the API and assigned to the agent, with
inspection on. Everything runs as separate `camfleet` processes, as on a site. Ports other than
the web port are chosen free on the first run and kept in the data directory, so a second run
reuses the data (the agent's credentials name the broker's port).

Once it runs, a model per camera is trained in the background from the simulator's own normal
frames (`camfleet model train-sim`), uploaded and assigned with its ROIs, so anomalies show up
without anyone drawing ROIs or recording footage first; the models are kept in the data
directory for the next run.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import typer

from controller.cli.options import PASSWORD_ENV, fail
from controller.client import ClientError, ControllerClient
from controller.models.artifact import MANIFEST_FILE

AGENT_NAME = "demo-agent"
CAMFLEET = (sys.executable, "-m", "fleet.cli.main")
PROFILE = "hikvision"
# The simulator's scenes, given to it and to the trainer alike so the models know those scenes.
SCENES = ("--profile", PROFILE, "--seed", "1", "--loop-seconds", "30")


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
        # As the servers bind: a port left in TIME_WAIT by the last run is free, a listener not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
        proc = _camfleet(self.log_dir / f"{name}.log", self.env, args)
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


def _camfleet(log: Path, env: dict[str, str], args: tuple[str, ...]) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([*CAMFLEET, *args], stdout=out, stderr=subprocess.STDOUT, env=env)


class ModelTrainer(threading.Thread):
    """A model per simulated camera, one `camfleet model train-sim` at a time (the demo keeps
    running meanwhile), each uploaded and assigned with its ROIs as soon as it is there. Models
    are kept under `models_dir`; one already there is not trained again while it still reads."""

    def __init__(self, procs: Processes, url: str, password: str, models_dir: Path,
                 cameras: list[str], scene_args: tuple[str, ...]) -> None:  # fmt: skip
        super().__init__(name="demo-models", daemon=True)
        self.procs, self.url, self.password = procs, url, password
        self.models_dir, self.cameras, self.scene_args = models_dir, cameras, scene_args
        self._lock = threading.Lock()
        self._stopping = False
        self._training: subprocess.Popen[bytes] | None = None

    def run(self) -> None:
        ready = []
        for n, name in enumerate(self.cameras, 1):
            try:
                path, trained = self._model(name)
                self._assign(name, path)
            except (ClientError, OSError, ValueError, KeyError, tarfile.TarError) as exc:
                if self.stopping:
                    return
                typer.echo(f"no model for {name}: {exc}", err=True)
                continue
            ready.append(name)
            if trained is not None:
                typer.echo(f"model for {name} trained in {trained:.0f} s and assigned "
                           f"({n} of {len(self.cameras)})")  # fmt: skip
        if ready:
            typer.echo(f"models ready ({', '.join(ready)}): anomalies appear in the web view's "
                       f"grid and on its events page")  # fmt: skip

    @property
    def stopping(self) -> bool:
        with self._lock:
            return self._stopping

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            training = self._training
        if training is not None and training.poll() is None:
            training.terminate()
            training.wait()
        self.join(timeout=35)  # an upload under way ends within the client's timeout

    def _model(self, name: str) -> tuple[Path, float | None]:
        """The camera's model file, and how long training it took (None: kept from before)."""
        path = self.models_dir / f"{name}.camfleet-model"
        log = self.procs.log_dir / f"train-{name}.log"
        # Kept from an earlier run, if this camfleet still reads it (the format may have moved).
        check = ("model", "show", str(path))
        if path.exists() and _camfleet(log, self.procs.env, check).wait() == 0:
            return path, None
        typer.echo(f"training a model for {name} in the background (progress in {log})")
        partial = path.with_suffix(".partial")  # renamed when whole: never reused half-written
        args = ("model", "train-sim", "--camera", name, "--cameras", str(len(self.cameras)),
                *self.scene_args, "--out", str(partial))  # fmt: skip
        started = time.monotonic()
        with self._lock:
            if self._stopping:
                raise ValueError("stopping")
            self._training = training = _camfleet(log, self.procs.env, args)
        if training.wait() != 0:
            raise ValueError(f"training failed ({training.returncode}); see {log}")
        partial.replace(path)
        return path, time.monotonic() - started

    def _assign(self, name: str, path: Path) -> None:
        """Upload the model and give it to the camera with its ROIs, unless the camera has it
        already (its ROIs may have been edited since)."""
        with ControllerClient(self.url, self.password) as client:
            sha = str(client.upload_model(path.read_bytes())["sha256"])
            current = next((c for c in client.cameras() if c["name"] == name), None)
            if current is None:
                raise ValueError("no such camera on the controller")
            if current["model"] != sha:
                client.update_camera(name, {"model": sha, "rois": _model_rois(path)})


def _model_rois(path: Path) -> list[dict[str, Any]]:
    """The ROIs a model artifact was trained on, from its manifest."""
    with tarfile.open(path, mode="r:") as tar:
        member = tar.extractfile(MANIFEST_FILE)
        if member is None:
            raise ValueError(f"{path} has no {MANIFEST_FILE}")
        rois: list[dict[str, Any]] = json.loads(member.read())["rois"]
    return rois


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
    main_size: str | None = typer.Option(
        None,
        help="The cameras' main resolution, e.g. 640x360 for a lighter demo. "
        "Default: the Hikvision profile's 1920x1080.",
    ),
    sim_cache: Path | None = typer.Option(
        None, help="Where the simulator caches its encoded scenes. Default: `camfleet sim`'s."
    ),
    no_models: bool = typer.Option(
        False, "--no-models", help="Do not train and assign a model per camera."
    ),
) -> None:
    """Run a controller, simulated cameras and one enrolled agent; Ctrl-C stops everything.
    Then, in the background, train a model per camera from the simulator's own normal frames
    (kept in DATA/models for the next run) and assign it with its ROIs, so anomalies show."""
    data = data.resolve()
    # Profile, seed and loop are fixed here, so a size has its own models.
    models_dir = data / "models" / (main_size or "default-size")  # the profile's own sizes
    for sub in ("controller", "agent", "sim", "logs"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    models_dir.mkdir(parents=True, exist_ok=True)
    scene_args = (*SCENES, *(("--main-size", main_size) if main_size else ()),
                  *(("--cache-dir", str(sim_cache)) if sim_cache else ()))  # fmt: skip
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
                    "--http-port", str(ports.sim_http), *scene_args,
                    "--truth", str(data / "sim" / "truth.jsonl"))  # fmt: skip
        procs.start("controller", "controller", "run", "--data", str(data / "controller"),
                    "--http-port", str(ports.http), "--mqtt-port", str(ports.mqtt))  # fmt: skip
        _wait_http(f"{url}/api/v1/health", procs, "the controller")
        with ControllerClient(url, password) as client:
            agent_dir = data / "agent"
            if not (agent_dir / "enrollment.json").exists():
                token = client.create_token(AGENT_NAME, 600)["token"]
                subprocess.run(
                    [*CAMFLEET, "agent", "enroll", "--controller", url, "--data", str(agent_dir),
                     "--subnet", "127.0.0.0/8"],
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
                        "name": name, "profile": PROFILE, "placement": AGENT_NAME,
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
    models = "none (--no-models)" if no_models else \
        f"one per camera, trained in the background, kept in {models_dir}"  # fmt: skip
    typer.echo(
        f"""
camfleet demo is running (Ctrl-C to stop):
  web view / API   {url}   user admin, password {password}
  agent            http://127.0.0.1:{ports.agent_http}/stats
  cameras          rtsp://127.0.0.1:{ports.rtsp}/Streaming/Channels/101 .. {cameras}01
  models           {models}
  logs             {data / "logs"}
try:
  export CAMFLEET_CONTROLLER={url} {PASSWORD_ENV}={password}
  camfleet agents list
  camfleet camera list
  camfleet model list
  camfleet inspect stop cam1
  camfleet events list --kind anomaly
"""
    )
    trainer = ModelTrainer(procs, url, password, models_dir,
                           [f"cam{i}" for i in range(1, cameras + 1)], scene_args)  # fmt: skip
    if not no_models:
        trainer.start()
    try:
        while not stop:
            procs.check()
            time.sleep(0.5)
    finally:
        typer.echo("stopping the agent, the controller and the simulator", err=True)
        if trainer.is_alive():
            trainer.stop()
        procs.stop()
