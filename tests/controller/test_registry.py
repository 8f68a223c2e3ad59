"""The registry against a real SQLite file: tokens, enrollment, presence, cameras, desired
state, broker identities and the controller's secret files."""

from __future__ import annotations

import secrets
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from controller.broker.identities import CONTROLLER_USERNAME
from controller.broker.passwd import verify_password
from controller.registry import (
    AgentRecord,
    CameraExists,
    CameraRecord,
    Enrolled,
    EnrollmentRefused,
    InvalidCamera,
    Registry,
    RegistryError,
    UnknownAgent,
    UnknownCamera,
    effective_state,
)
from controller.registry.registry import DB_FILE
from controller.registry.secret_files import SECRETS_FILE, SIGNING_KEY_FILE
from fleet.enrollment import EnrollRequest
from fleet.messages import (
    AgentStatus,
    CameraReport,
    Capacity,
    DiscoveryReport,
    FoundCamera,
    Heartbeat,
    ReportedState,
    RoiSpec,
)

T0 = 1_790_000_000_000_000  # a fixed "now", in µs
S = 1_000_000


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry.open(tmp_path) as reg:
        yield reg


def request(token: str, **fields: object) -> EnrollRequest:
    defaults: dict[str, object] = {"hostname": "edge-host", "software_version": "0.1.0"}
    return EnrollRequest.model_validate({"token": SecretStr(token), **defaults, **fields})


def enroll(reg: Registry, name: str, now_us: int = T0) -> Enrolled:
    return reg.enroll(request(reg.create_token(name, 60, now_us)), now_us)


def status(agent_id: str, state: str, session: int) -> AgentStatus:
    return AgentStatus.model_validate(
        {"agent_id": agent_id, "state": state, "session": session, "software_version": "0.1.0",
         "ts": T0}
    )  # fmt: skip


def heartbeat(interval_s: float = 10.0) -> Heartbeat:
    return Heartbeat(
        ts=T0, interval_s=interval_s, cameras=[], disk_used_bytes=0, disk_free_bytes=1,
        clock_synced=True, capacity=Capacity(max_cameras=16, load=0.1),
    )  # fmt: skip


def camera(name: str, url: str, **fields: object) -> CameraRecord:
    return CameraRecord.model_validate({"name": name, "main_url": url, **fields})


def refusal(reg: Registry, req: EnrollRequest, now_us: int = T0) -> str:
    with pytest.raises(EnrollmentRefused) as info:
        reg.enroll(req, now_us)
    return info.value.reason


# --- tokens and enrollment ---------------------------------------------------------------------


def test_a_token_enrolls_once_and_a_replay_is_refused(registry: Registry) -> None:
    token = registry.create_token("edge-01", ttl_s=60, now_us=T0)
    req = request(token, subnets=["10.1.0.0/24"], max_cameras=8, hostname="cabinet-3")
    enrolled = registry.enroll(req, T0 + S)
    assert (enrolled.agent_id, enrolled.name) == ("edge-01", "edge-01")
    assert enrolled.broker_password not in repr(enrolled)

    agent = registry.agent("edge-01")
    assert agent is not None
    assert (agent.hostname, agent.subnets, agent.max_cameras) == ("cabinet-3", ["10.1.0.0/24"], 8)
    assert (agent.enrolled_us, agent.revoked, agent.status, agent.desired_version) == (
        T0 + S, False, None, 0,
    )  # fmt: skip
    identity = registry.identity("edge-01")
    assert identity is not None and identity.role == "agent"
    assert identity.password_hash.startswith("$7$")  # only the hash is stored
    assert verify_password(enrolled.broker_password, identity.password_hash)

    assert refusal(registry, req, T0 + 2 * S) == "enrollment token already used"
    assert registry.enrollment_counts(T0).enrolled == 1


