"""Re-identification on the real flies clip: identities across long removed stretches.

Trains a small `embedding` model on the first part of /work/shared/data/flies/clip.slp
(two flies, female and male, every frame labelled with tracks) for a short CPU budget,
then on the other part strips the tracks, shuffles the instance order, removes long
stretches of frames (gaps of 50 to 200 frames between short visible stretches) and
re-tracks with the global tracker (max_tracks=2), with and without ``reid_model``.
Prints IDF1, identity switches and HOTA both ways, and the model's own re-ID accuracy on
the held-out frames (`EmbeddingPredictor.reid_metrics`: each instance given the track
whose mean vector over the other frames is closest).

    PYTHONPATH=src nice python benchmarks/reid_flies.py [--budget 240] [--model RUN]
        [--labels ../shared/data/flies/clip.2node.slp]

``--labels`` picks the poses (trained on and tracked): the 13-node clip, or its 2-node
(head, thorax) version, where body shape tells the flies apart less well.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLIES = ROOT / ".." / "shared" / "data" / "flies" / "clip.slp"
SPLIT = 750  # frames before: training; from here: tracking
VISIBLE = 30  # frames of each visible stretch
GAPS = (50, 100, 150, 200)  # removed frames between visible stretches

CONFIG = {
    "data": {"preprocessing": {"input_scaling": 0.5}},
    "model": {
        "backbone": {
            "unet": {"filters": 16, "filters_rate": 2, "max_stride": 16, "output_stride": 16}
        },
        "heads": {
            "embedding": {
                "embedding": {"embedding_dim": 32, "num_fc_units": 64, "temperature": 0.2}
            }
        },
    },
    "optimization": {
        "batch_size": 16,
        "epochs": 200,
        "batches_per_epoch": 20,
        "val_batches_per_epoch": 2,
        "initial_learning_rate": 1e-3,
        "augmentation_config": {"rotate": True},
        "early_stopping": {"stop_training_on_plateau": False},
    },
    "outputs": {"save_visualizations": False},
}


def train_model(labels, budget: float, runs: Path) -> Path:
    import sleap_io as sio

    from posekit.training import train

    lfs = [lf for lf in labels.labeled_frames if lf.frame_idx < SPLIT]
    part = sio.Labels(lfs, videos=labels.videos, skeletons=labels.skeletons, tracks=labels.tracks)
    cfg = dict(CONFIG, outputs=dict(CONFIG["outputs"], runs_folder=str(runs)))
    return train(
        cfg, labels=part, run_name="reid_flies", device="cpu", max_time=budget, progress=False
    )


def gapped(labels):
    """(untracked shuffled predictions, ground truth) of the tracking part with gaps."""
    import sleap_io as sio

    from tracking import predictions  # benchmarks/tracking.py

    keep, t = set(), SPLIT
    for gap in GAPS + (0,):
        keep.update(range(t, t + VISIBLE))
        t += VISIBLE + gap
    lfs = [lf for lf in labels.labeled_frames if lf.frame_idx in keep]
    part = sio.Labels(lfs, videos=labels.videos, skeletons=labels.skeletons, tracks=labels.tracks)
    return predictions(part, len(lfs))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=240.0, help="training seconds (CPU)")
    ap.add_argument("--model", default=None, help="a trained embedding run (skip training)")
    ap.add_argument("--labels", default=str(FLIES), help="the clip's labels (.slp)")
    args = ap.parse_args()
    if not Path(args.labels).exists():
        print(f"no flies clip at {args.labels}", file=sys.stderr)
        return 1
    import sleap_io as sio

    from posekit.tracking import track, tracking_metrics

    labels = sio.load_slp(args.labels)
    model = args.model
    if model is None:
        t0 = time.perf_counter()
        model = train_model(labels, args.budget, Path(tempfile.mkdtemp(prefix="reid_flies_")))
        print(f"trained {model} in {time.perf_counter() - t0:.0f} s (CPU, budget {args.budget})")
    pred, gt = gapped(labels)
    from posekit.inference.embeddings import load_embedder

    acc = load_embedder(model).reid_metrics(gt)["reid.accuracy"]
    print(f"re-ID accuracy on the held-out instances: {acc:.3f}")
    print(f"tracking {len(pred)} frames of {SPLIT}..{len(labels)} (gaps {GAPS})")
    for name, extra in (("motion + shape", {}), ("+ re-ID model", {"reid_model": str(model)})):
        t0 = time.perf_counter()
        out = track(pred, max_tracks=2, **extra)
        dt = time.perf_counter() - t0
        m = tracking_metrics(gt, out)
        print(
            f"{name:16s} IDF1 {m['idf1']:.3f}  switches {m['identity_switches']}  "
            f"HOTA {m['hota']:.3f}  ({dt:.1f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
