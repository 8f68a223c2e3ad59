"""The controller's HTTP API served by uvicorn on a free port, driven with httpx; a real
registry underneath. TestClient only for the app's construction edge cases."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from conftest import free_port, wait_for
from fastapi import APIRouter, Request
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.api.context import ApiContext
from controller.api.security import SESSION_COOKIE
from controller.auth import set_admin_password
from controller.broker.passwd import verify_password
from controller.registry import CameraRecord, Registry
from fleet.enrollment import ENROLL_PATH, EnrollResponse
from fleet.messages import (
    AgentStatus,
    CameraReport,
    Capacity,
    DiscoveryReport,
    FoundCamera,
    Heartbeat,
    ReportedState,
)
from fleet.utc import now_us

PASSWORD = "correct horse battery"
CAMERA_PASSWORD = "Cam-S3cret"


@dataclass
class Controller:
    url: str
    registry: Registry
    changes: list[int] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url + "/api/v1", timeout=10)

    def admin(self) -> httpx.Client:
        body = {"username": "admin", "password": PASSWORD}
        login = httpx.post(f"{self.url}/api/v1/login", json=body, timeout=10).raise_for_status()
        client = self.client()
        client.headers["Authorization"] = f"Bearer {login.json()['token']}"
        return client


def context(registry: Registry, ctl: Controller | None = None, **extra: object) -> ApiContext:
    return ApiContext(
        registry=registry, broker_host="broker.example", broker_port=8883,
        controller_url="http://controller.example:8080",
        on_change=(lambda: ctl.changes.append(1)) if ctl else lambda: None,
        on_revoke=ctl.revoked.append if ctl else lambda agent_id: None,
        **extra,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[Controller]:
    registry = Registry.open(tmp_path)
    set_admin_password(registry, "admin", PASSWORD)
    port = free_port()
    ctl = Controller(f"http://127.0.0.1:{port}", registry)
    config = uvicorn.Config(
        create_app(context(registry, ctl)), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 10, what="uvicorn to serve the API")
        yield ctl
    finally:
        server.should_exit = True
        thread.join(10)
        registry.close()


def enroll_agent(ctl: Controller, admin: httpx.Client, name: str) -> str:
    token = admin.post("/tokens", json={"name": name}).raise_for_status().json()["token"]
    body = {"token": token, "hostname": f"{name}-host", "software_version": "0.1.0"}
    return str(ctl.client().post("/enroll", json=body).raise_for_status().json()["agent_id"])


# --- sessions ----------------------------------------------------------------------------------


def test_health_is_public_and_everything_else_needs_a_session(controller: Controller) -> None:
    with controller.client() as anon:
        health = anon.get("/health")
        assert health.status_code == 200 and health.json()["ok"] is True
        for method, path in (("GET", "/agents"), ("GET", "/cameras"), ("GET", "/fleet/health"),
                             ("GET", "/metrics"), ("POST", "/tokens"), ("GET", "/discovered"),
                             ("DELETE", "/cameras/cam1")):  # fmt: skip
            answer = anon.request(method, path)
            assert answer.status_code == 401, path
            assert answer.json()["detail"].startswith("not logged in: POST /api/v1/login")
            assert answer.headers["www-authenticate"] == "Bearer"
        wrong = anon.get("/agents", headers={"Authorization": "Bearer not-a-session"})
        assert wrong.status_code == 401
        assert wrong.json()["detail"] == "session unknown or expired: log in again"


def test_login_gives_a_token_and_a_strict_http_only_cookie(controller: Controller) -> None:
    with controller.client() as web:
        refused = web.post("/login", json={"username": "admin", "password": "nope, wrong"})
        assert refused.status_code == 401
        assert refused.json()["detail"] == "wrong username or password"
        started = now_us()
        login = web.post("/login", json={"username": "admin", "password": PASSWORD})
        assert login.status_code == 200
        token, expires_us = login.json()["token"], login.json()["expires_us"]
        assert started + 12 * 3600 * 10**6 <= expires_us <= now_us() + 12 * 3600 * 10**6
        cookie = login.headers["set-cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}={token};")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert web.get("/agents").status_code == 200  # by the cookie alone
        with controller.client() as script:
            bearer = {"Authorization": f"Bearer {token}"}
            assert script.get("/cameras", headers=bearer).status_code == 200
        assert web.post("/logout").status_code == 204
        assert web.get("/agents").status_code == 401
    with controller.client() as script:
        assert script.get("/cameras", headers=bearer).status_code == 401  # the session ended


def test_failed_logins_from_one_address_get_429(controller: Controller) -> None:
    with controller.client() as client:
        for _ in range(10):
            body = {"username": "admin", "password": "guessing"}
            assert client.post("/login", json=body).status_code == 401
        throttled = client.post("/login", json={"username": "admin", "password": PASSWORD})
        assert throttled.status_code == 429
        assert 1 <= int(throttled.headers["retry-after"]) <= 60
        assert "too many failed logins" in throttled.json()["detail"]


def test_malformed_logins_are_422_without_echoing_the_password(controller: Controller) -> None:
    with controller.client() as client:
        answer = client.post("/login", json={"username": "admin", "password": PASSWORD, "x": 1})
        assert answer.status_code == 422
        assert "body.x: Extra inputs are not permitted" in answer.json()["detail"]
        assert PASSWORD not in answer.text
        broken = client.post(
            "/login", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert broken.status_code == 422 and "JSON decode error" in broken.json()["detail"]


# --- enrollment and agents ---------------------------------------------------------------------


def test_enroll_with_a_token_then_a_replay_is_refused(controller: Controller) -> None:
    with controller.admin() as admin, controller.client() as agent:
        created = admin.post("/tokens", json={"name": "edge-01", "ttl_s": 600})
        assert created.status_code == 201
        token = created.json()["token"]
        assert created.json()["name"] == "edge-01"
        assert created.json()["expires_us"] > now_us() + 590 * 10**6
        in_use = admin.post("/tokens", json={"name": "edge-01"})
        assert in_use.status_code == 201  # not enrolled yet: a second token is allowed

        body = {"token": token, "hostname": "cabinet-3", "software_version": "0.1.0",
                "subnets": ["10.1.0.0/24"], "max_cameras": 8}  # fmt: skip
        answer = agent.post(ENROLL_PATH.removeprefix("/api/v1"), json=body)
        assert answer.status_code == 200, answer.text
        assert answer.headers["cache-control"] == "no-store"
        creds = EnrollResponse.model_validate_json(answer.content)
        assert (creds.agent_id, creds.name) == ("edge-01", "edge-01")
        assert (creds.broker.host, creds.broker.port, creds.broker.username) == (
            "broker.example", 8883, "edge-01",
        )  # fmt: skip
        assert creds.controller_url == "http://controller.example:8080"
        assert creds.signing_public_key == controller.registry.signing_public_key_b64()
        identity = controller.registry.identity("edge-01")
        assert identity is not None
        assert verify_password(creds.broker.password.get_secret_value(), identity.password_hash)
        assert controller.changes  # the controller was told

        replay = agent.post("/enroll", json=body)
        assert replay.status_code == 403
        assert replay.json() == {"detail": "enrollment token already used"}
        unknown = agent.post("/enroll", json={**body, "token": "x" * 43})
        assert unknown.json() == {"detail": "unknown enrollment token"}
        malformed = agent.post("/enroll", json={"token": token, "hostname": "h"})
        assert malformed.status_code == 422
        assert "body.software_version: Field required" in malformed.json()["detail"]
        assert token not in malformed.text

        conflict = admin.post("/tokens", json={"name": "edge-01"})
        assert conflict.status_code == 409
        assert conflict.json()["detail"] == "agent name edge-01 is in use"
        bad = admin.post("/tokens", json={"name": "no spaces", "ttl_s": -1})
        assert bad.status_code == 422
        assert "body.name" in bad.json()["detail"] and "body.ttl_s" in bad.json()["detail"]


def test_agents_are_listed_shown_and_revoked(controller: Controller) -> None:
    with controller.admin() as admin:
        enroll_agent(controller, admin, "edge-01")
        listed = admin.get("/agents").json()
        assert [(a["agent_id"], a["state"], a["hostname"]) for a in listed] == [
            ("edge-01", "offline", "edge-01-host"),
        ]  # fmt: skip
        assert admin.get("/agents/edge-01").json()["revoked"] is False
        missing = admin.get("/agents/ghost")
        assert missing.status_code == 404 and missing.json()["detail"] == "no agent 'ghost'"
        assert admin.post("/agents/ghost/revoke").status_code == 404

        revoked = admin.post("/agents/edge-01/revoke")
        assert revoked.status_code == 200
        assert (revoked.json()["revoked"], revoked.json()["state"]) == (True, "revoked")
        assert controller.revoked == ["edge-01"]
        assert controller.registry.identity("edge-01") is None


# --- cameras -----------------------------------------------------------------------------------


def test_camera_crud_never_shows_camera_passwords(controller: Controller) -> None:
    url = f"rtsp://admin:{CAMERA_PASSWORD}@10.0.0.5:554/Streaming/Channels/101"
    sub = f"rtsp://10.0.0.5/cam/realmonitor?channel=1&user=admin&password={CAMERA_PASSWORD}"
    with controller.admin() as admin:
        enroll_agent(controller, admin, "edge-01")
        before = len(controller.changes)
        created = admin.post(
            "/cameras",
            json={"name": "cam1", "main_url": url, "sub_url": sub, "profile": "hikvision",
                  "detect_fps": 4, "site": "hall"},
        )  # fmt: skip
        assert created.status_code == 201, created.text
        cam = created.json()
        assert cam["main_url"] == "rtsp://admin:***@10.0.0.5:554/Streaming/Channels/101"
        assert cam["sub_url"] == "rtsp://10.0.0.5/cam/realmonitor?channel=1&user=admin&password=***"
        assert (cam["placement"], cam["target"], cam["owner"], cam["inspection"]) == (
            "auto", None, None, True,
        )  # fmt: skip
        assert len(controller.changes) == before + 1
        stored = controller.registry.camera("cam1")
        assert stored is not None and stored.main_url == url  # the agent gets the real URL

        rois = [{"id": "door", "polygon": [[0, 0], [0.5, 0], [0.5, 0.5]], "sensitivity": 0.7}]
        patched = admin.patch(
            "/cameras/cam1",
            json={"inspection": False, "rois": rois, "placement": "edge-01", "detect_fps": 2},
        )
        assert patched.status_code == 200, patched.text
        assert (patched.json()["inspection"], patched.json()["placement"]) == (False, "edge-01")
        assert patched.json()["rois"] == rois and patched.json()["detect_fps"] == 2
        assert patched.json()["profile"] == "hikvision"  # fields not given are kept

        shown = [admin.get("/cameras"), admin.get("/cameras/cam1"), admin.get("/fleet/health")]
        for answer in (created, patched, *shown):
            assert CAMERA_PASSWORD not in answer.text
        assert [c["name"] for c in shown[0].json()] == ["cam1"]

        duplicate = admin.post("/cameras", json={"name": "cam1", "main_url": "rtsp://10.0.0.9/"})
        assert duplicate.status_code == 409 and duplicate.json()["detail"] == "camera 'cam1' exists"
        same_stream = admin.post(
            "/cameras",
            json={"name": "cam2", "main_url": "rtsp://other:pw@10.0.0.5/Streaming/Channels/101"},
        )
        assert same_stream.status_code == 409
        assert same_stream.json()["detail"] == "camera 'cam1' already reads that main stream"

        bad_url = admin.post(
            "/cameras", json={"name": "cam2", "main_url": f"http://admin:{CAMERA_PASSWORD}@h/"}
        )
        assert bad_url.status_code == 422 and CAMERA_PASSWORD not in bad_url.text
        assert "body.main_url" in bad_url.json()["detail"]
        nowhere = admin.post(
            "/cameras",
            json={"name": "cam2", "main_url": "rtsp://10.0.0.6/", "placement": "edge-09"},
        )
        assert nowhere.status_code == 422
        assert nowhere.json()["detail"] == "placement: no enrolled agent 'edge-09'"
        for change in ({"main_url": "rtsp://10.0.0.7/"}, {"detect_fps": 0}, {"inspection": None}):
            assert admin.patch("/cameras/cam1", json=change).status_code == 422, change
        missing = admin.patch("/cameras/ghost", json={"inspection": True})
        assert missing.status_code == 404 and missing.json()["detail"] == "no camera 'ghost'"

        assert admin.delete("/cameras/cam1").status_code == 204
        assert admin.get("/cameras/cam1").status_code == 404
        assert admin.delete("/cameras/cam1").status_code == 404


# --- fleet -------------------------------------------------------------------------------------


def test_fleet_health_shows_an_agent_stale_when_its_heartbeats_stop(
    controller: Controller,
) -> None:
    reg = controller.registry
    with controller.admin() as admin:
        enroll_agent(controller, admin, "edge-01")
        reg.add_camera(CameraRecord(name="cam1", main_url="rtsp://10.0.0.5/a", owner="edge-01",
                                    target="edge-01"))  # fmt: skip
        reg.add_camera(CameraRecord(name="cam2", main_url="rtsp://10.0.0.6/a"))
        status = AgentStatus(agent_id="edge-01", state="online", session=1,
                             software_version="0.1.0", ts=now_us())  # fmt: skip
        reg.apply_status("edge-01", status, now_us())
        report = CameraReport(name="cam1", state="streaming", inspection=True)
        reg.apply_reported("edge-01", ReportedState(ts=now_us(), desired_version=1,
                                                    cameras=[report]), now_us())  # fmt: skip
        # 0.2 s interval: stale 0.6 s after this single heartbeat.
        reg.apply_heartbeat("edge-01", Heartbeat(
            ts=now_us(), interval_s=0.2, cameras=[], disk_used_bytes=0, disk_free_bytes=1,
            clock_synced=True, capacity=Capacity(max_cameras=16, load=0.0),
        ), now_us())  # fmt: skip

        health = admin.get("/fleet/health").json()
        (agent,) = health["agents"]
        assert (agent["agent_id"], agent["state"], agent["cameras"]) == ("edge-01", "online", 1)
        assert agent["heartbeat_interval_s"] == 0.2 and agent["applied_version"] == 1
        cams = {c["name"]: c for c in health["cameras"]}
        assert cams["cam1"] == {"name": "cam1", "owner": "edge-01", "target": "edge-01",
                                "state": "streaming", "reason": None, "inspection": True,
                                "site": None}  # fmt: skip
        assert (cams["cam2"]["owner"], cams["cam2"]["state"]) == (None, "unknown")
        assert 'camfleet_agents{state="online"} 1.0' in admin.get("/metrics").text

        def stale() -> dict[str, object] | None:
            health = admin.get("/fleet/health").json()
            return health if health["agents"][0]["state"] == "stale" else None

        health = wait_for(stale, 5, what="the agent to go stale without heartbeats")
        cams = {c["name"]: c for c in health["cameras"]}
        assert cams["cam1"]["state"] == "unknown"  # nothing current from its owner
        assert health["agent_states"] == {"online": 0, "stale": 1, "offline": 0, "revoked": 0}
        metrics = admin.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        expected = {
            'camfleet_agents{state="stale"} 1.0',
            'camfleet_cameras{state="unknown"} 2.0',
            "camfleet_cameras_unassigned 1.0",
            "camfleet_enrollments_total 1.0",
        }
        assert expected <= set(metrics.text.splitlines())

        will = status.model_copy(update={"state": "offline"})
        reg.apply_status("edge-01", will, now_us())
        assert admin.get("/fleet/health").json()["agents"][0]["state"] == "offline"


def test_discovered_cameras_are_listed_redacted_with_the_camera_using_them(
    controller: Controller,
) -> None:
    reg = controller.registry
    with controller.admin() as admin:
        enroll_agent(controller, admin, "edge-01")
        reg.add_camera(CameraRecord(name="cam1", main_url="rtsp://10.0.0.5/101"))
        found = [
            FoundCamera(endpoint="urn:uuid:a", address="10.0.0.5", manufacturer="HIKVISION",
                        main_url=f"rtsp://admin:{CAMERA_PASSWORD}@10.0.0.5/101"),
            FoundCamera(endpoint="urn:uuid:b", address="10.0.0.6"),
        ]  # fmt: skip
        reg.apply_discovery("edge-01", DiscoveryReport(ts=now_us(), cameras=found), now_us())
        answer = admin.get("/discovered")
        assert answer.status_code == 200 and CAMERA_PASSWORD not in answer.text
        rows = answer.json()
        assert [(r["agent_id"], r["endpoint"], r["camera"]) for r in rows] == [
            ("edge-01", "urn:uuid:a", "cam1"), ("edge-01", "urn:uuid:b", None),
        ]  # fmt: skip
        assert rows[0]["main_url"] == "rtsp://admin:***@10.0.0.5/101"


def test_the_openapi_schema_loads_and_describes_the_contract(controller: Controller) -> None:
    schema = httpx.get(controller.url + "/openapi.json", timeout=10).raise_for_status().json()
    paths = schema["paths"]
    for path in ("/api/v1/health", "/api/v1/login", "/api/v1/logout", ENROLL_PATH,
                 "/api/v1/tokens", "/api/v1/agents", "/api/v1/agents/{agent_id}/revoke",
                 "/api/v1/cameras", "/api/v1/cameras/{name}", "/api/v1/fleet/health",
                 "/api/v1/discovered", "/api/v1/metrics"):  # fmt: skip
        assert path in paths, path
    assert set(paths["/api/v1/cameras/{name}"]) == {"get", "patch", "delete"}
    components = schema["components"]["schemas"]
    assert {"EnrollRequest", "EnrollResponse", "CameraSettings", "FleetHealth"} <= set(components)
    assert {"HTTPBearer", "APIKeyCookie"} <= set(schema["components"]["securitySchemes"])


# --- app construction (TestClient) -------------------------------------------------------------


def test_extra_routers_sit_behind_the_login_and_app_state_is_set(tmp_path: Path) -> None:
    extra = APIRouter(prefix="/api/v1")

    @extra.get("/events")
    def events(request: Request) -> dict[str, object]:
        return {"store": request.app.state.event_store, "user": request.state.user}

    with Registry.open(tmp_path) as reg:
        set_admin_password(reg, "admin", PASSWORD)
        app = create_app(context(reg, routers=[extra], app_state={"event_store": "here"}))
        assert app.state.event_store == "here"
        with TestClient(app) as client:
            assert client.get("/api/v1/events").status_code == 401
            client.post("/api/v1/login", json={"username": "admin", "password": PASSWORD})
            assert client.get("/api/v1/events").json() == {"store": "here", "user": "admin"}
        with pytest.raises(ValueError, match="app_state must not set ctx"):
            create_app(context(reg, app_state={"ctx": 1}))


def test_bad_enrollment_settings_are_refused_at_startup(tmp_path: Path) -> None:
    with Registry.open(tmp_path) as reg:
        with pytest.raises(ValueError, match=r"API settings: .*scheme"):
            ApiContext(registry=reg, broker_host="b", broker_port=1883, controller_url="ftp://x")
        with pytest.raises(ValueError, match="API settings: port"):
            ApiContext(registry=reg, broker_host="b", broker_port=0, controller_url="http://c")
