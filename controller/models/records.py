"""The model records in the registry's database (table `models`, and each camera's `model`),
as plain functions over it; the registry's lock and transactions are the caller's."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final

from sqlite_utils import Database

from fleet.messages import ModelRef

_COLUMNS: Final = {"sha256": str, "model_version": str, "camera": str, "size": int,
                   "created_us": int, "signature": bytes}  # fmt: skip


@dataclass(frozen=True)
class ModelRecord:
    sha256: str  # of the whole artifact file: its identity
    model_version: str
    camera: str  # the camera it was trained for, from its manifest
    size: int
    created_us: int  # when it was uploaded
    signature: bytes  # Ed25519, of fleet.messages.model_signed_bytes(sha256)


def create_tables(db: Database) -> None:
    """Idempotent, like the registry's own schema: the models, and which one each camera uses."""
    db.table("models").create(_COLUMNS, pk="sha256", not_null=set(_COLUMNS), if_not_exists=True)
    if "model" not in db.table("cameras").columns_dict:
        db.table("cameras").add_column("model", str)


def add_model(db: Database, rec: ModelRecord) -> tuple[ModelRecord, bool]:
    """The model as stored, and whether it is new: one with the same sha256 is the same bytes,
    so it stays as it was (first upload time, first signature)."""
    existing = one_model(db, rec.sha256)
    if existing is not None:
        return existing, False
    db.table("models").insert(asdict(rec))
    return rec, True


def _record(row: dict[str, Any]) -> ModelRecord:
    return ModelRecord(**{key: row[key] for key in _COLUMNS})


def one_model(db: Database, sha256: str) -> ModelRecord | None:
    rows = list(db.query("SELECT * FROM models WHERE sha256 = ?", [sha256]))
    return _record(rows[0]) if rows else None


def all_models(db: Database) -> list[ModelRecord]:
    """Newest first."""
    return [_record(row) for row in db.query("SELECT * FROM models ORDER BY created_us DESC")]


def model_ref(db: Database, sha256: str, models_url: str) -> ModelRef | None:
    """How an agent fetches and checks the model: from `models_url`/sha256."""
    rec = one_model(db, sha256)
    if rec is None:
        return None
    return ModelRef(model_version=rec.model_version, sha256=rec.sha256, size=rec.size,
                    url=f"{models_url}/{rec.sha256}", signature=rec.signature)  # fmt: skip


def assigned_to_agent(db: Database, sha256: str, agent_id: str) -> bool:
    """Whether a camera the agent owns, or is to take over, uses the model."""
    sql = "SELECT 1 FROM cameras WHERE model = ? AND (owner = ? OR target = ?) LIMIT 1"
    return db.execute(sql, [sha256, agent_id, agent_id]).fetchone() is not None
