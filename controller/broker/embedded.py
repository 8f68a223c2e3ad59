"""The controller's embedded MQTT broker: amqtt in its own thread and event loop.

For one machine, where running Mosquitto would be one thing too many. It enforces the same
identities and ACL as the generated Mosquitto config (`controller.broker.amqtt_plugins`).
Persistent sessions (clean_session False) keep QoS 1 messages for a disconnected client in
memory; unlike Mosquitto's, they do not survive a restart of the broker.

Known amqtt 0.12 weakness, not worked around here: it acts on the session a CONNECT names
before authenticating it, so a client that knows a client id can, without a password,
disconnect that client or (with clean_session) discard its persistent session. Wills are
contained (`amqtt_broker`), but where agents connect over a network, prefer Mosquitto.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from concurrent.futures import Future
from datetime import timedelta
from typing import Final

from amqtt.contexts import BrokerConfig, ListenerConfig  # type: ignore[import-untyped]

from controller.broker.amqtt_broker import AclBroker
from controller.broker.amqtt_plugins import IdentityAuthPlugin, IdentityTopicPlugin, plugin_config
from controller.broker.amqtt_redelivery import RedeliverUnackedPlugin
from controller.broker.identities import IdentitySource

LOCALHOST: Final = "127.0.0.1"
# Like Mosquitto's `persistent_client_expiration`: a client that never returns stops queueing.
SESSION_EXPIRY: Final = timedelta(days=7)
_START_TIMEOUT_S: Final = 10.0
_STOP_TIMEOUT_S: Final = 15.0
# amqtt logs packets (CONNECT with its password) and every connection at DEBUG/INFO; only
# problems belong in the controller's log.
_QUIET_LOGGERS: Final = ("amqtt", "transitions")


class BrokerStartError(RuntimeError):
    """The embedded broker could not start (most often: the port is taken)."""


class EmbeddedBroker:
    """amqtt listening on `host:port` (use `LOCALHOST` unless agents connect from elsewhere)."""

    def __init__(self, host: str, port: int, identities: IdentitySource) -> None:
        self.host, self.port = host, port
        self._identities = identities
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: AclBroker | None = None

    def __repr__(self) -> str:
        return f"EmbeddedBroker({self.host}:{self.port}, running={self._thread is not None})"

    def start(self) -> None:
        """Serve in a background thread; return once connections are accepted."""
        if self._thread is not None:
            raise BrokerStartError(f"embedded broker on {self.host}:{self.port} already running")
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        loop = asyncio.new_event_loop()
        started: Future[AclBroker] = Future()
        thread = threading.Thread(
            target=self._serve, args=(loop, started), name=f"mqtt-broker-{self.port}", daemon=True
        )
        thread.start()
        try:
            broker = started.result(_START_TIMEOUT_S)
        except OSError as exc:  # the thread has ended and closed its loop
            thread.join(_STOP_TIMEOUT_S)
            raise BrokerStartError(
                f"embedded broker cannot listen on {self.host}:{self.port}: "
                f"{os.strerror(exc.errno) if exc.errno else exc}"
            ) from None
        except TimeoutError:
            with contextlib.suppress(RuntimeError):  # the loop may have closed meanwhile
                loop.call_soon_threadsafe(loop.stop)
            raise BrokerStartError(
                f"embedded broker on {self.host}:{self.port} not up after {_START_TIMEOUT_S} s"
            ) from None
        except Exception as exc:
            thread.join(_STOP_TIMEOUT_S)
            raise BrokerStartError(f"embedded broker did not start: {exc}") from exc
        self._loop, self._thread, self._broker = loop, thread, broker

    def stop(self) -> None:
        """Close every connection and the listener, end the thread; harmless if not running."""
        loop, thread, broker = self._loop, self._thread, self._broker
        if loop is None or thread is None or broker is None:
            return
        self._loop = self._thread = self._broker = None
        try:
            asyncio.run_coroutine_threadsafe(broker.shutdown(), loop).result(_STOP_TIMEOUT_S)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(_STOP_TIMEOUT_S)

    def _serve(self, loop: asyncio.AbstractEventLoop, started: Future[AclBroker]) -> None:
        asyncio.set_event_loop(loop)
        try:
            broker = loop.run_until_complete(self._start_broker())
        except BaseException as exc:
            started.set_exception(exc)
        else:
            started.set_result(broker)
            loop.run_forever()
        finally:
            _cancel_remaining(loop)
            loop.close()

    async def _start_broker(self) -> AclBroker:
        config = plugin_config(self._identities)
        broker = AclBroker(
            BrokerConfig(
                listeners={"default": ListenerConfig(bind=f"{self.host}:{self.port}")},
                session_expiry_interval=int(SESSION_EXPIRY.total_seconds()),
                plugins={
                    _dotted(IdentityAuthPlugin): config,
                    _dotted(IdentityTopicPlugin): config,
                    _dotted(RedeliverUnackedPlugin): {},
                },
            )
        )
        try:
            # Broker.start wraps the listener's OSError; unwrap it for a clear message.
            await broker.start()
        except Exception as exc:
            cause = exc.__cause__
            raise cause if isinstance(cause, OSError) else exc from None
        return broker


def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _cancel_remaining(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
