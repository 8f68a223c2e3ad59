"""`camfleet sim`: simulated cameras that behave like the firmware profile says."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import typer

from fleet.profiles import ProfileError, load_profile
from fleet.sim.build import SimConfigError, SimOptions, build_cameras, encode_all, plan_cameras
from fleet.sim.server import ServeOptions, Simulator


def parse_size(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not WIDTHxHEIGHT") from None
    if w < 16 or h < 16 or w % 2 or h % 2:
        raise typer.BadParameter("width and height must be even and at least 16")
    return w, h


def sim_command(
    cameras: int = typer.Option(4, min=1, help="Number of cameras (cam1 .. camN)."),
    port: int = typer.Option(8554, help="RTSP port."),
    http_port: int = typer.Option(8080, help="HTTP port for GET /cameras and GET /truth."),
    profile: str = typer.Option("generic-onvif", help="Firmware profile to behave like."),
    seed: int = typer.Option(1, help="Scenes and anomaly schedules follow from the seed."),
    truth: Path | None = typer.Option(None, help="Append ground truth (JSON lines) here."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    loop_seconds: float = typer.Option(30.0, min=2.0, help="Length of each scene loop."),
    main_size: str | None = typer.Option(None, help="Override main resolution, e.g. 640x360."),
    distinct_scenes: int | None = typer.Option(
        None, min=1, help="Cameras share this many scene loops (cheaper start for benchmarks)."
    ),
    discovery_port: int | None = typer.Option(
        None, help="Answer ONVIF WS-Discovery probes on this UDP port (3702 is the standard)."
    ),
    cache_dir: Path = typer.Option(
        Path.home() / ".cache" / "camfleet" / "sim", help="Encoded scene loops are cached here."
    ),
) -> None:
    """Serve simulated IP cameras over RTSP (rtsp://HOST:PORT/cam1 .. camN)."""
    try:
        opts = SimOptions(
            cameras=cameras,
            profile=load_profile(profile),
            seed=seed,
            loop_seconds=loop_seconds,
            main_size=parse_size(main_size),
            distinct_scenes=distinct_scenes,
            cache_dir=cache_dir,
        )
        plans = plan_cameras(opts)
    except (ProfileError, SimConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    if truth is not None:
        try:
            truth.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            typer.echo(f"error: cannot write --truth {truth}: {exc}", err=True)
            raise typer.Exit(2) from None
    started = time.monotonic()
    with typer.progressbar(length=1, label="scene loops", file=None) as bar:

        def progress(done: int, total: int) -> None:
            bar.length = max(total, 1)
            bar.update(done - bar.pos)

        encode_all(plans, opts.cache_dir, progress)
    typer.echo(f"scene loops ready in {time.monotonic() - started:.1f}s")

    async def run() -> None:
        sim = Simulator(
            cameras=build_cameras(opts, plans),
            options=ServeOptions(
                host=host,
                port=port,
                http_port=http_port,
                discovery_port=discovery_port,
                truth_path=truth,
            ),
        )
        await sim.serve()

    asyncio.run(run())
