"""Managed cameras. Each main stream may be registered once: two entries for one stream would
make two agents (or one agent twice) connect to it, which real cameras punish."""

from __future__ import annotations

import json
from typing import Any, Final
from urllib.parse import urlsplit

from pydantic import ValidationError
from sqlite_utils import Database

from controller.models.records import one_model
from controller.registry.agents import is_live
from controller.registry.errors import CameraExists, InvalidCamera, UnknownCamera
from controller.registry.records import AUTO, CameraRecord
from fleet.messages import format_validation_error

DEFAULT_PORTS: Final = {"rtsp": 554, "rtsps": 322}
_FIELDS: Final = frozenset(CameraRecord.model_fields)


def stream_key(url: str) -> str:
    """What identifies the stream a URL reads, whatever credentials or spelling it has."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{host}:{port}{parts.path or '/'}{query}"


def _columns(rec: CameraRecord) -> dict[str, Any]:
    return {
        "main_url": rec.main_url,
        "main_key": stream_key(rec.main_url),
        "sub_url": rec.sub_url,
        "profile": rec.profile,
        "detect_fps": rec.detect_fps,
        "inspection": int(rec.inspection),
        "rois": json.dumps([roi.model_dump(mode="json") for roi in rec.rois]),
        "placement": rec.placement,
        "target": rec.target,
        "owner": rec.owner,
        "site": rec.site,
        "model": rec.model,
    }


def _record(row: dict[str, Any]) -> CameraRecord:
    fields = {key: row[key] for key in _FIELDS}
    fields["inspection"] = bool(row["inspection"])
    fields["rois"] = json.loads(row["rois"])
    return CameraRecord.model_validate(fields)


def all_cameras(db: Database, owner: str | None = None) -> list[CameraRecord]:
    """Every camera, or those whose owner is `owner`, by name."""
    if owner is None:
        return [_record(row) for row in db.query("SELECT * FROM cameras ORDER BY name")]
    sql = "SELECT * FROM cameras WHERE owner = ? ORDER BY name"
    return [_record(row) for row in db.query(sql, [owner])]


def one_camera(db: Database, name: str) -> CameraRecord | None:
    rows = list(db.query("SELECT * FROM cameras WHERE name = ?", [name]))
    return _record(rows[0]) if rows else None


def camera_reading(db: Database, url: str) -> str | None:
    """The name of the camera that reads the stream `url` points to, if any."""
    row = db.execute("SELECT name FROM cameras WHERE main_key = ?", [stream_key(url)]).fetchone()
    return row[0] if row else None


def _check(db: Database, rec: CameraRecord, before: CameraRecord | None) -> None:
    # A placement already stored stays acceptable after its agent is revoked (the camera then
    # waits unassigned); only a new placement must name a live agent.
    placed = before is None or before.placement != rec.placement
    if placed and rec.placement != AUTO and not is_live(db, rec.placement):
        raise InvalidCamera(f"placement: no enrolled agent {rec.placement!r}")
    other = camera_reading(db, rec.main_url)
    if other is not None and other != rec.name:
        raise CameraExists(f"camera {other!r} already reads that main stream")
    if rec.model is not None and (before is None or before.model != rec.model):
        model = one_model(db, rec.model)
        if model is None:
            raise InvalidCamera(f"model: no model {rec.model} in the store")
        if model.camera != rec.name:
            raise InvalidCamera(f"model: {model.model_version} was trained for camera "
                                f"{model.camera!r}, not {rec.name!r}")  # fmt: skip


def add_camera(db: Database, rec: CameraRecord, now_us: int) -> CameraRecord:
    if one_camera(db, rec.name) is not None:
        raise CameraExists(f"camera {rec.name!r} exists")
    _check(db, rec, None)
    db.table("cameras").insert({"name": rec.name, **_columns(rec), "created_us": now_us})
    return rec


def update_camera(db: Database, name: str, changes: dict[str, Any]) -> CameraRecord:
    current = one_camera(db, name)
    if current is None:
        raise UnknownCamera(name)
    if "name" in changes:
        raise InvalidCamera("a camera cannot be renamed: remove it and add it again")
    unknown = sorted(set(changes) - _FIELDS)
    if unknown:
        raise InvalidCamera(f"unknown camera field {unknown[0]!r}")
    try:
        updated = CameraRecord.model_validate({**current.model_dump(), **changes})
    except ValidationError as exc:
        raise InvalidCamera("; ".join(format_validation_error(exc))) from None
    _check(db, updated, current)
    db.table("cameras").update(name, _columns(updated))
    return updated


def remove_camera(db: Database, name: str) -> None:
    if not db.execute("DELETE FROM cameras WHERE name = ?", [name]).rowcount:
        raise UnknownCamera(name)
