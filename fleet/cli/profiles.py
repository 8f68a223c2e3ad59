"""`camfleet profiles`: list and inspect the shipped camera firmware profiles."""

from __future__ import annotations

from collections.abc import Sequence

import typer

from fleet.profiles import (
    FirmwareProfile,
    MultiClient,
    ProfileError,
    StreamKind,
    StreamProfile,
    list_profiles,
    load_profile,
)

app = typer.Typer(
    help="Camera firmware profiles: RTSP URLs, keep-alive, session limits, multi-client behaviour.",
    no_args_is_help=True,
)

# Documentation address (RFC 5737), so example URLs can never reach a real camera.
EXAMPLE_HOST = "192.0.2.10"


def describe_degradation(multi: MultiClient) -> str:
    """Short human summary of what a second client costs, e.g. 'fps/2, bitrate x0.5'."""
    effects = []
    if multi.fps_divisor > 1:
        effects.append(f"fps/{multi.fps_divisor}")
    if multi.bitrate_factor < 1.0:
        effects.append(f"bitrate x{multi.bitrate_factor:g}")
    if multi.frames_differ:
        effects.append("frames differ")
    return ", ".join(effects) or "no"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


@app.command("list")
def list_command() -> None:
    """One line per profile."""
    header = ["NAME", "FAMILY", "TRANSPORT", "KEEP-ALIVE", "MAX SESSIONS", "DEGRADES", "RTCP SR"]
    rows = [
        [
            p.name,
            p.family,
            p.transport,
            f"{p.keepalive.method} / {p.keepalive.session_timeout_s}s",
            str(p.max_sessions),
            describe_degradation(p.multi_client),
            "yes" if p.rtcp_sender_reports else "no",
        ]
        for p in list_profiles()
    ]
    typer.echo(_table(header, rows))


def _stream_lines(kind: str, stream: StreamProfile) -> list[str]:
    return [
        f"{kind} stream:",
        f"  path:     {stream.path}",
        f"  video:    {stream.codec} {stream.width}x{stream.height} @ {stream.fps:g} fps, "
        f"GOP {stream.gop}, {stream.bitrate_kbps} kbit/s",
    ]


def render_profile(p: FirmwareProfile) -> str:
    """Every field of a profile, readably, with example URLs for channel 1."""
    lines = [
        f"{p.name} ({p.family})",
        f"  {p.description}",
        "",
        f"port:            {p.default_port}",
        f"transport:       {p.transport}",
        f"keep-alive:      {p.keepalive.method}, session timeout {p.keepalive.session_timeout_s} s",
        f"max sessions:    {p.max_sessions}",
        f"RTCP SR:         {'yes' if p.rtcp_sender_reports else 'no'}",
        f"multi-client:    degrades: {describe_degradation(p.multi_client)}",
    ]
    if p.multi_client.notes:
        lines.append(f"                 {p.multi_client.notes}")
    lines += _stream_lines("main", p.main)
    if p.sub is not None:
        lines += _stream_lines("sub", p.sub)
    if p.quirks:
        lines.append("quirks:")
        lines += [f"  - {q}" for q in p.quirks]
    lines.append("example URLs (channel 1):")
    kinds: list[StreamKind] = ["main"] if p.sub is None else ["main", "sub"]
    lines += [f"  {k}: {p.rtsp_url(EXAMPLE_HOST, 1, k)}" for k in kinds]
    return "\n".join(lines)


@app.command("show")
def show_command(name: str = typer.Argument(help="Profile name, e.g. hikvision.")) -> None:
    """All fields of one profile, with example URLs."""
    try:
        profile = load_profile(name)
    except ProfileError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=2) from None
    typer.echo(render_profile(profile))
