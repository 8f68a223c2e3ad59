"""Admin commands for model distribution: upload a trained artifact and assign it to its camera,
list the stored models. They act on a running controller, like controller.cli.admin."""

from __future__ import annotations

from pathlib import Path

import typer

from controller.cli.options import ControllerUrl, connected, fail, table
from fleet.utc import iso_us

models_app = typer.Typer(help="Models on the controller, which agents fetch and verify.",
                         no_args_is_help=True)  # fmt: skip


@models_app.command("push")
def model_push(
    camera: str = typer.Argument(..., help="The camera the model was trained for."),
    file: Path = typer.Argument(..., help="Artifact from `camfleet model train`."),
    controller: str = ControllerUrl,
) -> None:
    """Upload a model artifact and make CAMERA use it: its agent fetches it, checks its sha256
    and the controller's signature, and scores the camera's ROIs with it."""
    try:
        content = file.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror}") from None
    with connected(controller) as c:
        model = c.upload_model(content)
        c.update_camera(camera, {"model": model["sha256"]})
    typer.echo(f"model {model['model_version']} (sha256 {model['sha256']}) -> camera {camera}")


@models_app.command("list")
def model_list(controller: str = ControllerUrl) -> None:
    """Stored models, newest first, with the cameras using each."""
    with connected(controller) as c:
        models = c.models()
    rows = [{**m, "created": iso_us(m["created_us"]), "cameras": ",".join(m["cameras"]) or None}
            for m in models]  # fmt: skip
    table(rows, ["model_version", "camera", "cameras", "size", "created", "sha256"])
