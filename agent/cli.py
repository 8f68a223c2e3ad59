"""`camfleet agent ...`: run an agent standalone; prove its recordings match what it analysed."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import typer
import uvicorn
from pydantic import ValidationError

from agent.recording.verify import VerifyError, verify
from fleet.config import AgentConfig, ConfigError, load_agent_config
from fleet.messages import format_validation_error
from fleet.profiles import ProfileError, load_profile
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
    data: Path = typer.Option(..., help="Data directory: recordings and the media index."),
    http_port: int = typer.Option(8090, help="Local HTTP API port."),
    http_host: str = typer.Option("127.0.0.1", help="Local HTTP API address."),
    camera: list[str] = typer.Option([], help="NAME=rtsp://... (repeatable)."),
    profile: str = typer.Option("generic-onvif", help="Firmware profile of --camera cameras."),
    detect_fps: float | None = typer.Option(None, help="Frames per second analysed per camera."),
    segment_seconds: float = typer.Option(10.0, help="Recording segment length."),
    config: Path | None = typer.Option(None, help="Agent config file (TOML); options add to it."),
) -> None:
    """Run the agent: one connection per camera stream, recording, audit, local HTTP."""
    from agent.api.app import create_app
    from agent.runtime import AgentRuntime

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        load_profile(profile)
        base: dict[str, Any] = load_agent_config(config).model_dump() if config else {}
        base["data_dir"] = data
        base["cameras"] = [*base.get("cameras", []), *_cameras(camera, profile, detect_fps)]
        base["http"] = {**base.get("http", {}), "port": http_port, "host": http_host}
        base["defaults"] = {**base.get("defaults", {}), "segment_seconds": segment_seconds}
        cfg = AgentConfig.model_validate(base)
    except (ConfigError, ProfileError) as exc:
        raise _fail(str(exc)) from None
    except ValidationError as exc:
        raise _fail("; ".join(format_validation_error(exc))) from None
    if not cfg.cameras:
        raise _fail("no cameras: give --camera NAME=rtsp://... or a --config with [[cameras]]")

    runtime = AgentRuntime(cfg)
    server = uvicorn.Server(
        uvicorn.Config(create_app(runtime), host=cfg.http.host, port=cfg.http.port,
                       log_level="warning")
    )  # fmt: skip

    def on_signal(signum: int, frame: object) -> None:
        server.should_exit = True

    # uvicorn re-raises the signal it caught once it has stopped; ours makes that harmless, so
    # the runtime below always gets to close its segments.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    runtime.start()
    try:
        server.run()
    finally:
        typer.echo("stopping: closing segments and writing the index", err=True)
        runtime.stop()


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
