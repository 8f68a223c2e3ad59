"""Stores pose_detection.tflite and the licence of the mediapipe wheel it ships in (Apache-2.0)
in the models cache, for the pose-backbone feature extractor. Idempotent: an intact copy is kept.

Usage: fetch-pose-backbone.py   (run with the project's venv Python; $CAMFLEET_MODELS_DIR or
~/.cache/camfleet/models). Exits 1 when the package index cannot deliver the wheel.

The wheel is downloaded with pip, not installed: mediapipe 0.10.21 pins numpy<2. The same wheel
is asked for on every machine (the file inside is platform independent), and the model is checked
against the digest in the wheel's RECORD before it is stored.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from agent.detection.model.pose_backbone import (
    LICENSE_FILE,
    MEDIAPIPE_VERSION,
    MODEL_FILE,
    MODEL_SHA256,
    WHEEL_LICENSE,
    WHEEL_MODEL,
    backbone_dir,
    sha256_of,
)

# Any wheel would do; pinning one makes every machine download the same bytes.
_WHEEL_PLATFORM = ("--platform", "manylinux_2_28_x86_64", "--python-version", "3.11")


def main() -> int:
    target = backbone_dir()
    model, licence = target / MODEL_FILE, target / LICENSE_FILE
    if model.is_file() and licence.is_file() and sha256_of(model) == MODEL_SHA256:
        print(f"pose backbone already in {target}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _download(Path(tmp))
        if wheel is None:
            return 1
        with zipfile.ZipFile(wheel) as archive:
            content, licence_text = archive.read(WHEEL_MODEL), archive.read(WHEEL_LICENSE)
    digest = hashlib.sha256(content).hexdigest()
    if digest != MODEL_SHA256:
        print(
            f"fetch-pose-backbone: {WHEEL_MODEL} has sha256 {digest}, expected {MODEL_SHA256}",
            file=sys.stderr,
        )
        return 1
    target.mkdir(parents=True, exist_ok=True)
    _write(licence, licence_text)
    _write(model, content)
    print(f"pose backbone stored in {target} ({MODEL_FILE}, {LICENSE_FILE})")
    return 0


def _download(directory: Path) -> Path | None:
    command = [sys.executable, "-m", "pip", "download", f"mediapipe=={MEDIAPIPE_VERSION}"]
    command += ["--no-deps", "--only-binary=:all:", *_WHEEL_PLATFORM, "--dest", str(directory)]
    command += ["--quiet", "--disable-pip-version-check", "--retries", "2", "--timeout", "30"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = list(directory.glob("mediapipe-*.whl"))
    if result.returncode == 0 and len(wheels) == 1:
        return wheels[0]
    print(
        f"fetch-pose-backbone: cannot download mediapipe=={MEDIAPIPE_VERSION} from the package "
        f"index (is it reachable?); pip exited {result.returncode}:\n{result.stderr.strip()}",
        file=sys.stderr,
    )
    return None


def _write(path: Path, content: bytes) -> None:
    """Atomically: an interrupted run leaves no truncated file that looks fetched."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(content)
    os.replace(partial, path)


if __name__ == "__main__":
    sys.exit(main())
