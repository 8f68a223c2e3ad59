"""Nearest-rank percentiles where a missing sample (an event never seen) counts as infinitely
late, so a lost event can only make a figure worse."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(samples: Sequence[float | None], p: float) -> float | None:
    """The p-th percentile (0 < p <= 100) by nearest rank; inf if it falls on a missing sample,
    None if there are no samples at all."""
    if not samples:
        return None
    ordered = sorted(math.inf if s is None else s for s in samples)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"
