"""Enrolled agents: their records, revocation, broker identities and what they last reported.

Presence messages from unknown or revoked agents are ignored (the broker should have refused
them; a retained message from before a revocation can still arrive).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from sqlite_utils import Database

from controller.broker.identities import BrokerIdentity
from controller.registry.errors import UnknownAgent
from controller.registry.records import AgentRecord
from fleet.messages import (
    AgentStatus,
    BaseMessage,
    DiscoveryReport,
    FoundCamera,
    Heartbeat,
    ReportedState,
    encode_message,
    parse_message,
)

_SELECT = """
SELECT a.*, COALESCE(d.version, 0) AS desired_version
FROM agents AS a LEFT JOIN desired AS d ON d.agent_id = a.agent_id
"""


def _record(row: dict[str, Any]) -> AgentRecord:
    return AgentRecord(
        agent_id=row["agent_id"],
        name=row["name"],
        hostname=row["hostname"],
        enrolled_us=row["enrolled_us"],
        revoked=bool(row["revoked"]),
        subnets=json.loads(row["subnets"]),
        max_cameras=row["max_cameras"],
        status=parse_message(row["status"], AgentStatus) if row["status"] else None,
        status_us=row["status_us"],
        heartbeat=parse_message(row["heartbeat"], Heartbeat) if row["heartbeat"] else None,
        heartbeat_us=row["heartbeat_us"],
        reported=parse_message(row["reported"], ReportedState) if row["reported"] else None,
        desired_version=row["desired_version"],
        software_version=row["software_version"] or "",
    )


def all_agents(db: Database) -> list[AgentRecord]:
    return [_record(row) for row in db.query(_SELECT + " ORDER BY a.agent_id")]


def one_agent(db: Database, agent_id: str) -> AgentRecord | None:
    rows = list(db.query(_SELECT + " WHERE a.agent_id = ?", [agent_id]))
    return _record(rows[0]) if rows else None


def is_live(db: Database, agent_id: str) -> bool:
    """Enrolled and not revoked."""
    sql = "SELECT 1 FROM agents WHERE agent_id = ? AND revoked = 0"
    return db.execute(sql, [agent_id]).fetchone() is not None


def revoke(db: Database, agent_id: str, now_us: int) -> AgentRecord:
    """Revoke (idempotent); its cameras lose owner and target, so assignment moves them."""
    if one_agent(db, agent_id) is None:
        raise UnknownAgent(agent_id)
    db.execute(
        "UPDATE agents SET revoked = 1, revoked_us = COALESCE(revoked_us, ?) WHERE agent_id = ?",
        [now_us, agent_id],
    )
    db.execute("UPDATE cameras SET owner = NULL WHERE owner = ?", [agent_id])
    db.execute("UPDATE cameras SET target = NULL WHERE target = ?", [agent_id])
    db.execute("DELETE FROM discovered WHERE agent_id = ?", [agent_id])
    record = one_agent(db, agent_id)
    assert record is not None
    return record


def identities(db: Database, agent_id: str | None = None) -> list[BrokerIdentity]:
    """Broker identities of live agents (of one agent if `agent_id` is given)."""
    sql = "SELECT agent_id, password_hash FROM agents WHERE revoked = 0"
    params: list[str] = []
    if agent_id is not None:
        sql += " AND agent_id = ?"
        params.append(agent_id)
    return [
        BrokerIdentity(username=username, password_hash=password_hash, role="agent")
        for username, password_hash in db.execute(sql + " ORDER BY agent_id", params)
    ]


# --- presence ----------------------------------------------------------------------------------


def apply_status(db: Database, agent_id: str, status: AgentStatus, now_us: int) -> bool:
    """Store `status` if it supersedes the current one (a late will of an older session
    does not); False if it was ignored."""
    if status.agent_id != agent_id:
        return False
    row = db.execute(
        "SELECT status FROM agents WHERE agent_id = ? AND revoked = 0", [agent_id]
    ).fetchone()
    if row is None:
        return False
    current = parse_message(row[0], AgentStatus) if row[0] else None
    if not status.supersedes(current):
        return False
    return _store(db, agent_id, "status", status, now_us)


def _store(
    db: Database,
    agent_id: str,
    column: Literal["status", "heartbeat", "reported"],
    msg: BaseMessage,
    now_us: int,
) -> bool:
    cursor = db.execute(
        f"UPDATE agents SET {column} = ?, {column}_us = ? WHERE agent_id = ? AND revoked = 0",
        [encode_message(msg).decode("utf-8"), now_us, agent_id],
    )
    return bool(cursor.rowcount)


def apply_heartbeat(db: Database, agent_id: str, hb: Heartbeat, now_us: int) -> None:
    _store(db, agent_id, "heartbeat", hb, now_us)


def apply_reported(db: Database, agent_id: str, rs: ReportedState, now_us: int) -> None:
    _store(db, agent_id, "reported", rs, now_us)


def apply_discovery(db: Database, agent_id: str, report: DiscoveryReport, now_us: int) -> None:
    """Each report replaces the agent's previous one (it is the result of a whole probe)."""
    if not is_live(db, agent_id):
        return
    db.execute("DELETE FROM discovered WHERE agent_id = ?", [agent_id])
    db.table("discovered").upsert_all(
        [
            {"agent_id": agent_id, "endpoint": found.endpoint,
             "camera": found.model_dump_json(), "seen_us": now_us}
            for found in report.cameras
        ],
        pk=("agent_id", "endpoint"),
    )  # fmt: skip


def discovered(db: Database) -> list[tuple[str, FoundCamera, int]]:
    rows = db.execute(
        "SELECT d.agent_id, d.camera, d.seen_us FROM discovered AS d"
        " JOIN agents AS a ON a.agent_id = d.agent_id AND a.revoked = 0"
        " ORDER BY d.agent_id, d.endpoint"
    )
    return [
        (agent_id, FoundCamera.model_validate_json(camera), seen_us)
        for agent_id, camera, seen_us in rows
    ]
