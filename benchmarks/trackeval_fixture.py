"""Numbers from TrackEval itself, for `tests/tracking/test_hota.py` to check posekit against.

Run with an interpreter that has TrackEval (``pip install trackeval`` in a scratch
virtual environment; it pulls matplotlib, OpenCV and pycocotools, which posekit does not
need). Makes small random sequences (ids appearing and vanishing, swaps, similarities
in [0, 1] with empty frames), runs TrackEval's HOTA and CLEAR on each and writes inputs
and outputs as JSON:

    /path/to/trackeval-venv/bin/python benchmarks/trackeval_fixture.py tests/tracking/trackeval_fixture.json
"""

from __future__ import annotations

import json
import sys

import numpy as np


def sequence(rng, n_frames, n_gt, n_tr):
    gt_ids, tr_ids, sims = [], [], []
    for _ in range(n_frames):
        g = np.sort(rng.choice(n_gt, rng.integers(0, n_gt + 1), replace=False))
        p = np.sort(rng.choice(n_tr, rng.integers(0, n_tr + 1), replace=False))
        s = rng.uniform(0, 1, (len(g), len(p)))
        s[s < 0.3] = 0.0
        s = s.round(6)
        # a consistent identity mapping most of the time, so association matters
        for i, gi in enumerate(g):
            j = np.flatnonzero(p == (gi % n_tr))
            if len(j) and rng.random() < 0.8:
                s[i, j[0]] = rng.uniform(0.6, 1.0)
        gt_ids.append(g)
        tr_ids.append(p)
        sims.append(s)
    # TrackEval wants ids 0..n-1 that all occur
    g_used = np.unique(np.concatenate(gt_ids)) if any(len(g) for g in gt_ids) else []
    p_used = np.unique(np.concatenate(tr_ids)) if any(len(p) for p in tr_ids) else []
    g_map = {int(v): k for k, v in enumerate(g_used)}
    p_map = {int(v): k for k, v in enumerate(p_used)}
    gt_ids = [np.array([g_map[int(v)] for v in g], dtype=int) for g in gt_ids]
    tr_ids = [np.array([p_map[int(v)] for v in p], dtype=int) for p in tr_ids]
    return gt_ids, tr_ids, sims, len(g_used), len(p_used)


def main(path: str) -> int:
    import trackeval

    rng = np.random.default_rng(25)
    cases = []
    for n_frames, n_gt, n_tr in ((30, 2, 2), (40, 3, 4), (25, 4, 3), (50, 2, 3), (20, 5, 5)):
        gt_ids, tr_ids, sims, ng, nt = sequence(rng, n_frames, n_gt, n_tr)
        data = {
            "num_gt_ids": ng,
            "num_tracker_ids": nt,
            "num_gt_dets": sum(len(g) for g in gt_ids),
            "num_tracker_dets": sum(len(p) for p in tr_ids),
            "gt_ids": gt_ids,
            "tracker_ids": tr_ids,
            "similarity_scores": sims,
            "num_timesteps": n_frames,
            "seq": "synthetic",
        }
        h = trackeval.metrics.HOTA().eval_sequence(data)
        c = trackeval.metrics.CLEAR().eval_sequence(data)
        hota = {
            k: float(np.mean(h[k]))
            for k in ("HOTA", "DetA", "AssA", "DetRe", "DetPr", "AssRe", "AssPr", "LocA")
        }
        clear = {
            k: float(c[k])
            for k in (
                "MOTA",
                "MOTP",
                "IDSW",
                "CLR_TP",
                "CLR_FN",
                "CLR_FP",
                "Frag",
                "MT",
                "PT",
                "ML",
            )
        }
        cases.append(
            {
                "n_gt": ng,
                "n_tr": nt,
                "gt_ids": [g.tolist() for g in gt_ids],
                "tr_ids": [p.tolist() for p in tr_ids],
                "sims": [s.tolist() for s in sims],
                "hota": hota,
                "clear": clear,
            }
        )
    meta = {
        "trackeval": getattr(trackeval, "__version__", "1.3.0"),
        "made_by": "benchmarks/trackeval_fixture.py",
    }
    with open(path, "w") as f:
        json.dump({"meta": meta, "cases": cases}, f)
    print(f"wrote {len(cases)} cases to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
