"""Check that posekit models exported as sleap-nn folders predict the same in sleap-nn.

Two steps, one per environment (neither imports the other's packages):

1. posekit's Python: export each model folder and record posekit's points on the
   fixture frames (`tests/fixtures/sleapnn/frames.npz`):

       PYTHONPATH=src python scripts/check_sleapnn_export.py posekit OUT MODEL [MODEL2]

   (MODEL2: the centered-instance model of a top-down pair, MODEL its centroid model.)
2. sleap-nn 0.3.5's Python: predict with the exported folders and compare:

       /tmp/sleapnn-venv/bin/python scripts/check_sleapnn_export.py sleap-nn OUT

Prints the largest point distance (px) and exits 1 when it is over 0.01 px or the
missing points differ.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FRAMES = ROOT / "tests" / "fixtures" / "sleapnn" / "frames.npz"
PEAK_THRESHOLD = 0.1


def _sorted_points(instances, n_nodes: int, get) -> np.ndarray:
    pts = np.full((2, n_nodes, 2), np.nan)
    rows = sorted((get(i) for i in instances), key=lambda p: tuple(np.nan_to_num(p[:, 0], nan=1e9)))
    for j, p in enumerate(rows[:2]):
        pts[j] = p
    return pts


def posekit_side(out: Path, models: list[str]) -> None:
    import torch

    import posekit
    from posekit.model.sleap_nn_folder import save_sleap_nn_folder

    out.mkdir(parents=True, exist_ok=True)
    loaded = [posekit.load_model(m) for m in models]
    names = []
    for i, model in enumerate(loaded):
        name = f"model{i}"
        save_sleap_nn_folder(model, out / name)
        names.append(name)
    frames = np.load(FRAMES)["frames"]
    # Briefly trained models: 0.3 x their largest map value, so there are points to compare
    with torch.no_grad():
        out_maps = loaded[-1](loaded[-1].preprocess(torch.from_numpy(frames)))
    top = max(float(v.max()) for k, v in out_maps.items() if "Confmaps" in k)
    threshold = round(min(PEAK_THRESHOLD, 0.3 * top), 4)
    bottomup = loaded[-1].model_type == "multi_instance"
    options = {"min_line_scores": -1.0} if bottomup else {}
    predictor = posekit.load_predictor(
        loaded,
        peak_threshold=threshold,
        max_instances=2,
        device="cpu",
        progress=False,
        sleap_compatible=True,
        **options,
    )
    results = predictor.predict_images(torch.from_numpy(frames))
    n_nodes = len(predictor.skeleton.nodes)
    points = np.stack([_sorted_points(r, n_nodes, lambda i: i.points) for r in results])
    np.savez(out / "posekit_points.npz", points=points)
    (out / "models.json").write_text(
        json.dumps({"models": names, "peak_threshold": threshold, "options": options})
    )
    print(f"exported {names} to {out}; posekit found {np.isfinite(points[..., 0]).sum()} points")


def sleap_nn_side(out: Path) -> int:
    import cv2
    import sleap_io as sio
    from sleap_nn.inference.predictor import Predictor

    run = json.loads((out / "models.json").read_text())
    names = run["models"]
    frames = np.load(FRAMES)["frames"]
    want = np.load(out / "posekit_points.npz")["points"]
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, f in enumerate(frames):
            paths.append(str(Path(tmp) / f"{i:03d}.png"))
            cv2.imwrite(paths[-1], f[..., 0])
        video = sio.Video.from_filename(paths)
        predictor = Predictor.from_model_paths(
            [str(out / n) for n in names],
            device="cpu",
            peak_threshold=run["peak_threshold"],
            max_instances=2,
            **run["options"],
        )
        labels = predictor.predict(video, frames=list(range(len(frames))))
    got = np.full_like(want, np.nan)
    for lf in labels.labeled_frames:
        got[lf.frame_idx] = _sorted_points(lf.instances, want.shape[2], lambda i: i.numpy())
    same_missing = np.array_equal(np.isnan(got), np.isnan(want))
    if same_missing and np.isfinite(want).any():
        diff = float(np.nanmax(np.sqrt(((got - want) ** 2).sum(-1))))
    else:
        diff = float("nan") if not same_missing else 0.0
    print(
        f"{np.isfinite(want[..., 0]).sum()} points; max |sleap-nn - posekit| = {diff:.2e} px; "
        f"same missing points: {same_missing}"
    )
    return 0 if same_missing and diff <= 0.01 else 1


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "posekit":
        posekit_side(Path(sys.argv[2]), sys.argv[3:])
    elif len(sys.argv) == 3 and sys.argv[1] == "sleap-nn":
        sys.exit(sleap_nn_side(Path(sys.argv[2])))
    else:
        sys.exit(__doc__)
