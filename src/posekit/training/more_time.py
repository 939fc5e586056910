"""Would more training time help? Read from the run's validation curve (`metrics.csv`).

A lab deciding between "label more frames" and "train longer" needs to know whether the
budget was the limit. The validation loss (the best so far, so one noisy epoch does not
decide) is compared at three moments of the run's own clock: half-way, three quarters and
the end. The fall over the second half is what the last doubling of time bought; a loss
still falling in the last quarter means the model had not settled when time ran out.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

#: Relative fall of the best validation loss over the last quarter of the run above which
#: more time is said to help (2%: smaller changes are within epoch-to-epoch noise).
STILL_FALLING = 0.02


def _curve(metrics_csv: Path) -> list[tuple[float, float]]:
    """(elapsed seconds, validation loss) of every validated epoch, in order."""
    points = []
    with open(metrics_csv, newline="") as f:
        for row in csv.DictReader(f):
            try:
                t, v = float(row.get("elapsed_s") or "nan"), float(row.get("val_loss") or "nan")
            except ValueError:
                continue
            if math.isfinite(t) and math.isfinite(v):
                points.append((t, v))
    return points


def _best_until(curve: list[tuple[float, float]], t: float) -> float:
    values = [v for s, v in curve if s <= t]
    return min(values) if values else math.inf


def more_time_advice(metrics_csv: str | os.PathLike) -> str | None:
    """One sentence on whether more time would likely help, or None (too few epochs)."""
    path = Path(metrics_csv)
    if not path.exists():
        return None
    curve = _curve(path)
    if len(curve) < 4:
        return None
    end = curve[-1][0]
    best_end = min(v for _, v in curve)
    best_half, best_3q = _best_until(curve, end / 2), _best_until(curve, 0.75 * end)
    if not (math.isfinite(best_half) and math.isfinite(best_3q)) or best_half <= 0:
        return None
    doubling = (best_half - best_end) / best_half
    quarter = (best_3q - best_end) / best_3q
    facts = (
        f"validation loss fell {100 * doubling:.0f}% over the second half of training (what "
        f"the last doubling of time bought) and {100 * quarter:.1f}% in its last quarter"
    )
    if quarter > STILL_FALLING:
        return f"more time would likely help: {facts}"
    return f"more time is unlikely to help much: {facts}"


__all__ = ["STILL_FALLING", "more_time_advice"]
