"""A typed HTTP client for the controller's API: what the admin CLI (and scripts) use."""

from __future__ import annotations

from typing import Any, Self

import httpx


class ClientError(RuntimeError):
    """The controller refused or could not be reached; the text is meant for a person."""


class ControllerClient:
    def __init__(self, url: str, password: str, user: str = "admin", timeout: float = 30) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=f"{self.url}/api/v1", timeout=timeout)
        token = self._call("POST", "/login", json={"username": user, "password": password})
        self._http.headers["Authorization"] = f"Bearer {token['token']}"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach the controller at {self.url}: {exc}") from None
        if response.is_success:
            return response.json() if response.content else None
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise ClientError(f"{method} {path}: {response.status_code}: {detail}")

    def create_token(self, name: str, ttl_s: float) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/tokens", json={"name": name, "ttl_s": ttl_s})
        return result

    def agents(self) -> list[dict[str, Any]]:
        health: dict[str, Any] = self._call("GET", "/fleet/health")
        agents: list[dict[str, Any]] = health["agents"]
        return agents

    def revoke(self, agent_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/agents/{agent_id}/revoke")
        return result

    def cameras(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/cameras")
        return result

    def fleet_health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/fleet/health")
        return result

    def add_camera(self, spec: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/cameras", json=spec)
        return result

    def update_camera(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("PATCH", f"/cameras/{name}", json=changes)
        return result

    def remove_camera(self, name: str) -> None:
        self._call("DELETE", f"/cameras/{name}")

    def discovered(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/discovered")
        return result

    def discover(self, agent_id: str | None, timeout_s: float = 3.0) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"timeout_s": timeout_s}
        if agent_id is not None:
            body["agent_id"] = agent_id
        result: list[dict[str, Any]] = self._call("POST", "/discover", json=body)
        return result

    def upload_model(self, content: bytes) -> dict[str, Any]:
        """Store a model artifact (the same bytes again give the same model)."""
        headers = {"Content-Type": "application/octet-stream"}
        result: dict[str, Any] = self._call("POST", "/models", content=content, headers=headers)
        return result

    def models(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/models")
        return result

    def events(self, **filters: Any) -> dict[str, Any]:
        params = {k: v for k, v in filters.items() if v is not None}
        result: dict[str, Any] = self._call("GET", "/events", params=params)
        return result
