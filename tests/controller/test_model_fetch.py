"""The agent's side of model distribution against the controller's real API: a model named by
the desired state is fetched with the agent's own credentials, checked (signature, size,
sha256) before it is kept, and then loads as the runtime loads it; tampering, a foreign key,
revocation and an unreachable controller are refused with a clear reason and retried."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import free_port, wait_for
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from model_fixtures import ServedApi, served_api
from pydantic import SecretStr
from tiny_model import tiny_artifact

from agent.detection.loaded_model import load_model
from agent.fleet.models import SUFFIX, ModelCache, ModelFetchError, controller_key, fetch_model
from agent.fleet.reconcile import cameras_from_desired, model_errors
from fleet.enrollment import AgentCredentials
from fleet.messages import DesiredState, ModelRef, model_signed_bytes

CAM_URL = "rtsp://10.0.0.5/101"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ServedApi]:
    with served_api(tmp_path / "controller") as served:
        yield served


def upload(api: ServedApi, camera: str, seed: int = 7) -> str:
    with api.admin() as admin:
        answer = admin.post("/models", content=tiny_artifact(camera, seed))
        return str(answer.raise_for_status().json()["sha256"])


def assign(api: ServedApi, camera: str, sha: str) -> None:
    with api.admin() as admin:
        admin.patch(f"/cameras/{camera}", json={"model": sha}).raise_for_status()


def setup_agent(api: ServedApi) -> tuple[AgentCredentials, DesiredState, ModelRef]:
    """An enrolled agent running camera "gate", whose desired state names gate's model."""
    creds = api.enroll("edge-01")
    api.camera_on("gate", creds.agent_id, CAM_URL)
    assign(api, "gate", upload(api, "gate"))
    desired = api.registry.desired_state(creds.agent_id)
    ref = desired.cameras[0].model
    assert ref is not None
    return creds, desired, ref


def fetch(creds: AgentCredentials, ref: ModelRef, directory: Path) -> Path:
    """As the agent's cache does it: its own credentials, the key from its enrollment."""
    auth = httpx.BasicAuth(creds.agent_id, creds.broker.password.get_secret_value())
    with httpx.Client() as client:
        return fetch_model(client, ref, controller_key(creds), directory, auth)


def resolved(cache: ModelCache, refs: list[ModelRef]) -> tuple[dict[str, Path], dict[str, str]]:
    """Resolve until the cache has an answer for every ref (a fetch takes its thread a while)."""

    def answer() -> tuple[dict[str, Path], dict[str, str]] | None:
        ready, failed = cache.resolve(refs)
        return (ready, failed) if len(ready) + len(failed) == len(refs) else None

    return wait_for(answer, timeout=15, what="the model fetches to end")


def test_the_agent_fetches_verifies_keeps_and_loads_its_model(
    api: ServedApi, tmp_path: Path
) -> None:
    creds, desired, ref = setup_agent(api)
    data = tmp_path / "agent"
    ended = threading.Event()
    cache = ModelCache(data, creds, on_change=ended.set)
    cache.start()
    try:
        assert cache.resolve([ref]) == ({}, {})  # being fetched: the camera runs unscored
        assert cameras_from_desired(desired, {})[0].model is None
        assert ended.wait(15) and cache.due()  # the control thread applies the state again
        ready, failed = cache.resolve([ref])
        assert failed == {} and not cache.due()
        # Fetched once: the cache answers from what it kept, controller or not.
        (api.registry.data_dir / "models" / f"{ref.sha256}{SUFFIX}").unlink()
        assert cache.resolve([ref]) == (ready, {})
    finally:
        cache.stop()
    path = ready[ref.sha256]
    assert path == data / "models" / f"{ref.sha256}{SUFFIX}"
    assert path.read_bytes() == tiny_artifact("gate")
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files
    (camera,) = cameras_from_desired(desired, ready)
    assert (camera.name, camera.model, camera.rois) == ("gate", path, desired.cameras[0].rois)
    model, extractor = load_model(path, camera.name)  # what the runtime does with it
    assert model.model_version == ref.model_version and extractor
    assert cache.stats() == {
        ref.sha256: {"model_version": ref.model_version, "state": "ready", "error": None}
    }

    # A restarted agent finds it on disk (and checks it again).
    again = ModelCache(data, creds)
    again.start()
    try:
        assert resolved(again, [ref]) == ({ref.sha256: path}, {})
    finally:
        again.stop()


