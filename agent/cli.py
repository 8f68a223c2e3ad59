"""`camfleet agent ...`: enroll an agent, run it (standalone or as a fleet member), prove its
recordings match what it analysed."""

from __future__ import annotations

import logging
import signal
import socket
from pathlib import Path
from typing import Any

import typer
import uvicorn
from pydantic import ValidationError

from agent.fleet.member import HEARTBEAT_S
from agent.fleet.options import AgentOptions, OptionsError, load_options, save_options
from agent.recording.verify import VerifyError, verify
from fleet.config import AgentConfig, ConfigError, load_agent_config
from fleet.enrollment import (
    CREDENTIALS_FILE,
    AgentCredentials,
    CredentialsError,
    read_credentials,
    write_credentials,
)
from fleet.messages import format_validation_error
from fleet.profiles import ProfileError, load_profile
from fleet.roi_text import FORMAT, parse_roi
from fleet.utc import iso_us, parse_time_us

app = typer.Typer(help="The edge agent.", no_args_is_help=True)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _cameras(specs: list[str], profile: str, detect_fps: float | None) -> list[dict[str, Any]]:
    cams = []
    for spec in specs:
        name, sep, url = spec.partition("=")
        if not sep:
            raise _fail(f"--camera takes NAME=rtsp://..., got {spec!r}")
        cam: dict[str, Any] = {"name": name, "url": url, "profile": profile}
        if detect_fps is not None:
            cam["detect_fps"] = detect_fps
        cams.append(cam)
    return cams


