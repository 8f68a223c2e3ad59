"""Desired state per agent, with a version that changes exactly when the content does.

The content is compared as canonical JSON (its sha256 is kept, not the JSON: it holds camera
credentials), so rebuilding and republishing an unchanged state keeps its version and the agent
has nothing to do.
"""

from __future__ import annotations

import hashlib
import json

from sqlite_utils import Database

from controller.models.records import model_ref
from controller.registry.agents import one_agent
from controller.registry.cameras import all_cameras
from controller.registry.errors import UnknownAgent
from controller.registry.records import CameraRecord
from fleet.messages import CameraSpec, DesiredState


def canonical_digest(state: DesiredState) -> str:
    content = state.model_dump(mode="json", exclude={"version"})
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _spec(db: Database, cam: CameraRecord, models_url: str | None) -> CameraSpec:
    spec = cam.spec()
    # Without an API to serve them (a registry used on its own) models cannot be fetched.
    if cam.model is None or models_url is None:
        return spec
    return spec.model_copy(update={"model": model_ref(db, cam.model, models_url)})


def desired_state(db: Database, agent_id: str, models_url: str | None = None) -> DesiredState:
    """The cameras `agent_id` runs now: it owns them and is still their target (an owner whose
    camera is moving elsewhere is told to let go first), each with the model it uses, fetched
    from `models_url`/sha256. Call inside a transaction (it may bump the version)."""
    if one_agent(db, agent_id) is None:
        raise UnknownAgent(agent_id)
    cameras = all_cameras(db, owner=agent_id)
    runs = [_spec(db, c, models_url) for c in cameras if c.target == agent_id]
    state = DesiredState(version=0, cameras=runs)
    digest = canonical_digest(state)
    row = db.execute(
        "SELECT version, content_sha256 FROM desired WHERE agent_id = ?", [agent_id]
    ).fetchone()
    if row is not None and row[1] == digest:
        version = row[0]
    else:
        version = (row[0] if row else 0) + 1
        db.table("desired").upsert(
            {"agent_id": agent_id, "version": version, "content_sha256": digest}, pk="agent_id"
        )
    return state.model_copy(update={"version": version})
