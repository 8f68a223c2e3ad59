"""The controller process: registry, broker (embedded or external), MQTT link, event center,
fleet supervision and the HTTP API, started and stopped as one."""

from __future__ import annotations

import logging
import signal
import socket
import threading
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from fastapi import APIRouter

from controller.api.app import create_app
from controller.api.context import ApiContext
from controller.api.discovery import router as discovery_router
from controller.api.events import router as events_router
from controller.api.live import router as live_router
from controller.api.metrics import render_event_metrics
from controller.api.proxy import router as proxy_router
from controller.api.server import ApiServer
from controller.api.updates import UpdateSource
from controller.api.updates import router as updates_router
from controller.auth import AdminAuth, set_admin_password
from controller.broker.embedded import EmbeddedBroker
from controller.broker.identities import CONTROLLER_USERNAME
from controller.broker.mosquitto_config import reload, write_mosquitto_config
from controller.events.clip_info import ClipInfo
from controller.events.clips import ClipStore
from controller.events.store import EventStore
from controller.link.client import ControllerLink
from controller.link.commands import CommandTracker
from controller.link.dispatch import Dispatcher
from controller.link.event_batcher import EventBatcher
from controller.registry import Registry
from controller.supervisor import FleetSupervisor
from fleet.config import ControllerConfig
from fleet.messages import Action, CommandAck
from fleet.topics import TopicKind
from fleet.utc import now_us

log = logging.getLogger("camfleet.controller")

MQTT_DEFAULT_PORT = 1883
HOUSEKEEPING_S = 3600


class ControllerService:
    def __init__(self, config: ControllerConfig, extra_routers: list[APIRouter] | None = None):
        self.config = config
        data = Path(config.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        self.registry = Registry.open(data)
        self.events = EventStore.open(data)
        self.clips = ClipStore(data / "clips", on_complete=self._clip_complete)
        self.batcher = EventBatcher(self.events)
        self.commands = CommandTracker()
        self.broker: EmbeddedBroker | None = None
        mqtt = config.mqtt
        if mqtt.url is None:
            self.broker_host, self.broker_port = config.http.host, mqtt.embedded_port
        else:
            parts = urlsplit(mqtt.url)
            self.broker_host = parts.hostname or "127.0.0.1"
            self.broker_port = parts.port or MQTT_DEFAULT_PORT
        password = (
            mqtt.password.get_secret_value()
            if mqtt.password is not None
            else self.registry.controller_broker_password()
        )
        # The supervisor publishes through the link, which tells it about presence changes.
        dispatcher = Dispatcher(
            self.registry, self.batcher, self.clips, self.commands,
            on_presence=lambda agent_id: self.supervisor.poke(),
        )  # fmt: skip
        self.link = ControllerLink(
            self.broker_host, self.broker_port, password, dispatcher,
            username=mqtt.username or CONTROLLER_USERNAME,
            on_connect=lambda: self.supervisor.resend(),
        )  # fmt: skip
        self.supervisor = FleetSupervisor(self.registry, self.link, config.fleet.failover_grace_s)
        self._stopping = threading.Event()
        self._housekeeping = threading.Thread(target=self._housekeep, daemon=True)

        self.app = create_app(
            ApiContext(
                registry=self.registry,
                broker_host=_advertised(self.broker_host),
                broker_port=self.broker_port,
                controller_url=f"http://{_advertised(config.http.host)}:{config.http.port}",
                on_change=self._changed,
                on_revoke=self._revoked,
                routers=[
                    events_router,
                    discovery_router,
                    proxy_router,
                    live_router,
                    updates_router,
                    *(extra_routers or []),
                ],
                app_state={
                    "events": self.events,
                    "clips": self.clips,
                    "service": self,
                    "updates": UpdateSource(self.registry, self.events),
                },
                extra_metrics=lambda: render_event_metrics(
                    self.events.counts(), *dispatcher.counts()
                ),
            )
        )

    def command(self, agent_id: str, action: Action, timeout_s: float) -> CommandAck | None:
        """Send a one-shot command and wait for its acknowledgement (None: none in time)."""
        command = self.commands.issue(agent_id, action)
        self.link.publish(agent_id, TopicKind.COMMANDS, command)
        return self.commands.wait(command.id, timeout_s)

    def has_admin_password(self) -> bool:
        return AdminAuth(self.registry).has_admin()

    def set_admin_password(self, password: str) -> None:
        set_admin_password(self.registry, self.config.admin.user, password)

    def _clip_complete(self, info: ClipInfo) -> None:
        event_id = info.manifest.event_id if info.manifest else None
        self.events.link_clip(event_id, info.clip_id)

    def _changed(self) -> None:
        self._write_mosquitto_files()
        self.supervisor.poke()

    def _revoked(self, agent_id: str) -> None:
        log.info("agent %s revoked", agent_id)

    def _write_mosquitto_files(self) -> None:
        mqtt = self.config.mqtt
        if mqtt.mosquitto_dir is None:
            return
        write_mosquitto_config(
            mqtt.mosquitto_dir, self.registry.identities(), port=self.broker_port,
            host=self.broker_host,
        )  # fmt: skip
        if mqtt.mosquitto_pid_file is not None:
            try:
                reload(int(mqtt.mosquitto_pid_file.read_text().strip()))
            except (OSError, ValueError) as exc:
                log.error("cannot reload Mosquitto from %s: %s", mqtt.mosquitto_pid_file, exc)

    def start(self) -> None:
        if self.config.mqtt.url is None:
            self.broker = EmbeddedBroker(self.config.http.host, self.broker_port, self.registry)
            self.broker.start()
            log.info("embedded MQTT broker on %s:%d", self.config.http.host, self.broker_port)
        else:
            self._write_mosquitto_files()
        self.link.start()
        self.supervisor.start()
        self._housekeeping.start()

    def _housekeep(self) -> None:
        # Parts of clips whose sender gave up would otherwise stay on disk for ever.
        while not self._stopping.wait(HOUSEKEEPING_S):
            try:
                removed = self.clips.collect_garbage(now_us())
                if removed:
                    log.info("removed %d abandoned partial clips", removed)
            except Exception:
                log.exception("clip garbage collection failed")

    def stop(self) -> None:
        self._stopping.set()
        self.supervisor.stop()
        self.link.stop()
        self.batcher.flush()
        self.batcher.stop()
        if self.broker is not None:
            self.broker.stop()
        self.clips.close()
        self.events.close()
        self.registry.close()

    def run(self) -> None:
        """Serve until SIGINT/SIGTERM, then stop everything cleanly (from the main thread)."""
        # uvicorn stops on SIGTERM, then raises it again for the handler it found: this one
        # makes that an exception, so the `finally` below still runs (the default would end
        # the process on the spot, events still queued).
        signal.signal(signal.SIGTERM, _exit_cleanly)
        self.start()
        try:
            server = ApiServer(self.app, self.config.http.host, self.config.http.port)
            log.info("controller API on http://%s:%d", self.config.http.host,
                     self.config.http.port)  # fmt: skip
            server.run()
        finally:
            self.stop()


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _advertised(host: str) -> str:
    """An address others can use: a wildcard bind address is not one."""
    return socket.gethostname() if host in ("0.0.0.0", "::", "") else host
