"""`camfleet agent enroll` against a real HTTP server speaking fleet/enrollment.py's contract."""

from __future__ import annotations

import base64
import json
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from conftest import free_port, wait_for
from fastapi import FastAPI, HTTPException
from pydantic import SecretStr
from typer.testing import CliRunner

from fleet.cli.main import app as camfleet
from fleet.enrollment import (
    CREDENTIALS_FILE,
    ENROLL_PATH,
    BrokerAccess,
    EnrollRequest,
    EnrollResponse,
    read_credentials,
)

TOKEN = "tok_" + "A1b2C3d4" * 3
GARBAGE_TOKEN = "garbage-" + "x" * 16
BROKER_PASSWORD = "broker-secret-never-shown"


class EnrollController:
    """The controller's enrollment route: one-time tokens, a 403 with the reason otherwise."""

    def __init__(self) -> None:
        self.requests: list[EnrollRequest] = []
        self.used: set[str] = set()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        api = FastAPI()

        @api.post(ENROLL_PATH)
        def enroll(request: EnrollRequest) -> dict[str, Any]:
            self.requests.append(request)
            token = request.token.get_secret_value()
            if token == GARBAGE_TOKEN:
                return {"agent_id": "edge-01"}
            if token != TOKEN:
                raise HTTPException(403, "unknown enrollment token")
            if token in self.used:
                raise HTTPException(403, "enrollment token already used")
            self.used.add(token)
            answer = EnrollResponse(
                agent_id="edge-01", name="edge-01", controller_url=self.url,
                broker=BrokerAccess(host="127.0.0.1", port=1883, username="edge-01",
                                    password=SecretStr(BROKER_PASSWORD)),
                signing_public_key=base64.b64encode(bytes(range(32))).decode(),
            ).model_dump(mode="json")  # fmt: skip
            answer["broker"]["password"] = BROKER_PASSWORD
            return answer

        self.server = uvicorn.Server(
            uvicorn.Config(api, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> EnrollController:
        self.thread.start()
        wait_for(lambda: self.server.started, 10, what="enrollment server")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def controller() -> Iterator[EnrollController]:
    with EnrollController() as ctl:
        yield ctl


def enroll(*args: str, token: str | None = TOKEN) -> tuple[int, str, str]:
    env = {"CAMFLEET_ENROLL_TOKEN": token} if token else {}
    result = CliRunner().invoke(camfleet, ["agent", "enroll", *args], env=env)
    output = result.stdout + result.stderr
    for secret in (TOKEN, GARBAGE_TOKEN, BROKER_PASSWORD):
        assert secret not in output
    assert "Traceback" not in output
    return result.exit_code, result.stdout, result.stderr


def test_enroll_writes_private_credentials_and_declares_the_agent(
    tmp_path: Path, controller: EnrollController
) -> None:
    data = tmp_path / "data"
    code, out, err = enroll("--controller", controller.url, "--data", str(data),
                            "--subnet", "10.0.0.0/24", "--max-cameras", "8")  # fmt: skip
    assert code == 0, err
    assert "enrolled as agent edge-01" in out
    path = data / CREDENTIALS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    creds = read_credentials(data)
    assert creds.agent_id == "edge-01"
    assert creds.broker.password.get_secret_value() == BROKER_PASSWORD
    assert json.loads((data / "agent.json").read_text()) == {
        "subnets": ["10.0.0.0/24"], "max_cameras": 8
    }  # fmt: skip
    request = controller.requests[-1]
    assert request.hostname == socket.gethostname() and request.subnets == ["10.0.0.0/24"]
    assert request.max_cameras == 8 and request.software_version

    # Enrolled already: refused before a token is spent.
    code, _, err = enroll("--controller", controller.url, "--data", str(data))
    assert code == 2 and "enrolled already" in err
    assert len(controller.requests) == 1


def test_a_refused_token_says_why(tmp_path: Path, controller: EnrollController) -> None:
    assert enroll("--controller", controller.url, "--data", str(tmp_path / "a"))[0] == 0
    code, _, err = enroll("--controller", controller.url, "--data", str(tmp_path / "b"))
    assert code == 2
    assert err.strip() == "enrollment refused: enrollment token already used"
    assert not (tmp_path / "b" / CREDENTIALS_FILE).exists()
    code, _, err = enroll("--controller", controller.url, "--data", str(tmp_path / "c"),
                          token="x" * 20)  # fmt: skip
    assert code == 2 and err.strip() == "enrollment refused: unknown enrollment token"


def test_unreachable_controller_bad_answers_and_bad_input_are_one_line_errors(
    tmp_path: Path, controller: EnrollController
) -> None:
    data = str(tmp_path / "data")
    code, _, err = enroll("--controller", f"http://127.0.0.1:{free_port()}", "--data", data)
    assert code == 2 and err.startswith("error: cannot reach the controller at http://127.0.0.1:")
    assert len(err.strip().splitlines()) == 1
    code, _, err = enroll("--controller", controller.url, "--data", data, token=GARBAGE_TOKEN)
    assert code == 2 and "the controller's answer is not an enrollment" in err
    code, _, err = enroll("--controller", controller.url, "--data", data, token="short")
    assert code == 2 and err.startswith("error: token:")
    code, _, err = enroll("--controller", "ftp://example", "--data", data)
    assert code == 2 and "URL scheme must be one of http, https" in err
    code, _, err = enroll("--controller", controller.url, "--data", data, "--subnet", "nonsense")
    assert code == 2 and err.startswith("error: subnets[0]:")
    assert not (tmp_path / "data" / CREDENTIALS_FILE).exists()
