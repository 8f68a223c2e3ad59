"""The controller's model store through its real API (uvicorn, httpx) with real artifacts:
upload, signature, listing, assignment to cameras, the desired state's ModelRef, who may
download, and the admin CLI."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from model_fixtures import PASSWORD, ServedApi, served_api
from tiny_model import tiny_artifact
from typer.testing import CliRunner

from controller.api import models_routes
from controller.cli.models import models_app
from controller.models import store as store_module
from controller.models.store import SUFFIX
from fleet.messages import DesiredState, encode_message, model_signed_bytes, parse_message

OCTETS = {"Content-Type": "application/octet-stream"}
CAM_URL = "rtsp://10.0.0.5/101"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ServedApi]:
    with served_api(tmp_path / "controller") as served:
        yield served


def models_dir(api: ServedApi) -> Path:
    return api.registry.data_dir / "models"


def tar_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_upload_signs_keeps_lists_and_serves_the_artifact(api: ServedApi) -> None:
    content = tiny_artifact("gate")
    sha = hashlib.sha256(content).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(content)) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    with api.admin() as admin:
        created = admin.post("/models", content=content, headers=OCTETS)
        assert created.status_code == 201, created.text
        view = created.json()
        assert view["sha256"] == sha and view["size"] == len(content)
        assert (view["camera"], view["model_version"]) == ("gate", manifest["model_version"])
        assert view["cameras"] == []
        # Signed with the key agents get at enrollment, over the artifact's identity.
        key = Ed25519PublicKey.from_public_bytes(
            base64.b64decode(api.enroll("edge-01").signing_public_key)
        )
        key.verify(base64.b64decode(view["signature"]), model_signed_bytes(sha))

        again = admin.post("/models", content=content, headers=OCTETS)
        assert again.status_code == 200 and again.json() == view  # the same bytes: same model
        assert admin.get("/models").json() == [view]
        download = admin.get(f"/models/{sha}")
        assert download.status_code == 200 and download.content == content
        assert admin.get(f"/models/{'0' * 64}").status_code == 404
        assert admin.get("/models/not-a-sha").status_code == 422
    assert (models_dir(api) / f"{sha}{SUFFIX}").read_bytes() == content
    assert [p.name for p in models_dir(api).iterdir()] == [f"{sha}{SUFFIX}"]  # no temp files


def test_upload_refuses_what_is_not_a_distributable_artifact(
    api: ServedApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = json.dumps({"camera": "gate", "model_version": "gate-1"}).encode()
    refused = {
        b"not a tar at all" * 100: "not a model artifact (a tar file)",
        b"": "not a model artifact (a tar file)",
        tar_of({"extractor.tflite": b"x"}): "no manifest.json",
        tar_of({"manifest.json": b"{not json"}): "manifest.json does not describe a model",
        tar_of({"manifest.json": b'{"model_version": "gate-1"}'}): "camera: Field required",
        tar_of({"manifest.json": b'{"camera": "gate"}'}): "model_version: Field required",
        tar_of({"manifest.json": b'{"camera": "Gate 1", "model_version": "v"}'}): "camera:",
        tar_of({"manifest.json": b'{"camera": "gate", "model_version": "a b"}'}): "model_vers",
    }
    with api.admin() as admin:
        for content, why in refused.items():
            answer = admin.post("/models", content=content, headers=OCTETS)
            assert answer.status_code == 422, (why, answer.text)
            assert why in answer.json()["detail"]
        assert admin.get("/models").json() == []

        small = tar_of({"manifest.json": good, "pad": bytes(4000)})
        monkeypatch.setattr(store_module, "MAX_BYTES", 3000)  # as sent: chunked, no length
        chunked = admin.post("/models", content=iter([small[:2000], small[2000:]]))
        assert chunked.status_code == 413, chunked.text
        monkeypatch.setattr(models_routes, "MAX_BYTES", 3000)  # as declared: refused unread
        declared = admin.post("/models", content=small, headers=OCTETS)
        assert declared.status_code == 413 and "larger than" in declared.json()["detail"]
        monkeypatch.undo()
        assert admin.post("/models", content=small, headers=OCTETS).status_code == 201

        anonymous = admin.post("/models", content=small, headers={"Authorization": ""})
        assert anonymous.status_code == 401
    assert len(list(models_dir(api).iterdir())) == 1  # refused uploads leave nothing


def test_assigning_a_model_puts_its_ref_in_the_desired_state(api: ServedApi) -> None:
    agent = api.enroll("edge-01").agent_id
    api.camera_on("gate", agent, CAM_URL)
    plain = encode_message(api.registry.desired_state(agent))
    assert b'"model"' not in plain  # readable by an agent older than model distribution
    with api.admin() as admin:
        gate = admin.post("/models", content=tiny_artifact("gate"), headers=OCTETS).json()
        other = admin.post("/models", content=tiny_artifact("yard"), headers=OCTETS).json()
        wrong = admin.patch("/cameras/gate", json={"model": other["sha256"]})
        assert wrong.status_code == 422
        assert "trained for camera 'yard', not 'gate'" in wrong.json()["detail"]
        unknown = admin.patch("/cameras/gate", json={"model": "ab" * 32})
        assert unknown.status_code == 422 and "no model" in unknown.json()["detail"]
        assert admin.patch("/cameras/gate", json={"model": "ABC"}).status_code == 422
        assert admin.get("/cameras/gate").json()["model"] is None

        assigned = admin.patch("/cameras/gate", json={"model": gate["sha256"]})
        assert assigned.status_code == 200 and assigned.json()["model"] == gate["sha256"]
        listed = {m["camera"]: m["cameras"] for m in admin.get("/models").json()}
        assert listed == {"gate": ["gate"], "yard": []}

        desired = parse_message(encode_message(api.registry.desired_state(agent)), DesiredState)
        ref = desired.cameras[0].model
        assert ref is not None
        assert (ref.sha256, ref.size, ref.model_version) == (
            gate["sha256"], gate["size"], gate["model_version"],
        )  # fmt: skip
        assert ref.url == f"{api.url}/api/v1/models/{gate['sha256']}"
        assert base64.b64encode(ref.signature).decode() == gate["signature"]

        cleared = admin.patch("/cameras/gate", json={"model": None})
        assert cleared.status_code == 200 and cleared.json()["model"] is None
    assert api.registry.desired_state(agent).cameras[0].model is None


def test_who_may_download_a_model(api: ServedApi) -> None:
    runs, other = api.enroll("edge-01"), api.enroll("edge-02")
    api.camera_on("gate", runs.agent_id, CAM_URL)
    content = tiny_artifact("gate")
    with api.admin() as admin:
        sha = admin.post("/models", content=content, headers=OCTETS).json()["sha256"]
        admin.patch("/cameras/gate", json={"model": sha}).raise_for_status()
    path = f"/models/{sha}"

    def fetch(auth: tuple[str, str] | None) -> int:
        with api.admin() as admin:
            del admin.headers["Authorization"]
            answer = admin.get(path, auth=auth)
        assert answer.status_code != 200 or answer.content == content
        return answer.status_code

    password = runs.broker.password.get_secret_value()
    assert fetch((runs.agent_id, password)) == 200
    assert fetch(None) == 401
    assert fetch((runs.agent_id, password + "x")) == 401
    assert fetch(("edge-99", password)) == 401
    controller = api.registry.controller_broker_password()
    assert fetch(("camfleet-controller", controller)) == 401  # only agents, not the broker's peer
    # An agent gets only the models of cameras it runs, and cannot tell others exist.
    assert fetch((other.agent_id, other.broker.password.get_secret_value())) == 404
    with api.admin() as admin:
        admin.post(f"/agents/{runs.agent_id}/revoke").raise_for_status()
    assert fetch((runs.agent_id, password)) == 401


def test_cli_pushes_and_lists_models(api: ServedApi, tmp_path: Path) -> None:
    api.camera_on("gate", api.enroll("edge-01").agent_id, CAM_URL)
    artifact = tmp_path / "gate.camfleet-model"
    artifact.write_bytes(tiny_artifact("gate"))
    sha = hashlib.sha256(artifact.read_bytes()).hexdigest()
    runner = CliRunner()
    env = {"CAMFLEET_ADMIN_PASSWORD": PASSWORD, "CAMFLEET_CONTROLLER": api.url}

    pushed = runner.invoke(models_app, ["push", "gate", str(artifact)], env=env)
    assert pushed.exit_code == 0, pushed.output
    assert f"(sha256 {sha}) -> camera gate" in pushed.output
    camera = api.registry.camera("gate")
    assert camera is not None and camera.model == sha

    listed = runner.invoke(models_app, ["list"], env=env)
    assert listed.exit_code == 0, listed.output
    header, row = listed.output.splitlines()
    assert header.split() == ["MODEL_VERSION", "CAMERA", "CAMERAS", "SIZE", "CREATED", "SHA256"]
    assert row.split()[1:3] == ["gate", "gate"] and row.split()[-1] == sha

    elsewhere = runner.invoke(models_app, ["push", "nope", str(artifact)], env=env)
    assert elsewhere.exit_code == 2 and "no camera 'nope'" in elsewhere.output
    missing = runner.invoke(models_app, ["push", "gate", str(tmp_path / "none")], env=env)
    assert missing.exit_code == 2 and "cannot read" in missing.output
