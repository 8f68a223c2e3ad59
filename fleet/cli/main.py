"""Entry point of `camfleet`: assembles the commands of each side.

This is the one module allowed to see both `agent` and `controller`; everything else in `fleet`
imports neither.
"""

from __future__ import annotations

import typer

from agent.cli import app as agent_app
from agent.detection.model.cli import app as model_app
from agent.evaluation.cli import eval_command
from controller.cli.admin import agents_app, camera_app, events_app, inspect_app, token_app
from controller.cli.broker import broker_app
from controller.cli.demo import demo_command
from controller.cli.models import models_app
from controller.cli.run import controller_app
from fleet.cli.profiles import app as profiles_app
from fleet.cli.sim import sim_command

app = typer.Typer(
    name="camfleet",
    help="Anomaly detection for IP-camera fleets.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(profiles_app, name="profiles")
app.add_typer(agent_app, name="agent")
app.add_typer(controller_app, name="controller")
app.add_typer(token_app, name="token")
app.add_typer(agents_app, name="agents")
app.add_typer(camera_app, name="camera")
app.add_typer(inspect_app, name="inspect")
app.add_typer(events_app, name="events")
app.add_typer(broker_app, name="broker")
# One `camfleet model` group: train/show act on files here, push/list on the controller.
model_app.registered_commands += models_app.registered_commands
app.add_typer(model_app, name="model")
app.command("eval")(eval_command)
app.command("demo")(demo_command)
app.command("sim")(sim_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
