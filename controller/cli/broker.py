"""`camfleet broker config`: Mosquitto's password and ACL files from the controller's registry."""

from __future__ import annotations

from pathlib import Path

import typer

from controller.broker.mosquitto_config import reload, write_mosquitto_config
from controller.cli.options import fail
from controller.registry import Registry

broker_app = typer.Typer(help="An external Mosquitto broker.", no_args_is_help=True)


@broker_app.command("config")
def broker_config(
    data: Path = typer.Option(..., help="The controller's data directory (its registry)."),
    out: Path = typer.Option(..., help="Where to write mosquitto.conf, passwd and acl."),
    port: int = typer.Option(1883, help="Port Mosquitto listens on."),
    host: str = typer.Option("127.0.0.1", help="Address Mosquitto listens on."),
    reload_pid: int | None = typer.Option(None, help="SIGHUP this Mosquitto to re-read them."),
) -> None:
    """Each agent may use only its own topics; the controller may use all. Run Mosquitto with
    `mosquitto -c OUT/mosquitto.conf` (and the controller with --mqtt-url mqtt://HOST:PORT)."""
    if not (data / "registry.db").exists():
        raise fail(f"no controller registry in {data} (give the controller's --data)")
    with Registry.open(data) as registry:
        registry.controller_broker_password()  # the controller's own identity must exist
        identities = registry.identities()
    files = write_mosquitto_config(out, identities, port=port, host=host)
    typer.echo(f"wrote {files.config}, {files.passwd}, {files.acl} ({len(identities)} identities)")
    if reload_pid is not None:
        try:
            reload(reload_pid)
        except OSError as exc:
            raise fail(f"cannot signal Mosquitto (pid {reload_pid}): {exc.strerror}") from None
