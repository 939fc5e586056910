"""Assigning instances to tracks from a similarity matrix: SLEAP's greedy and Hungarian.

Both take a cost matrix (rows: instances, columns: tracks; cost = -similarity) and return
``(row, col)`` pairs. A pair whose similarity is NaN (nothing comparable) is never
matched: its instance starts a new track instead of taking an arbitrary one, which is the
one deliberate difference from SLEAP, where such a pair could be assigned by chance.
"""

from __future__ import annotations

import numpy as np

# Added to the cost as a tie-break (see `tie_break`); far below any similarity step that
# means something, far above float64 rounding at costs of order 1.
TIE_BREAK_WEIGHT = 1e-9


def tie_break(distances: np.ndarray) -> np.ndarray:
    """A cost in [0, 1) that orders pairs by `distances` and only matters on ties.

    SLEAP's ``instance`` similarity underflows to 0 for poses more than ~6 px apart, so a
    fast-moving animal ties with every track and greedy matching then picks by array
    order: an identity switch by accident. Adding ``TIE_BREAK_WEIGHT * d / (1 + d)``
    makes the nearer track win exactly those ties and changes no other decision.
    """
    d = np.asarray(distances, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        out = np.where(np.isfinite(d), d / (1.0 + d), 1.0)
    return TIE_BREAK_WEIGHT * out


def greedy_matching(cost: np.ndarray) -> list[tuple[int, int]]:
    """SLEAP's greedy matching: take the cheapest pair, drop its row and column, repeat."""
    cost = np.asarray(cost, dtype=np.float64)
    if cost.size == 0:
        return []
    order = np.argsort(cost, axis=None, kind="stable")
    rows, cols = np.unravel_index(order, cost.shape)
    used_r: set[int] = set()
    used_c: set[int] = set()
    out = []
    limit = min(cost.shape)
    for r, c in zip(rows.tolist(), cols.tolist()):
        if r in used_r or c in used_c or not np.isfinite(cost[r, c]):
            continue
        out.append((r, c))
        used_r.add(r)
        used_c.add(c)
        if len(out) == limit:
            break
    return out


def hungarian_matching(cost: np.ndarray) -> list[tuple[int, int]]:
    """Minimum total cost assignment (scipy's `linear_sum_assignment`), finite pairs only."""
    from scipy.optimize import linear_sum_assignment

    cost = np.asarray(cost, dtype=np.float64)
    if cost.size == 0:
        return []
    finite = np.isfinite(cost)
    if not finite.any():
        return []
    # Infinite pairs become a cost worse than any real assignment, then are dropped.
    big = (np.abs(cost[finite]).max() + 1.0) * (min(cost.shape) + 1)
    rows, cols = linear_sum_assignment(np.where(finite, cost, big))
    return [(int(r), int(c)) for r, c in zip(rows, cols) if finite[r, c]]


MATCHING_FUNCTIONS = {"greedy": greedy_matching, "hungarian": hungarian_matching}


def match_margins(similarity: np.ndarray, matches: list[tuple[int, int]]) -> np.ndarray:
    """How clearly each match won: its similarity minus the best rival's (per match).

    The rival of a match (i, j) is the best other track for instance i or the best other
    instance for track j. A small or negative margin is a decision a person should check.
    """
    sim = np.asarray(similarity, dtype=np.float64)
    sim = np.where(np.isnan(sim), -np.inf, sim)
    out = np.full(len(matches), np.inf)
    for m, (i, j) in enumerate(matches):
        v = sim[i, j]
        sim[i, j] = -np.inf  # exclude the match itself from its rivals
        rival = max(sim[i].max(initial=-np.inf), sim[:, j].max(initial=-np.inf))
        sim[i, j] = v
        out[m] = v - rival
    return out
