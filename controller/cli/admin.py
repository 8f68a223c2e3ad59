"""Admin commands that act on a running controller through its API: tokens, agents, cameras,
inspection, events. They work in scripts: --controller / $CAMFLEET_CONTROLLER and
$CAMFLEET_ADMIN_PASSWORD."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import typer

from controller.cli.options import ControllerUrl, connected, fail, parse_duration, table
from fleet.messages import RoiSpec
from fleet.roi_text import FORMAT as ROI_FORMAT
from fleet.roi_text import format_roi, parse_roi
from fleet.utc import iso_us

token_app = typer.Typer(help="One-time enrollment tokens.", no_args_is_help=True)
agents_app = typer.Typer(help="Enrolled agents.", no_args_is_help=True)
camera_app = typer.Typer(help="Managed cameras.", no_args_is_help=True)
inspect_app = typer.Typer(help="Turn inspection on and off per camera.", no_args_is_help=True)
events_app = typer.Typer(help="The event center.", no_args_is_help=True)


@token_app.command("create")
def token_create(
    name: str = typer.Option(..., help="Name of the agent this token enrolls, e.g. edge-01."),
    ttl: str = typer.Option("1h", help="How long the token stays valid (90s, 30m, 1h, 7d)."),
    controller: str = ControllerUrl,
) -> None:
    """Print a one-time enrollment token (give it to `camfleet agent enroll`)."""
    with connected(controller) as c:
        result = c.create_token(name, parse_duration(ttl))
    typer.echo(f"token for {name} (valid until {iso_us(result['expires_us'])}, one use):",
               err=True)  # fmt: skip
    typer.echo(result["token"])


@agents_app.command("list")
def agents_list(controller: str = ControllerUrl) -> None:
    """Agents with their state as of now (online, stale, offline, revoked)."""
    with connected(controller) as c:
        agents = c.agents()
    table(agents, ["agent_id", "state", "hostname", "cameras", "last_heartbeat"])


@agents_app.command("revoke")
def agents_revoke(name: str = typer.Argument(...), controller: str = ControllerUrl) -> None:
    """Revoke an agent: the broker and the API refuse it from now on; its cameras move."""
    with connected(controller) as c:
        c.revoke(name)
    typer.echo(f"revoked {name}")


@camera_app.command("add")
def camera_add(
    name: str = typer.Argument(...),
    url: str = typer.Option(..., help="Main stream rtsp:// URL."),
    sub_url: str | None = typer.Option(None, help="Sub stream rtsp:// URL."),
    profile: str = typer.Option("generic-onvif", help="Firmware profile."),
    agent: str = typer.Option("auto", help="Agent id, or auto (by capacity and subnet)."),
    detect_fps: float | None = typer.Option(None, help="Frames per second analysed."),
    site: str | None = typer.Option(None, help="Site label for filtering."),
    inspect: bool = typer.Option(True, help="Start with inspection on."),
    roi: list[str] = typer.Option([], help=f"A region of interest: {ROI_FORMAT}. Repeatable."),
    controller: str = ControllerUrl,
) -> None:
    """Add a camera; the controller assigns it to an agent."""
    spec: dict[str, Any] = {"name": name, "main_url": url, "profile": profile,
                            "placement": agent, "inspection": inspect,
                            "rois": _rois(roi)}  # fmt: skip
    for key, value in (("sub_url", sub_url), ("detect_fps", detect_fps), ("site", site)):
        if value is not None:
            spec[key] = value
    with connected(controller) as c:
        cam = c.add_camera(spec)
    typer.echo(f"added {name} (placement {cam.get('placement')}, agent {cam.get('target')})")


@camera_app.command("rois")
def camera_rois(
    name: str = typer.Argument(...),
    roi: list[str] = typer.Option([], help=f"A region of interest: {ROI_FORMAT}. Repeatable."),
    clear: bool = typer.Option(False, "--clear", help="Remove every ROI."),
    controller: str = ControllerUrl,
) -> None:
    """Show a camera's ROIs, or set them (replacing the old ones); its agent follows at once."""
    with connected(controller) as c:
        if roi or clear:
            cam = c.update_camera(name, {"rois": _rois(roi)})
        else:
            found = [x for x in c.cameras() if x["name"] == name]
            if not found:
                raise fail(f"no camera {name!r}")
            cam = found[0]
    for r in cam["rois"]:
        typer.echo(format_roi(RoiSpec.model_validate(r)))
    if not cam["rois"]:
        typer.echo(f"{name} has no ROIs")


