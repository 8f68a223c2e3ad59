"""Real Mosquitto brokers for tests: each on a free port with its own config, stopped after."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import free_port, require_tool, wait_for


def _accepting(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def mosquitto(config: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Run `mosquitto -c config` (which must listen on `port`) until the block ends."""
    binary = require_tool("mosquitto")
    log = (config.parent / f"mosquitto-{port}.log").open("wb")
    proc = subprocess.Popen([binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: proc.poll() is not None or _accepting(port), 10, what="mosquitto")
        if proc.poll() is not None:
            raise AssertionError(
                f"mosquitto exited {proc.returncode}: {(config.parent / log.name).read_text()}"
            )
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@contextmanager
def open_mosquitto(workdir: Path) -> Iterator[int]:
    """An anonymous broker (no ACL) with limits high enough not to drop a test's burst."""
    port = free_port()
    config = workdir / f"mosquitto-open-{port}.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nmax_inflight_messages 0\n"
    )
    with mosquitto(config, port):
        yield port
