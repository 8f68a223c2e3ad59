"""`camfleet controller run`: the controller, with an embedded broker unless told otherwise."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError

from controller.cli.options import PASSWORD_ENV, fail
from fleet.config import ConfigError, ControllerConfig, load_controller_config
from fleet.messages import format_validation_error

controller_app = typer.Typer(help="The fleet controller.", no_args_is_help=True)


def _admin_password(has_one: bool) -> str | None:
    """The password to set: from the environment, else asked on the first start only."""
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if has_one:
        return None
    if not sys.stdin.isatty():
        raise fail(f"first start: set {PASSWORD_ENV} to choose the admin password")
    password: str = typer.prompt("choose the admin password", hide_input=True,
                                 confirmation_prompt=True)  # fmt: skip
    return password


@controller_app.command("run")
def run(
    data: Path = typer.Option(..., help="Data directory: registry, events, clips."),
    http_port: int | None = typer.Option(None, help="Web/API port [8080]."),
    http_host: str | None = typer.Option(None, help="Web/API address [127.0.0.1]."),
    mqtt_port: int | None = typer.Option(None, help="Port of the embedded broker [1883]."),
    mqtt_url: str | None = typer.Option(None, help="External broker, mqtt://host:port."),
    failover_grace: float | None = typer.Option(
        None, help="Seconds an agent may be gone before its cameras move [60]."
    ),
    config: Path | None = typer.Option(None, help="Controller config file (TOML)."),
) -> None:
    """Run the controller: registry, broker link, event center and the web API."""
    from controller.service import ControllerService

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        loaded = load_controller_config(config) if config else None
        # Only what the file says: defaults it left out must not clash with the options.
        base: dict[str, Any] = loaded.model_dump(exclude_unset=True) if loaded else {}
        base["data_dir"] = data
        http = base.setdefault("http", {})
        for key, value in (("port", http_port), ("host", http_host)):
            if value is not None:
                http[key] = value
        mqtt = {k: v for k, v in base.get("mqtt", {}).items() if v is not None}
        if mqtt_port is not None:
            mqtt["embedded_port"] = mqtt_port
        if mqtt_url is not None:
            mqtt["url"] = mqtt_url
            mqtt.pop("embedded_port", None)
        base["mqtt"] = mqtt
        if failover_grace is not None:
            base.setdefault("fleet", {})["failover_grace_s"] = failover_grace
        cfg = ControllerConfig.model_validate(base)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    except ValidationError as exc:
        raise fail("; ".join(format_validation_error(exc))) from None
    service = ControllerService(cfg)
    password = _admin_password(service.has_admin_password())
    if password is not None:
        service.set_admin_password(password)
    service.run()
