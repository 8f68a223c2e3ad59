"""`camfleet eval` end to end, as a user runs it: the table, its goals line, and the plot."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import av
import pytest
from conftest import REPO

LAST_LINE = re.compile(
    r"precision=(?P<p>[\d.]+) recall=(?P<r>[\d.]+) auroc=(?P<a>[\d.]+|nan) "
    r"false_alarms_per_hour=(?P<f>[\d.]+) onset_p95_s=(?P<l>[\d.]+|nan) "
    r"roi_err_p99_px=(?P<e>[\d.]+)"
)


@pytest.mark.slow
def test_eval_prints_its_table_and_draws_the_scores(tmp_path: Path) -> None:
    plot = tmp_path / "scores.png"
    done = subprocess.run(
        [sys.executable, "-m", "fleet.cli.main", "eval", "--cameras", "1", "--minutes", "0.5",
         "--seed", "5", "--plot", str(plot), "--cache", str(Path(REPO) / ".cache" / "eval-test")],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    match = LAST_LINE.fullmatch(lines[-1])
    assert match, lines[-1]
    assert 0 <= float(match["p"]) <= 1 and 0 <= float(match["r"]) <= 1
    # Drift is tracked whatever the model does: placement within the 2 px at p99.
    assert float(match["e"]) <= 2.0
    assert any(line.startswith("cam1 ") for line in lines), done.stdout
    assert "cam1: detecting" in done.stderr  # progress
    with av.open(str(plot)) as png:
        image = next(png.decode(video=0))
        assert image.width >= 600 and image.height >= 150
