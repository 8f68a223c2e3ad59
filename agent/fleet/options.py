"""What an agent declared when it enrolled (the subnets it reaches, how many cameras it takes),
kept in DATA/agent.json so `camfleet agent run --data DIR` needs nothing else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleet.messages import Subnet, format_validation_error

OPTIONS_FILE: Final = "agent.json"


class OptionsError(ValueError):
    """The options file is unusable; the text names the file and what is wrong."""


class AgentOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    subnets: Annotated[list[Subnet], Field(max_length=64)] = []
    max_cameras: Annotated[int, Field(ge=0, le=4096)] = 16


def save_options(data_dir: Path, options: AgentOptions) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / OPTIONS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(options.model_dump(mode="json"), indent=2))
    tmp.replace(path)
    return path


def load_options(data_dir: Path) -> AgentOptions:
    """The saved options; the defaults when the agent was enrolled without any."""
    path = data_dir / OPTIONS_FILE
    try:
        return AgentOptions.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return AgentOptions()
    except OSError as exc:
        raise OptionsError(f"cannot read {path}: {exc.strerror}") from None
    except ValidationError as exc:
        raise OptionsError(f"{path}: " + "; ".join(format_validation_error(exc))) from None
