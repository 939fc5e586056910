"""Left/right part pairs from part names, for skeletons that declare no symmetries.

Mirroring an animal (flip augmentation in training, mirrored copies at test time) must
swap its left and right parts, or the network learns that a left wing looks like a
right one. SLEAP skeletons carry these pairs as symmetries, but many do not declare them
(imported from other tools, drawn in a hurry) while their names say it: ``wingL`` /
``wingR``, ``left_ear`` / ``right_ear``, ``paw1LH`` / ``paw1RH``. sleap-io's
`Skeleton.infer_symmetries_by_name` (0.9.5+) splits names into tokens and misses a
marker inside a token such as ``paw1LH``; the rule here looks at the letters themselves.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_WORDS = (("left", "right"), ("Left", "Right"), ("LEFT", "RIGHT"))


def _lateral_swaps(name: str) -> list[str]:
    """`name` with one left/right marker swapped, for every marker it has: the words
    left/right, a capital L/R that ends a word or starts one before a capital or digit
    (``wingL``, ``LForelimb``, ``paw1LH``), a lowercase l/r standing apart (``l_ear``)."""
    out = []
    for a, b in _WORDS:
        for m in re.finditer(a + "|" + b, name):
            other = b if m.group() == a else a
            out.append(name[: m.start()] + other + name[m.end() :])
    for i, ch in enumerate(name):
        prev = name[i - 1] if i > 0 else ""
        nxt = name[i + 1] if i + 1 < len(name) else ""
        if ch in "LR":
            ok = not nxt.islower()
        elif ch in "lr":
            ok = not prev.isalpha() and not nxt.isalpha()
        else:
            continue
        if ok:
            swap = {"L": "R", "R": "L", "l": "r", "r": "l"}[ch]
            out.append(name[:i] + swap + name[i + 1 :])
    return out


def symmetry_pairs(names: Sequence[str]) -> list[tuple[int, int]]:
    """Left/right part pairs found from part names (``wingL``/``wingR``,
    ``left_ear``/``right_ear``, ``paw1LH``/``paw1RH``): two names that differ only by one
    left/right marker. A name that pairs with more than one other is left out."""
    index = {n: i for i, n in enumerate(names)}
    pairs: dict[int, set[int]] = {}
    for i, n in enumerate(names):
        for cand in _lateral_swaps(n):
            j = index.get(cand)
            if j is not None and j != i:
                pairs.setdefault(i, set()).add(j)
    out = []
    for i, js in pairs.items():
        if len(js) == 1:
            (j,) = js
            if i < j and pairs.get(j) == {i}:
                out.append((i, j))
    return out


def flip_permutation(n_parts: int, pairs: Sequence[tuple[int, int]]) -> list[int]:
    """Channel order of a mirrored map: each part takes its partner's channel."""
    perm = list(range(n_parts))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm
