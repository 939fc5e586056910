"""The frames a person should check: where an identity decision was weakest.

Every tracker records, per frame, the margin of its weakest identity decision (how much
better the chosen assignment was than the best alternative; `FramePoses.margin`). The
lowest margins are the likeliest identity errors, so `weakest_frames` picks the
`n` lowest, at least `min_separation` frames apart (one hard crossing spans several
frames; showing all of them wastes the proofreader's time), and `make_suggestions`
turns them into `sleap_io.SuggestionFrame`s that SLEAP's GUI lists for review.
"""

from __future__ import annotations

import numpy as np


def weakest_frames(frames: list, n: int, min_separation: int = 10) -> list[tuple[int, float]]:
    """Up to `n` (frame_idx, margin) pairs, weakest first, `min_separation` apart."""
    if n <= 0:
        return []
    cand = [(float(fr.margin), int(fr.frame_idx)) for fr in frames if np.isfinite(fr.margin)]
    cand.sort()
    picked: list[tuple[int, float]] = []
    taken: list[int] = []
    for margin, idx in cand:
        if any(abs(idx - t) < min_separation for t in taken):
            continue
        picked.append((idx, margin))
        taken.append(idx)
        if len(picked) == n:
            break
    return picked


def make_suggestions(video, picks: list[tuple[int, float]], tracker: str) -> list:
    """`sleap_io.SuggestionFrame`s for `picks` of `weakest_frames`, weakest first."""
    import sleap_io as sio

    return [
        sio.SuggestionFrame(
            video=video,
            frame_idx=int(idx),
            metadata={
                "source": "posekit.tracking",
                "reason": "weak identity decision",
                "tracker": tracker,
                "margin": float(margin),
            },
        )
        for idx, margin in picks
    ]
