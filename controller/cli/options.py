"""What every admin command shares: where the controller is and the admin password."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from controller.client import ClientError, ControllerClient

PASSWORD_ENV = "CAMFLEET_ADMIN_PASSWORD"
CONTROLLER_ENV = "CAMFLEET_CONTROLLER"

ControllerUrl = typer.Option(
    "http://127.0.0.1:8080",
    "--controller",
    envvar=CONTROLLER_ENV,
    help=f"Controller URL (or ${CONTROLLER_ENV}).",
)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def parse_duration(text: str) -> float:
    """`90s`, `30m`, `1h`, `7d` or plain seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match or float(match[1]) <= 0:
        raise fail(f"bad duration {text!r}: use e.g. 90s, 30m, 1h, 7d")
    return float(match[1]) * _UNITS[match[2] or "s"]


def admin_password() -> str:
    """From $CAMFLEET_ADMIN_PASSWORD, else asked for when a person is at the terminal."""
    password = os.environ.get(PASSWORD_ENV)
    if password:
        return password
    if sys.stdin.isatty():
        entered: str = typer.prompt("admin password", hide_input=True)
        return entered
    raise fail(f"set {PASSWORD_ENV} (no terminal to ask for the admin password)")


@contextmanager
def connected(url: str) -> Iterator[ControllerClient]:
    try:
        with ControllerClient(url, admin_password()) as client:
            yield client
    except ClientError as exc:
        raise fail(str(exc)) from None


def table(rows: list[dict[str, object]], columns: list[str]) -> None:
    """Aligned columns; '-' for missing values."""
    cells = [[("-" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    typer.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