@app.command("run")
def run(
    data: Path | None = typer.Option(
        None, help="Data directory: recordings and the media index [default: the config's]."
    ),
    http_port: int | None = typer.Option(None, help="Local HTTP API port [default: 8090]."),
    http_host: str | None = typer.Option(None, help="Local HTTP API address [default: 127.0.0.1]."),
    camera: list[str] = typer.Option([], help="NAME=rtsp://... (repeatable)."),
    profile: str = typer.Option("generic-onvif", help="Firmware profile of --camera cameras."),
    detect_fps: float | None = typer.Option(None, help="Frames per second analysed per camera."),
    segment_seconds: float | None = typer.Option(
        None, help="Recording segment length in seconds [default: 10]."
    ),
    config: Path | None = typer.Option(None, help="Agent config file (TOML); options add to it."),
    heartbeat_s: float = typer.Option(
        HEARTBEAT_S, min=0.1, help="Enrolled: seconds between heartbeats."
    ),
    max_cameras: int | None = typer.Option(
        None, min=0, help="Enrolled: cameras this agent takes (default: as enrolled)."
    ),
    test_hooks: bool = typer.Option(
        False, "--test-hooks", help="Enrolled: enable POST /test/events (synthetic events)."
    ),
    discovery_target: list[str] = typer.Option(
        [], help="Probe these hosts by unicast instead of multicast (where multicast is blocked)."
    ),
    discovery_port: int = typer.Option(3702, help="WS-Discovery port to probe."),
    model: list[str] = typer.Option(
        [], help="CAMERA=FILE: score the camera with this model (from `camfleet model train`)."
    ),
    roi: list[str] = typer.Option(
        [], help=f"CAMERA/{FORMAT} [default: the ROIs the camera's model was trained for]."
    ),
) -> None:
    """Run the agent: one connection per camera stream, recording, audit, local HTTP.

    With cameras (--camera, --config) it runs standalone. A data directory enrolled with
    `camfleet agent enroll` and no cameras given runs as a fleet member: the cameras come
    from the controller (the last known ones while the broker is out of reach).
    """
    from agent.api.app import create_app
    from agent.discovery.scan import scan
    from agent.fleet.clips import ClipRequestError
    from agent.fleet.member import FleetMember
    from agent.health.events import gap_event
    from agent.health.from_stats import StatsHealthWatch
    from agent.recording.index import Gap
    from agent.runtime import AgentRuntime
    from fleet.messages import Event

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    cfg = _agent_config(data, http_host, http_port, camera, profile, detect_fps,
                        segment_seconds, config, model, roi)  # fmt: skip
    data = cfg.data_dir
    enrolled = (data / CREDENTIALS_FILE).exists()
    if enrolled and cfg.cameras:
        raise _fail(
            f"{data} is enrolled: its cameras come from the controller; give no cameras "
            "(--camera, [[cameras]]) or use another --data"
        )
    if not enrolled and not cfg.cameras:
        raise _fail(
            "no cameras: give --camera NAME=rtsp://... or a --config with [[cameras]], "
            "or enroll the data directory (camfleet agent enroll)"
        )
    if not enrolled and test_hooks:
        raise _fail("--test-hooks needs an enrolled data directory (fleet mode)")

    fleet: tuple[AgentCredentials, AgentOptions] | None = None
    if enrolled:
        try:
            options = load_options(data)
            fleet = read_credentials(data), options
        except (CredentialsError, OptionsError) as exc:
            raise _fail(str(exc)) from None
        if max_cameras is not None:
            fleet = fleet[0], options.model_copy(update={"max_cameras": max_cameras})

    member: FleetMember | None = None

    def on_gap(gap: Gap) -> None:
        if member is not None:
            member.raise_event(gap_event(gap))

    def on_event(event: Event, clip: tuple[int, int] | None) -> None:
        """ROI anomalies (a closed one with its clip), camera moved, view lost."""
        if member is None:
            return
        try:
            member.raise_event(event, clip)
        except ClipRequestError as exc:  # e.g. an event longer than a clip may be
            logging.getLogger("camfleet.agent").warning("event %s sent without its clip: %s",
                                                        event.id, exc)  # fmt: skip
            member.raise_event(event)

    runtime = AgentRuntime(cfg, on_gap=on_gap, on_event=on_event)
    if fleet:

        def profile_of(camera: str) -> str | None:
            return next((c.profile for c in runtime.camera_configs() if c.name == camera), None)

        member = FleetMember(
            runtime, *fleet, heartbeat_s=heartbeat_s,
            discover=lambda subnets, timeout_s: scan(
                subnets, timeout_s=timeout_s, port=discovery_port, targets=discovery_target or None
            ),
            health_events=StatsHealthWatch(profile_of),
        )  # fmt: skip
    api = create_app(
        runtime,
        fleet_stats=member.stats if member else None,
        test_events=member.raise_test_event if member and test_hooks else None,
    )
    # Live streams (GET .../live.mp4) never end by themselves: shutting down, uvicorn waits
    # 2 s for open responses, then cancels them.
    server = uvicorn.Server(
        uvicorn.Config(api, host=cfg.http.host, port=cfg.http.port, log_level="warning",
                       timeout_graceful_shutdown=2)
    )  # fmt: skip

    def on_signal(signum: int, frame: object) -> None:
        server.should_exit = True

    # uvicorn re-raises the signal it caught once it has stopped; ours makes that harmless, so
    # the runtime below always gets to close its segments.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    runtime.start()
    if member:
        member.start()
    try:
        server.run()
    finally:
        typer.echo("stopping: closing segments and writing the index", err=True)
        if member:
            member.stop()
        runtime.stop()


def _add_models_and_rois(cameras: list[dict[str, Any]], models: list[str], rois: list[str]) -> None:
    """--model CAMERA=FILE and --roi CAMERA/ROI into the cameras' entries."""
    by_name = {c["name"]: c for c in cameras}

    def entry(name: str, option: str) -> dict[str, Any]:
        if name not in by_name:
            raise _fail(f"{option} names camera {name!r}, which is not configured")
        return by_name[name]

    for spec in models:
        name, sep, path = spec.partition("=")
        if not sep:
            raise _fail(f"--model takes CAMERA=FILE, got {spec!r}")
        entry(name, "--model")["model"] = Path(path)
    for spec in rois:
        name, sep, text = spec.partition("/")
        if not sep:
            raise _fail(f"--roi takes CAMERA/{FORMAT}, got {spec!r}")
        try:
            parsed = parse_roi(text)
        except ValueError as exc:
            raise _fail(str(exc)) from None
        cam = entry(name, "--roi")
        cam["rois"] = [*cam.get("rois", []), parsed.model_dump()]


def _given(**options: object) -> dict[str, object]:
    """The options the command line set; the others are left to the config file or the default."""
    return {key: value for key, value in options.items() if value is not None}