def test_unknown_and_expired_tokens_are_refused(registry: Registry) -> None:
    assert refusal(registry, request(secrets.token_urlsafe(32))) == "unknown enrollment token"
    token = registry.create_token("edge-01", ttl_s=1, now_us=T0)
    assert refusal(registry, request(token), T0 + S) == "enrollment token expired"
    counts = registry.enrollment_counts(T0 + S)
    assert (counts.enrolled, counts.pending, counts.expired) == (0, 0, 1)
    # Still valid a moment before expiry, and the refusal above did not use it up.
    assert registry.enroll(request(token), T0 + S - 1).agent_id == "edge-01"


def test_token_names_must_be_valid_free_and_not_reserved(registry: Registry) -> None:
    enroll(registry, "edge-01")
    with pytest.raises(RegistryError, match=r"^agent name edge-01 is in use$"):
        registry.create_token("edge-01", 60)
    for name in ("bad name", "-dash", "x" * 65):
        with pytest.raises(RegistryError, match="is invalid"):
            registry.create_token(name, 60)
    for name in (CONTROLLER_USERNAME, "auto"):
        with pytest.raises(RegistryError, match="reserved"):
            registry.create_token(name, 60)
    with pytest.raises(RegistryError, match="positive"):
        registry.create_token("edge-02", 0)


def test_a_second_token_for_a_name_enrolled_meanwhile_is_refused(registry: Registry) -> None:
    first = registry.create_token("edge-01", 60, T0)
    second = registry.create_token("edge-01", 60, T0)
    registry.enroll(request(first), T0)
    assert refusal(registry, request(second)) == "agent name edge-01 is in use"
    assert registry.enrollment_counts(T0).pending == 1  # the refusal left it unused


