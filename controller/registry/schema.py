"""The registry's tables, created idempotently (opening an existing database changes nothing).

Messages (status, heartbeat, reported state, found cameras) are kept as their wire JSON, so
what is stored is exactly what was validated.
"""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

_TABLES: dict[str, tuple[dict[str, Any], str | tuple[str, ...], set[str]]] = {
    # name: (columns, primary key, not-null columns)
    "tokens": (
        {"token_hash": str, "name": str, "created_us": int, "expires_us": int,
         "used_us": int, "agent_id": str},
        "token_hash",
        {"name", "created_us", "expires_us"},
    ),
    "agents": (
        {"agent_id": str, "name": str, "hostname": str, "software_version": str,
         "subnets": str, "max_cameras": int, "enrolled_us": int, "revoked": int,
         "revoked_us": int, "password_hash": str, "status": str, "status_us": int,
         "heartbeat": str, "heartbeat_us": int, "reported": str, "reported_us": int},
        "agent_id",
        {"name", "hostname", "subnets", "max_cameras", "enrolled_us", "revoked",
         "password_hash"},
    ),
    # The last desired state built per agent: its version and a digest of its content.
    "desired": (
        {"agent_id": str, "version": int, "content_sha256": str},
        "agent_id",
        {"version", "content_sha256"},
    ),
    "discovered": (
        {"agent_id": str, "endpoint": str, "camera": str, "seen_us": int},
        ("agent_id", "endpoint"),
        {"camera", "seen_us"},
    ),
    "cameras": (
        {"name": str, "main_url": str, "main_key": str, "sub_url": str, "profile": str,
         "detect_fps": float, "inspection": int, "rois": str, "placement": str,
         "target": str, "owner": str, "site": str, "created_us": int},
        "name",
        {"main_url", "main_key", "profile", "detect_fps", "inspection", "rois", "placement",
         "created_us"},
    ),
    "settings": ({"key": str, "value": str}, "key", {"value"}),
}  # fmt: skip


def create_schema(db: Database) -> None:
    for name, (columns, pk, not_null) in _TABLES.items():
        db.table(name).create(columns, pk=pk, not_null=not_null, if_not_exists=True)
    # One connection per camera stream: two entries for one stream would open two.
    db.table("cameras").create_index(["main_key"], unique=True, if_not_exists=True)
    db.table("cameras").create_index(["owner"], if_not_exists=True)
    db.table("tokens").create_index(["name"], if_not_exists=True)
