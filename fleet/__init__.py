"""Contracts shared by agent and controller: schemas, topics, profiles, config, simulator, CLI.

Nothing in here imports `agent` or `controller`, except the CLI's entry module which assembles
each side's commands.
"""

__version__ = "0.1.0"
