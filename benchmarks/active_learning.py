"""Does labelling the frames `posekit suggest` picks beat labelling random frames?

The lab's loop, simulated with the flies clip's proofread labels as the oracle (every
frame of `shared/data/flies/clip.slp` is labelled; 2 flies, 13 nodes):

- test: the test frames of `time_to_accuracy.py` (every 5th frame of every third block
  of 50 frames; 100 frames, or the first `--test-frames`), never trained on or picked;
- pool: every frame of the other blocks (1000), or `--candidates` of them evenly spread
  (each candidate is predicted twice per round by `suggest`, so fewer is faster);
- start: `--start` (20) pool frames at random (per seed); `--model` (default the
  top-down pair `baseline.centroid` + `baseline_medium_rf.topdown`, a third and two
  thirds of the budget; or one `baseline_medium_rf.bottomup`), each with
  `posekit train --auto`'s settings for its share of the budget, is trained for `--budget-s` seconds and scored on the test frames (OKS mAP, median
  error of the matched points in px);
- each of `--rounds` (3) rounds adds `--add` (20) frames, labelled by the oracle, chosen
  by `posekit.suggest` with the last model (``suggest``) or at random (``random``), then
  trains from scratch with the same budget and scores the same test frames;
- `--seeds` (3): the start set, the random picks and training differ per seed; the
  model trained on a seed's start set is shared by both strategies.

Output under `--out`: ``results.json`` (every round of every seed and strategy, written
as it goes, so an interrupted run keeps what it did), ``curve.png`` (mAP and median
error against labelled frames, mean over seeds with min-max band) and a table printed
at the end.

The full run is 3 seeds x (1 + 2 strategies x 3 rounds) = 21 trainings: on a GPU with
``--budget-s 300`` about two hours. A smoke run that checks the whole loop on a CPU in a
few minutes::

    PYTHONPATH=src python benchmarks/active_learning.py --rounds 1 --seeds 1 --start 6 \
        --add 6 --budget-s 20 --candidates 18 --test-frames 8 --device cpu --out /tmp/al
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from time_to_accuracy import BLOCK, is_test_frame, set_threads  # noqa: E402

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
FLIES = SHARED / "data" / "flies" / "clip.slp"
PROFILES = SHARED / "sleap_profiles"
#: --model: one bottom-up model, or the top-down pair (centroid, then centered instance)
#: with the budget split 1:2 between them (the pair learns far more per CPU second:
#: 120 s of bottom-up on the flies is ~24 steps at 512 px, and finds nothing yet).
MODELS = {
    "bottomup": (("bottomup", "baseline_medium_rf.bottomup.json", 1.0),),
    "topdown": (
        ("centroid", "baseline.centroid.json", 1 / 3),
        ("centered", "baseline_medium_rf.topdown.json", 2 / 3),
    ),
}
STRATEGIES = ("suggest", "random")


def subset(labels, frames) -> Any:
    import sleap_io as sio

    keep = set(int(f) for f in frames)
    return sio.Labels(
        labeled_frames=[lf for lf in labels.labeled_frames if int(lf.frame_idx) in keep],
        videos=list(labels.videos),
        skeletons=list(labels.skeletons),
        tracks=list(labels.tracks),
    )


def train_and_score(labelled, test, args, tag: str) -> dict[str, Any]:
    """Train `--model` on `labelled` for the budget; score on `test`. Returns metrics and
    the predictor (for the next round's suggestions)."""
    import posekit
    from posekit.evaluation import evaluate

    model_dirs = []
    for name, profile, share in MODELS[args.model]:
        run = posekit.train(
            PROFILES / profile,
            labels=labelled,
            run_name=f"{tag}.{name}",
            runs_folder=Path(args.out) / "runs",
            device=args.device,
            max_time=args.budget_s * share,
            auto=True,
            seed=args.seed_offset,
            progress=False,
        )
        best = Path(run) / "best_model"
        model_dirs.append(best if best.exists() else Path(run) / "latest_model")
    models = model_dirs[0] if len(model_dirs) == 1 else model_dirs
    predictor = posekit.load_predictor(models, device=args.device, max_instances=2)
    predictions = predictor.predict(test)
    if any(len(lf.instances) for lf in predictions.labeled_frames):
        m = evaluate(test, predictions)
        scores = {
            "mAP": m.get("oks_voc.mAP"),
            "median_px": m.get("dist.p50"),
            # every labelled point counts (a point not found is a miss): still moves when
            # a briefly trained model finds too few points above threshold for any AP
            "mPCK": m.get("pck.mPCK"),
        }
    else:  # a model that finds nothing yet
        scores = {"mAP": 0.0, "median_px": None, "mPCK": 0.0}
    return {**scores, "model": [str(d) for d in model_dirs], "predictor": predictor}


def predictor_of(row: dict, args) -> Any:
    """The predictor of a round: in memory, or loaded from its model folders (--resume)."""
    if row.get("predictor") is not None:
        return row["predictor"]
    import posekit

    models = row["model"] if len(row["model"]) > 1 else row["model"][0]
    return posekit.load_predictor(models, device=args.device, max_instances=2)


def pick(strategy, predictor, labelled_frames, pool, labels, args, rng, where: Path):
    """The next `--add` frames to label."""
    unlabelled = [f for f in pool if f not in labelled_frames]
    if strategy == "random":
        return sorted(rng.choice(unlabelled, size=args.add, replace=False).tolist())
    import sleap_io as sio

    import posekit

    project = where / "project.slp"
    sio.save_slp(subset(labels, labelled_frames), str(project))
    picks = posekit.suggest(
        predictor,
        [project],
        where / "next.slp",
        n=args.add,
        min_separation=args.min_separation,
        frames=",".join(str(f) for f in unlabelled),
    )
    return sorted(p.frame_idx for p in picks)


def summarize(results: list[dict], out: Path) -> None:
    """Print the table (mean over seeds per strategy and labelled count); draw the curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    print("| strategy | labelled | mAP (mean, min-max) | mPCK (mean) | median px | seeds |")
    print("|---|---|---|---|---|---|")
    for strategy, colour in zip(STRATEGIES, ("tab:red", "tab:blue")):
        rows = [r for r in results if r["strategy"] in (strategy, "start")]
        counts = sorted({r["labelled"] for r in rows})
        for k, key in enumerate(("mAP", "mPCK", "median_px")):
            mean, lo, hi = [], [], []
            for n in counts:
                v = [r[key] for r in rows if r["labelled"] == n and r.get(key) is not None]
                mean.append(np.mean(v) if v else np.nan)
                lo.append(np.min(v) if v else np.nan)
                hi.append(np.max(v) if v else np.nan)
            axes[k].plot(counts, mean, "o-", color=colour, label=strategy)
            axes[k].fill_between(counts, lo, hi, color=colour, alpha=0.15)
            if key == "mAP":
                for n, m_, a, b in zip(counts, mean, lo, hi):
                    med = [r["median_px"] for r in rows if r["labelled"] == n]
                    med = [x for x in med if x is not None]
                    seeds = sum(r["labelled"] == n for r in rows)
                    pck = [r.get("mPCK") for r in rows if r["labelled"] == n]
                    pck = [x for x in pck if x is not None]
                    print(
                        f"| {strategy} | {n} | {m_:.3f} ({a:.3f}-{b:.3f}) | "
                        f"{np.mean(pck) if pck else float('nan'):.3f} | "
                        f"{np.mean(med) if med else float('nan'):.1f} | {seeds} |"
                    )
    axes[0].set(xlabel="labelled frames", ylabel="OKS mAP (test frames)")
    axes[1].set(xlabel="labelled frames", ylabel="mPCK (test frames, misses count)")
    axes[2].set(xlabel="labelled frames", ylabel="median error of found points (px)")
    axes[0].legend()
    fig.suptitle("flies: frames picked by posekit suggest vs at random")
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=100)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="active_learning_out")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--start", type=int, default=20)
    p.add_argument("--add", type=int, default=20)
    p.add_argument(
        "--budget-s", type=float, default=300.0, help="training seconds per round (all models)"
    )
    p.add_argument("--model", choices=sorted(MODELS), default="topdown")
    p.add_argument("--candidates", type=int, default=0, help="pool size (0: every pool frame)")
    p.add_argument("--test-frames", type=int, default=0, help="0: all 100")
    p.add_argument("--min-separation", type=int, default=10)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed-offset", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: cores)")
    p.add_argument(
        "--resume", action="store_true", help="keep the rounds already in OUT/results.json"
    )
    args = p.parse_args(argv)
    set_threads(args.threads)
    import sleap_io as sio

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    labels = sio.load_slp(str(FLIES))
    frames = sorted(int(lf.frame_idx) for lf in labels.labeled_frames)
    test_frames = [f for f in frames if is_test_frame(f)]
    pool = [f for f in frames if (f // BLOCK) % 3 != 2]
    if args.test_frames:
        test_frames = test_frames[:: max(len(test_frames) // args.test_frames, 1)]
        test_frames = test_frames[: args.test_frames]
    if args.candidates:
        pool = pool[:: max(len(pool) // args.candidates, 1)][: args.candidates]
    if len(pool) < args.start + args.rounds * args.add:
        p.error(f"--candidates {len(pool)} < --start + --rounds x --add: nothing left to pick")
    test = subset(labels, test_frames)
    results: list[dict] = []

    def record(**row):
        row = {k: v for k, v in row.items() if k != "predictor"}
        results.append(row)
        (out / "results.json").write_text(json.dumps({"args": vars(args), "rounds": results}))
        print(json.dumps(row), flush=True)

    # --resume: rounds already in OUT/results.json are taken as they are (their models
    # give the next round's suggestions; the random picks are drawn again, to the same frames)
    results_path = out / "results.json"
    done = {}
    if args.resume and results_path.exists():
        for row in json.loads(results_path.read_text())["rounds"]:
            done[(row["seed"], row["strategy"], row["round"])] = row

    def reuse(key):
        row = dict(done[key])
        results.append(row)
        print(f"reusing seed {key[0]} {key[1]} round {key[2]}", flush=True)
        return row

    t0 = time.perf_counter()
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        start = sorted(rng.choice(pool, size=args.start, replace=False).tolist())
        if (seed, "start", 0) in done:
            first = reuse((seed, "start", 0))
        else:
            first = train_and_score(subset(labels, start), test, args, f"s{seed}.start")
            record(seed=seed, strategy="start", round=0, labelled=len(start), frames=start, **first)
        for strategy in STRATEGIES:
            rng = np.random.default_rng(1000 + seed)
            labelled, last = list(start), first
            for r in range(1, args.rounds + 1):
                if (seed, strategy, r) in done:
                    last = reuse((seed, strategy, r))
                    if strategy == "random":  # the same draw as the recorded round
                        again = pick(strategy, None, labelled, pool, labels, args, rng, out)
                        assert again == sorted(last["picked"]), "random picks differ"
                    labelled = sorted(set(labelled) | set(last["picked"]))
                    continue
                where = out / f"s{seed}.{strategy}.r{r}"
                where.mkdir(exist_ok=True)
                new = pick(
                    strategy, predictor_of(last, args), labelled, pool, labels, args, rng, where
                )
                labelled = sorted(set(labelled) | set(new))
                last = train_and_score(
                    subset(labels, labelled), test, args, f"s{seed}.{strategy}.r{r}"
                )
                record(
                    seed=seed,
                    strategy=strategy,
                    round=r,
                    labelled=len(labelled),
                    picked=new,
                    **last,
                )
    print(f"done in {(time.perf_counter() - t0) / 60:.1f} min")
    summarize(results, out)


if __name__ == "__main__":
    main()