def _rois(texts: list[str]) -> list[dict[str, Any]]:
    try:
        return [parse_roi(t).model_dump(mode="json") for t in texts]
    except ValueError as exc:
        raise fail(str(exc)) from None


@camera_app.command("list")
def camera_list(controller: str = ControllerUrl) -> None:
    """Cameras with their agent and connection state."""
    with connected(controller) as c:
        health = c.fleet_health()
    table(health["cameras"], ["name", "owner", "target", "state", "inspection"])


@camera_app.command("discover")
def camera_discover(
    agent: str | None = typer.Option(None, help="Only this agent probes (default: all online)."),
    timeout: float = typer.Option(3.0, min=0.1, max=30, help="Seconds each probe listens."),
    controller: str = ControllerUrl,
) -> None:
    """Agents probe their subnets (ONVIF WS-Discovery); list what answered."""
    with connected(controller) as c:
        found = c.discover(agent, timeout)
    table(found, ["address", "agent_id", "manufacturer", "model", "suggested_profile", "camera",
                  "endpoint"])  # fmt: skip


@camera_app.command("adopt")
def camera_adopt(
    name: str = typer.Argument(..., help="Name for the new camera."),
    found: str = typer.Option(..., "--from", help="Address or endpoint shown by discover."),
    agent: str | None = typer.Option(
        None, help="Agent to run it (default: the one that found it)."
    ),
    profile: str | None = typer.Option(None, help="Firmware profile (default: the suggested one)."),
    user: str | None = typer.Option(None, help="Camera user name."),
    password: str | None = typer.Option(
        None, envvar="CAMFLEET_CAMERA_PASSWORD", help="Camera password ($CAMFLEET_CAMERA_PASSWORD)."
    ),
    controller: str = ControllerUrl,
) -> None:
    """Turn a discovered camera into a managed one."""
    with connected(controller) as c:
        matches = [d for d in c.discovered() if found in (d["address"], d["endpoint"])]
        if not matches:
            raise fail(f"nothing discovered at {found!r}: run `camfleet camera discover` first")
        device = matches[0]
        if not device.get("main_url"):
            raise fail(f"{found}: no stream URL known for this device; use `camfleet camera add`")
        spec: dict[str, Any] = {
            "name": name,
            "main_url": with_credentials(device["main_url"], user, password),
            "profile": profile or device.get("suggested_profile") or "generic-onvif",
            "placement": agent or device["agent_id"],
        }
        if device.get("sub_url"):
            spec["sub_url"] = with_credentials(device["sub_url"], user, password)
        cam = c.add_camera(spec)
    typer.echo(f"adopted {found} as {name} (profile {cam['profile']}, agent {cam['placement']})")


def with_credentials(url: str, user: str | None, password: str | None) -> str:
    if user is None:
        return url
    parts = urlsplit(url)
    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    return urlunsplit(parts._replace(netloc=f"{auth}@{parts.netloc.rpartition('@')[2]}"))


@camera_app.command("rm")
def camera_rm(name: str = typer.Argument(...), controller: str = ControllerUrl) -> None:
    """Remove a camera: its agent closes the connection (recordings stay on the agent)."""
    with connected(controller) as c:
        c.remove_camera(name)
    typer.echo(f"removed {name}")


def _set_inspection(name: str, on: bool, controller: str) -> None:
    with connected(controller) as c:
        c.update_camera(name, {"inspection": on})
    typer.echo(f"inspection {'started' if on else 'stopped'} on {name}")


@inspect_app.command("start")
def inspect_start(camera: str = typer.Argument(...), controller: str = ControllerUrl) -> None:
    """Analyse this camera (its connection and recording are not touched)."""
    _set_inspection(camera, True, controller)


@inspect_app.command("stop")
def inspect_stop(camera: str = typer.Argument(...), controller: str = ControllerUrl) -> None:
    """Stop analysing this camera; it keeps being recorded."""
    _set_inspection(camera, False, controller)


@events_app.command("list")
def events_list(
    camera: str | None = typer.Option(None),
    kind: str | None = typer.Option(None),
    unacknowledged: bool = typer.Option(False, help="Only events nobody acknowledged."),
    limit: int = typer.Option(50, min=1, max=500),
    controller: str = ControllerUrl,
) -> None:
    """Newest events first."""
    with connected(controller) as c:
        page = c.events(camera=camera, kind=kind, limit=limit,
                        acknowledged=False if unacknowledged else None)  # fmt: skip
    rows = [{**e, "start": iso_us(e["start_us"])} for e in page["items"]]
    table(rows, ["id", "start", "camera", "kind", "roi_id", "peak_score", "acknowledged_by"])
