"""Entry point of `camfleet`: assembles the commands of each side.

This is the one module allowed to see both `agent` and `controller`; everything else in `fleet`
imports neither.
"""

from __future__ import annotations

import typer

from agent.cli import app as agent_app
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
app.command("sim")(sim_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