def test_concurrent_enrolls_of_one_token_have_exactly_one_winner(registry: Registry) -> None:
    token = registry.create_token("edge-01", 60)
    n = 16
    start = threading.Barrier(n)
    wins: list[Enrolled] = []
    reasons: list[str] = []

    def attempt() -> None:
        start.wait()
        try:
            wins.append(registry.enroll(request(token)))
        except EnrollmentRefused as exc:
            reasons.append(exc.reason)

    threads = [threading.Thread(target=attempt) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(wins) == 1
    assert reasons == ["enrollment token already used"] * (n - 1)
    identity = registry.identity("edge-01")
    assert identity is not None and verify_password(wins[0].broker_password, identity.password_hash)


def test_re_enrolling_a_revoked_name_makes_a_fresh_agent(registry: Registry) -> None:
    old = enroll(registry, "edge-01")
    registry.apply_status("edge-01", status("edge-01", "online", 5), T0)
    registry.add_camera(camera("cam1", "rtsp://10.0.0.5/s", target="edge-01", owner="edge-01"))
    assert registry.desired_state("edge-01").version == 1
    registry.revoke("edge-01")
    assert registry.identity("edge-01") is None

    new = enroll(registry, "edge-01", T0 + S)
    assert new.broker_password != old.broker_password
    identity = registry.identity("edge-01")
    assert identity is not None
    assert verify_password(new.broker_password, identity.password_hash)
    assert not verify_password(old.broker_password, identity.password_hash)
    agent = registry.agent("edge-01")
    assert agent is not None
    assert (agent.revoked, agent.status, agent.enrolled_us) == (False, None, T0 + S)
    # Its desired-state version keeps increasing across the re-enrollment.
    assert registry.desired_state("edge-01").version == 2


# --- presence ----------------------------------------------------------------------------------


def test_status_applies_only_when_it_supersedes(registry: Registry) -> None:
    enroll(registry, "edge-01")

    def state() -> tuple[str, int] | None:
        agent = registry.agent("edge-01")
        assert agent is not None
        return (agent.status.state, agent.status.session) if agent.status else None

    assert registry.apply_status("edge-01", status("edge-01", "online", 2), T0)
    # The will of an earlier connection, delivered late, changes nothing.
    assert not registry.apply_status("edge-01", status("edge-01", "offline", 1), T0 + 1)
    assert not registry.apply_status("edge-01", status("edge-01", "online", 1), T0 + 2)
    assert state() == ("online", 2)
    assert registry.apply_status("edge-01", status("edge-01", "offline", 2), T0 + 3)
    assert state() == ("offline", 2)
    assert not registry.apply_status("edge-01", status("edge-01", "online", 2), T0 + 4)
    assert registry.apply_status("edge-01", status("edge-01", "online", 3), T0 + 5)
    assert state() == ("online", 3)
    agent = registry.agent("edge-01")
    assert agent is not None and agent.status_us == T0 + 5


def test_presence_from_unknown_revoked_or_mismatched_agents_is_ignored(
    registry: Registry,
) -> None:
    enroll(registry, "edge-01")
    enroll(registry, "edge-02")
    assert not registry.apply_status("edge-01", status("edge-02", "online", 1), T0)
    assert not registry.apply_status("ghost", status("ghost", "online", 1), T0)
    registry.revoke("edge-02")
    assert not registry.apply_status("edge-02", status("edge-02", "online", 9), T0)
    registry.apply_heartbeat("edge-02", heartbeat(), T0)
    found = FoundCamera(endpoint="urn:uuid:1", address="10.0.0.9")
    registry.apply_discovery("edge-02", DiscoveryReport(ts=T0, cameras=[found]), T0)
    registry.apply_heartbeat("ghost", heartbeat(), T0)
    agent = registry.agent("edge-02")
    assert agent is not None and agent.heartbeat is None and agent.status is None
    assert registry.agent("ghost") is None
    assert registry.discovered() == []


def test_heartbeat_reported_state_and_discovery_are_stored(registry: Registry) -> None:
    enroll(registry, "edge-01")
    registry.apply_heartbeat("edge-01", heartbeat(2.5), T0 + 7)
    report = CameraReport(name="cam1", state="streaming", inspection=True)
    rs = ReportedState(ts=T0, desired_version=3, cameras=[report])
    registry.apply_reported("edge-01", rs, T0 + 8)
    agent = registry.agent("edge-01")
    assert agent is not None
    assert agent.heartbeat == heartbeat(2.5) and agent.heartbeat_us == T0 + 7
    assert agent.reported == rs

    cams = [
        FoundCamera(endpoint="urn:uuid:a", address="10.0.0.7",
                    main_url="rtsp://u:p@10.0.0.7/101", suggested_profile="hikvision"),
        FoundCamera(endpoint="urn:uuid:b", address="10.0.0.8"),
    ]  # fmt: skip
    registry.apply_discovery("edge-01", DiscoveryReport(ts=T0, cameras=cams), T0 + 9)
    assert registry.discovered() == [("edge-01", cams[0], T0 + 9), ("edge-01", cams[1], T0 + 9)]
    # A new probe replaces the previous one.
    registry.apply_discovery("edge-01", DiscoveryReport(ts=T0, cameras=cams[1:]), T0 + 10)
    assert registry.discovered() == [("edge-01", cams[1], T0 + 10)]


def test_effective_state_needs_online_status_and_fresh_heartbeats(registry: Registry) -> None:
    enroll(registry, "edge-01")

    def at(now_us: int) -> str:
        agent = registry.agent("edge-01")
        assert isinstance(agent, AgentRecord)
        return effective_state(agent, now_us)

    assert at(T0) == "offline"  # never heard from
    registry.apply_status("edge-01", status("edge-01", "online", 1), T0)
    assert at(T0) == "stale"  # says online, but no heartbeat yet
    registry.apply_heartbeat("edge-01", heartbeat(interval_s=10), T0)
    assert at(T0 + 29 * S) == "online"
    assert at(T0 + 30 * S) == "stale"  # three intervals without a heartbeat
    registry.apply_heartbeat("edge-01", heartbeat(interval_s=10), T0 + 30 * S)
    assert at(T0 + 31 * S) == "online"
    registry.apply_status("edge-01", status("edge-01", "offline", 1), T0 + 32 * S)
    assert at(T0 + 33 * S) == "offline"
    registry.revoke("edge-01")
    assert at(T0 + 33 * S) == "revoked"


# --- cameras and desired state -----------------------------------------------------------------


def test_camera_crud_and_conflicts(registry: Registry) -> None:
    enroll(registry, "edge-01")
    rec = camera("cam1", "rtsp://admin:secret@10.0.0.5/Streaming/101", site="hall")
    assert "secret" not in repr(rec)
    assert registry.add_camera(rec) == rec
    assert registry.camera("cam1") == rec and registry.cameras() == [rec]

    with pytest.raises(CameraExists, match="'cam1' exists"):
        registry.add_camera(camera("cam1", "rtsp://10.0.0.6/x"))
    # The same stream under other credentials or with the default port written out.
    for url in ("rtsp://viewer:other@10.0.0.5/Streaming/101", "rtsp://10.0.0.5:554/Streaming/101"):
        with pytest.raises(CameraExists, match="'cam1' already reads that main stream") as info:
            registry.add_camera(camera("cam2", url))
        assert "secret" not in str(info.value) and "other" not in str(info.value)
    with pytest.raises(InvalidCamera, match="placement: no enrolled agent 'edge-09'"):
        registry.add_camera(camera("cam2", "rtsp://10.0.0.6/x", placement="edge-09"))

    rois = [RoiSpec(id="door", polygon=[(0, 0), (0.5, 0), (0.5, 0.5)])]
    updated = registry.update_camera("cam1", inspection=False, rois=rois, placement="edge-01")
    assert (updated.inspection, updated.rois, updated.placement) == (False, rois, "edge-01")
    assert registry.camera("cam1") == updated
    with pytest.raises(InvalidCamera, match="detect_fps"):
        registry.update_camera("cam1", detect_fps=0)
    with pytest.raises(InvalidCamera, match="unknown camera field 'colour'"):
        registry.update_camera("cam1", colour="red")
    with pytest.raises(InvalidCamera, match="renamed"):
        registry.update_camera("cam1", name="cam9")
    with pytest.raises(InvalidCamera, match="duplicate ROI id"):
        registry.update_camera("cam1", rois=rois * 2)
    with pytest.raises(UnknownCamera):
        registry.update_camera("nope", inspection=True)

    registry.remove_camera("cam1")
    assert registry.camera("cam1") is None
    with pytest.raises(UnknownCamera, match="no camera 'cam1'"):
        registry.remove_camera("cam1")
    registry.add_camera(camera("cam2", "rtsp://10.0.0.5/Streaming/101"))  # the stream is free


def test_revoking_frees_the_agents_cameras(registry: Registry) -> None:
    enroll(registry, "edge-01")
    registry.add_camera(camera("cam1", "rtsp://10.0.0.5/a", target="edge-01", owner="edge-01"))
    registry.add_camera(camera("cam2", "rtsp://10.0.0.6/a", placement="edge-01"))
    revoked = registry.revoke("edge-01")
    assert revoked.revoked
    cam1, cam2 = registry.cameras()
    assert (cam1.target, cam1.owner) == (None, None)
    assert cam2.placement == "edge-01"  # kept; the camera waits unassigned
    registry.update_camera("cam2", inspection=False)  # an old placement stays acceptable
    with pytest.raises(UnknownAgent, match="no agent 'ghost'"):
        registry.revoke("ghost")


def test_desired_version_changes_exactly_when_the_content_does(tmp_path: Path) -> None:
    with Registry.open(tmp_path) as reg:
        enroll(reg, "edge-01")
        enroll(reg, "edge-02")
        with pytest.raises(UnknownAgent):
            reg.desired_state("ghost")
        empty = reg.desired_state("edge-01")
        assert (empty.version, empty.cameras) == (1, [])
        assert reg.desired_state("edge-01").version == 1

        reg.add_camera(camera("cam1", "rtsp://u:p@10.0.0.5/a", target="edge-01", owner="edge-01"))
        state = reg.desired_state("edge-01")
        assert state.version == 2
        assert [c.name for c in state.cameras] == ["cam1"]
        assert state.cameras[0].main_url == "rtsp://u:p@10.0.0.5/a"  # the agent needs them
        assert reg.desired_state("edge-01") == state  # rebuilt unchanged: same version

        reg.update_camera("cam1", inspection=True)  # no actual change
        assert reg.desired_state("edge-01").version == 2
        reg.add_camera(camera("cam2", "rtsp://10.0.0.6/a", target="edge-02", owner="edge-02"))
        assert reg.desired_state("edge-01").version == 2  # another agent's camera
        reg.update_camera("cam1", inspection=False)
        assert reg.desired_state("edge-01").version == 3
        # Assignment moved, owner not yet: the old owner is told to let go before anyone else
        # may connect.
        reg.update_camera("cam1", target="edge-02")
        moved = reg.desired_state("edge-01")
        assert (moved.version, moved.cameras) == (4, [])
        assert [c.name for c in reg.desired_state("edge-02").cameras] == ["cam2"]
        reg.update_camera("cam1", owner="edge-02")
        assert reg.desired_state("edge-01").version == 4
        assert [c.name for c in reg.desired_state("edge-02").cameras] == ["cam1", "cam2"]
        assert _version(reg, "edge-01") == 4
    with Registry.open(tmp_path) as reg:  # versions survive a restart
        assert reg.desired_state("edge-01").version == 4
        assert _version(reg, "edge-02") == 2
        assert reg.desired_state("edge-02").version == 2


def _version(reg: Registry, agent_id: str) -> int:
    agent = reg.agent(agent_id)
    assert agent is not None
    return agent.desired_version


# --- identities, secrets, persistence ----------------------------------------------------------


def test_identities_exclude_revoked_agents(registry: Registry) -> None:
    enroll(registry, "edge-01")
    enroll(registry, "edge-02")
    assert [(i.username, i.role) for i in registry.identities()] == [
        (CONTROLLER_USERNAME, "controller"), ("edge-01", "agent"), ("edge-02", "agent"),
    ]  # fmt: skip
    registry.revoke("edge-01")
    assert [i.username for i in registry.identities()] == [CONTROLLER_USERNAME, "edge-02"]
    assert registry.identity("edge-01") is None
    assert registry.identity("nobody") is None


def test_secret_files_are_private_and_kept_across_restarts(tmp_path: Path) -> None:
    with Registry.open(tmp_path) as reg:
        password = reg.controller_broker_password()
        public_key = reg.signing_public_key_b64()
        identity = reg.identity(CONTROLLER_USERNAME)
        assert identity is not None and identity.role == "controller"
        assert verify_password(password, identity.password_hash)
        assert password not in identity.password_hash
    for name in (SECRETS_FILE, SIGNING_KEY_FILE, DB_FILE):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o600, f"{name} has mode {oct(mode)}"
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
    with Registry.open(tmp_path) as reg:
        assert reg.controller_broker_password() == password
        assert reg.signing_public_key_b64() == public_key
        message = b"model artifact"
        reg.signing_key().public_key().verify(reg.signing_key().sign(message), message)


def test_a_lost_controller_hash_is_restored_from_the_secrets_file(tmp_path: Path) -> None:
    with Registry.open(tmp_path) as reg:
        password = reg.controller_broker_password()
    (tmp_path / DB_FILE).unlink()
    with Registry.open(tmp_path) as reg:
        identity = reg.identity(CONTROLLER_USERNAME)
        assert identity is not None and verify_password(password, identity.password_hash)


def test_reopening_keeps_the_data(tmp_path: Path) -> None:
    with Registry.open(tmp_path) as reg:
        enrolled = enroll(reg, "edge-01")
        pending = reg.create_token("edge-02", 60, T0)
        reg.apply_status("edge-01", status("edge-01", "online", 4), T0)
        rec = reg.add_camera(camera("cam1", "rtsp://10.0.0.5/a", owner="edge-01"))
    with Registry.open(tmp_path) as reg:
        agent = reg.agent("edge-01")
        assert agent is not None and agent.status == status("edge-01", "online", 4)
        assert reg.cameras() == [rec]
        identity = reg.identity("edge-01")
        assert identity is not None
        assert verify_password(enrolled.broker_password, identity.password_hash)
        assert reg.enroll(request(pending), T0).agent_id == "edge-02"