def test_a_tampered_download_is_refused_and_not_kept(api: ServedApi, tmp_path: Path) -> None:
    creds, _, ref = setup_agent(api)
    stored = api.registry.data_dir / "models" / f"{ref.sha256}{SUFFIX}"
    content = bytearray(stored.read_bytes())
    content[len(content) // 2] ^= 0x01
    stored.write_bytes(bytes(content))
    directory = tmp_path / "agent" / "models"
    with pytest.raises(ModelFetchError, match=f"the download's sha256 is .*, not {ref.sha256}"):
        fetch(creds, ref, directory)
    assert list(directory.iterdir()) == []

    stored.write_bytes(bytes(content) + b"more")  # longer than announced: cut off while read
    with pytest.raises(ModelFetchError, match=f"longer than {ref.size} bytes"):
        fetch(creds, ref, directory)
    assert list(directory.iterdir()) == []

    # A damaged copy on the agent's disk is not trusted either: it is fetched again.
    stored.write_bytes(tiny_artifact("gate"))
    kept = directory / f"{ref.sha256}{SUFFIX}"
    kept.write_bytes(bytes(content))
    assert fetch(creds, ref, directory) == kept
    assert kept.read_bytes() == tiny_artifact("gate")


def test_a_ref_not_signed_by_the_enrollment_key_is_refused_before_any_download(
    api: ServedApi, tmp_path: Path
) -> None:
    creds, _, ref = setup_agent(api)
    directory = tmp_path / "agent" / "models"
    forger = Ed25519PrivateKey.generate()
    raw = forger.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    other_controller = creds.model_copy(
        update={"signing_public_key": base64.b64encode(raw).decode()}
    )
    forged = ref.model_copy(update={"signature": forger.sign(model_signed_bytes(ref.sha256))})
    # A valid signature of another artifact does not carry over to this one.
    other = upload(api, "gate", seed=8)
    assign(api, "gate", other)
    moved = api.registry.desired_state(creds.agent_id).cameras[0].model
    assert moved is not None and moved.sha256 == other
    swapped = ref.model_copy(update={"signature": moved.signature})
    for who, bad in ((other_controller, ref), (creds, forged), (creds, swapped)):
        with pytest.raises(ModelFetchError, match="signature does not verify"):
            fetch(who, bad, directory)
    assert not directory.exists()  # refused before anything was downloaded


def test_refused_credentials_and_an_unreachable_controller_are_clear_and_retried(
    api: ServedApi, tmp_path: Path
) -> None:
    creds, desired, ref = setup_agent(api)
    directory = tmp_path / "agent" / "models"
    nope = creds.broker.model_copy(update={"password": SecretStr("nope")})
    wrong = creds.model_copy(update={"broker": nope})
    with pytest.raises(ModelFetchError, match=r"the controller answered 401: .*wrong password"):
        fetch(wrong, ref, directory)

    port = free_port()
    away = ref.model_copy(update={"url": f"http://127.0.0.1:{port}/api/v1/models/{ref.sha256}"})
    with pytest.raises(ModelFetchError, match=f"cannot fetch it from 127.0.0.1:{port}"):
        fetch(creds, away, directory)

    # The cache: a camera the agent does not run yet has no model for it (404, not retried
    # before retry_s), then it does, and the retry brings the model.
    api.registry.update_camera("gate", owner=None, target=None)
    cache = ModelCache(tmp_path / "agent", creds, retry_s=0.5)
    cache.start()
    try:
        ready, failed = resolved(cache, [ref])
        assert ready == {} and "answered 404" in failed[ref.sha256]
        assert cache.stats()[ref.sha256]["state"] == "failed"
        assert model_errors(desired, failed) == {"gate": failed[ref.sha256]}
        assert not cache.due()  # not before retry_s
        api.registry.update_camera("gate", owner=creds.agent_id, target=creds.agent_id)
        wait_for(cache.due, timeout=5, what="the failed fetch to be due again")
        ready, failed = resolved(cache, [ref])
        assert failed == {} and ready[ref.sha256].read_bytes() == tiny_artifact("gate")

        with api.admin() as admin:
            admin.post(f"/agents/{creds.agent_id}/revoke").raise_for_status()
        with pytest.raises(ModelFetchError, match="answered 401"):
            fetch(creds, ref, tmp_path / "another")
    finally:
        cache.stop()
