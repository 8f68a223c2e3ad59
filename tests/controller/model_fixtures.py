"""What the model distribution tests share: the controller's API served by uvicorn at the URL it
advertises (so the ModelRefs it builds are fetchable), and the tiny real artifacts of tiny_model."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from conftest import free_port, wait_for
from tiny_model import ROIS

from controller.api.app import create_app
from controller.api.context import ApiContext
from controller.auth import set_admin_password
from controller.registry import CameraRecord, Registry
from fleet.enrollment import AgentCredentials

PASSWORD = "model-admin-password"


@dataclass
class ServedApi:
    url: str
    registry: Registry

    def admin(self) -> httpx.Client:
        body = {"username": "admin", "password": PASSWORD}
        login = httpx.post(f"{self.url}/api/v1/login", json=body, timeout=10)
        return httpx.Client(
            base_url=f"{self.url}/api/v1", timeout=30,
            headers={"Authorization": f"Bearer {login.raise_for_status().json()['token']}"},
        )  # fmt: skip

    def enroll(self, name: str) -> AgentCredentials:
        """A real enrollment: the agent's credentials as `camfleet agent enroll` keeps them."""
        with self.admin() as admin:
            token = admin.post("/tokens", json={"name": name}).raise_for_status().json()["token"]
            body = {"token": token, "hostname": f"{name}-host", "software_version": "0.1.0"}
            answer = admin.post("/enroll", json=body).raise_for_status()
        return AgentCredentials.model_validate(answer.json())

    def camera_on(self, name: str, agent_id: str, url: str) -> None:
        """A camera the agent runs now (as the supervisor would have placed it)."""
        self.registry.add_camera(CameraRecord(name=name, main_url=url, rois=ROIS,
                                              placement=agent_id))  # fmt: skip
        self.registry.update_camera(name, owner=agent_id, target=agent_id)


@contextmanager
def served_api(data_dir: Path) -> Iterator[ServedApi]:
    registry = Registry.open(data_dir)
    set_admin_password(registry, "admin", PASSWORD)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    ctx = ApiContext(registry=registry, broker_host="127.0.0.1", broker_port=1883,
                     controller_url=url)  # fmt: skip
    server = uvicorn.Server(
        uvicorn.Config(create_app(ctx), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 10, what="uvicorn to serve the API")
        yield ServedApi(url, registry)
    finally:
        server.should_exit = True
        thread.join(10)
        registry.close()