def _agent_config(
    data: Path | None,
    http_host: str | None,
    http_port: int | None,
    camera: list[str],
    profile: str,
    detect_fps: float | None,
    segment_seconds: float | None,
    config: Path | None,
    models: list[str],
    rois: list[str],
) -> AgentConfig:
    try:
        load_profile(profile)
        base: dict[str, Any] = load_agent_config(config).model_dump() if config else {}
        if data is not None:
            base["data_dir"] = data
        elif "data_dir" not in base:
            raise _fail("give --data DIR or a --config with data_dir")
        base["cameras"] = [*base.get("cameras", []), *_cameras(camera, profile, detect_fps)]
        _add_models_and_rois(base["cameras"], models, rois)
        base["http"] = {**base.get("http", {}), **_given(port=http_port, host=http_host)}
        base["defaults"] = {**base.get("defaults", {}), **_given(segment_seconds=segment_seconds)}
        return AgentConfig.model_validate(base)
    except (ConfigError, ProfileError) as exc:
        raise _fail(str(exc)) from None
    except ValidationError as exc:
        source = f"{config} with the command line" if config else "command line"
        raise _fail(f"{source}: " + "; ".join(format_validation_error(exc))) from None


@app.command("enroll")
def enroll_command(
    controller: str = typer.Option(
        ..., envvar="CAMFLEET_CONTROLLER", help="The controller's URL, e.g. http://host:8080."
    ),
    token: str = typer.Option(
        ...,
        envvar="CAMFLEET_ENROLL_TOKEN",
        show_default=False,
        help="One-time enrollment token (CAMFLEET_ENROLL_TOKEN keeps it out of shell history).",
    ),
    data: Path = typer.Option(..., help="The agent's data directory: credentials go here."),
    subnet: list[str] = typer.Option([], help="A camera subnet this agent reaches (repeatable)."),
    max_cameras: int = typer.Option(16, min=0, max=4096, help="Cameras this agent takes."),
) -> None:
    """Trade a one-time token for this agent's identity and broker credentials (0600)."""
    from agent.fleet.enroll import EnrollError, EnrollRefused, enroll
    from agent.fleet.version import software_version

    if (data / CREDENTIALS_FILE).exists():
        raise _fail(f"{data} is enrolled already; remove {data / CREDENTIALS_FILE} to enroll again")
    try:
        creds = enroll(controller, token, hostname=socket.gethostname(),
                       software_version=software_version(), subnets=subnet,
                       max_cameras=max_cameras)  # fmt: skip
    except EnrollRefused as exc:
        typer.echo(f"enrollment refused: {exc}", err=True)
        raise typer.Exit(2) from None
    except EnrollError as exc:
        raise _fail(str(exc)) from None
    options = AgentOptions(subnets=subnet, max_cameras=max_cameras)
    save_options(data, options)
    path = write_credentials(data, creds)
    typer.echo(
        f"enrolled as agent {creds.agent_id}; broker {creds.broker.host}:{creds.broker.port}; "
        f"credentials in {path} (mode 0600)"
    )


@app.command("verify")
def verify_command(
    data: Path = typer.Option(..., help="The agent's data directory."),
    camera: str = typer.Option(..., help="Camera name."),
    from_: str | None = typer.Option(None, "--from", help="UTC ISO 8601 or epoch µs."),
    to: str | None = typer.Option(None, help="UTC ISO 8601 or epoch µs."),
) -> None:
    """Re-decode the recording and check every audited frame and the hash chain."""
    try:
        lo = parse_time_us(from_) if from_ else None
        hi = parse_time_us(to) if to else None
    except ValueError as exc:
        raise _fail(f"bad time: {exc}") from None
    try:
        report = verify(data, camera, lo, hi)
    except VerifyError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"camera {camera}: frames checked {report.frames_checked}")
    typer.echo(f"  mismatches     {len(report.mismatches)}")
    typer.echo(f"  missing frames {len(report.missing)}")
    typer.echo(f"  broken links   {len(report.broken_links)}")
    typer.echo(
        f"  known gaps     {len(report.known_gaps)} ({report.in_gaps} audited frames in gaps)"
    )
    typer.echo(f"  expired        {report.expired} (segments removed by retention)")
    for m in report.mismatches[:10]:
        typer.echo(f"  mismatch: {m}")
    for a in report.missing[:10]:
        typer.echo(f"  missing: {a.stream} seq {a.seq} at {iso_us(a.stamp_us)}")
    for p in report.broken_links[:10]:
        typer.echo(f"  broken: {p}")
    if not report.ok:
        raise typer.Exit(1)
