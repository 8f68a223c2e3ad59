"""The agent's software version, as it reports it when enrolling and in its status."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def software_version() -> str:
    try:
        return version("camfleet")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"
