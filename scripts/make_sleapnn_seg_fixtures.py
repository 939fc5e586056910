"""Make the sleap-nn segmentation fixtures under tests/fixtures/sleapnn/ with sleap-nn itself.

Run with a Python that has sleap-nn 0.3.5 installed (never posekit's environment):

    /tmp/sleapnn-venv/bin/python scripts/make_sleapnn_seg_fixtures.py [--work DIR] [CASE ...]
    /tmp/sleapnn-venv/bin/python scripts/make_sleapnn_seg_fixtures.py --check-export DIR

The pose fixtures (`make_sleapnn_fixtures.py`) train on the flies clip, which has no
masks; these train on a synthetic set instead: 12 frames of 128x128 pixels, two bright
ellipses per frame on a noisy dark background, each with a three-node pose and its own
`sleap_io.UserSegmentationMask`. For each of sleap-nn's three segmentation model types
(and the centroid model that top-down segmentation runs in front) it trains a tiny UNet
for two short epochs and writes, as the pose fixtures do,

- `<case>/training_config.yaml` and `<case>/best.ckpt` (optimiser state dropped),
- `<case>/outputs.npz`: the fixed input `x` and `module.model(x)` per head,
- `<case>/masks.npz`: the masks (image pixels, `(frames, instances, H, W)` bool) and
  scores of sleap-nn's own predictor on the frames in `seg_frames.npz`,
- `<case>/meta.json`: the predictor settings used.

`--check-export DIR` loads, in sleap-nn, the folders posekit exported into `DIR/<case>`
(`posekit export tests/fixtures/sleapnn/<case> --format sleap-nn DIR/<case>`) and exits 1
when their network outputs differ from the fixtures' by more than 1e-5.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_sleapnn_fixtures import CASES as POSE_CASES  # noqa: E402
from make_sleapnn_fixtures import OUT, fixture_folder, train_case, unet  # noqa: E402

SIZE = 128
N_FRAMES = 12
PRED_FRAMES = [0, 4, 8]
NODES = ["head", "thorax", "tail"]
EDGES = [("head", "thorax"), ("thorax", "tail")]
#: Instance-centre peaks of a briefly trained model are low: 0.3 x the largest map
#: value when that is below sleap-nn's default (0.2).
PEAK_THRESHOLD = 0.2


CASES = {
    "seg_centroid": POSE_CASES["centroid"],  # the pose fixtures' centroid model
    "semantic_segmentation": dict(
        backbone=unet(2),
        heads={"semantic_segmentation": {"segmentation": {"output_stride": 2}}},
    ),
    "bottomup_segmentation": dict(
        backbone=unet(2),
        heads={
            "bottomup_segmentation": {
                "segmentation": {"output_stride": 2},
                "center": {"sigma": 4.0, "output_stride": 2},
                "offsets": {"output_stride": 2},
            }
        },
        steps=30,
    ),
    "centered_instance_segmentation": dict(
        backbone=unet(2),
        heads={
            "centered_instance_segmentation": {
                "segmentation": {"output_stride": 2, "anchor_part": "thorax"}
            }
        },
        crop_size=64,
        centroid="seg_centroid",
    ),
}


def head_type(spec: dict) -> str:
    return next(iter(spec["heads"]))


def make_dataset(work: Path) -> tuple[Path, np.ndarray]:
    """The synthetic frames as lossless PNGs and a labels file with poses and masks."""
    import cv2
    import sleap_io as sio

    rng = np.random.default_rng(0)
    skeleton = sio.Skeleton(nodes=NODES, edges=[list(e) for e in EDGES])
    frames_dir = work / "seg_frames"
    frames_dir.mkdir()
    frames, rows = [], []
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for fi in range(N_FRAMES):
        img = rng.normal(30, 6, (SIZE, SIZE))
        row = []
        centres = [rng.uniform(28, 52, 2), rng.uniform(76, 100, 2)]
        for cx, cy in centres:
            angle = rng.uniform(0, np.pi)
            a, b = rng.uniform(16, 22), rng.uniform(7, 10)
            u, v = np.cos(angle), np.sin(angle)
            dx, dy = xx - cx, yy - cy
            mask = ((dx * u + dy * v) / a) ** 2 + ((-dx * v + dy * u) / b) ** 2 <= 1.0
            img[mask] = rng.normal(200, 6, int(mask.sum()))
            pts = np.array(
                [
                    [cx + 0.8 * a * u, cy + 0.8 * a * v],
                    [cx, cy],
                    [cx - 0.8 * a * u, cy - 0.8 * a * v],
                ]
            )
            row.append((pts, mask))
        small = np.clip(img, 0, 255).astype(np.uint8)
        cv2.imwrite(str(frames_dir / f"{fi:03d}.png"), small)
        frames.append(small)
        rows.append(row)
    video = sio.Video.from_filename([str(p) for p in sorted(frames_dir.glob("*.png"))])

    def labels(n: int) -> sio.Labels:
        lfs = []
        for fi, row in enumerate(rows[:n]):
            insts, masks = [], []
            for pts, mask in row:
                inst = sio.Instance.from_numpy(pts, skeleton=skeleton)
                insts.append(inst)
                masks.append(sio.UserSegmentationMask.from_numpy(mask, instance=inst))
            lfs.append(sio.LabeledFrame(video=video, frame_idx=fi, instances=insts, masks=masks))
        return sio.Labels(labeled_frames=lfs, videos=[video], skeletons=[skeleton])

    path = work / "seg.slp"
    labels(N_FRAMES).save(str(path))
    labels(4).save(str(work / "seg.val.slp"))
    return path, np.stack(frames)[..., None]


def _module(folder: Path, kind: str):
    import sleap_nn.training.lightning_modules as lm
    from sleap_nn.inference.loaders import _load_lightning_module

    names = {
        "centroid": "CentroidLightningModule",
        "semantic_segmentation": "SemanticSegmentationLightningModule",
        "bottomup_segmentation": "BottomUpSegmentationLightningModule",
        "centered_instance_segmentation": "TopDownCenteredInstanceSegmentationLightningModule",
    }
    module, _, _ = _load_lightning_module(
        getattr(lm, names[kind]), str(folder), model_type=kind, device="cpu"
    )
    return module


def network_outputs(spec: dict, folder: Path, frames: np.ndarray) -> dict:
    import torch

    module = _module(folder, head_type(spec))
    img = frames[0, ..., 0].astype(np.float32) / 255.0
    crop = spec.get("crop_size")
    if crop:
        img = img[8 : 8 + crop, 8 : 8 + crop]
    x = torch.from_numpy(np.ascontiguousarray(img))[None, None]
    with torch.no_grad():
        out = module.model(x)
    return {"x": x.numpy(), **{k: v.numpy() for k, v in out.items()}}


def peak_threshold(folder: Path, kind: str, frames: np.ndarray) -> float:
    import torch

    key = {"bottomup_segmentation": "InstanceCenterHead", "centroid": "CentroidConfmapsHead"}
    if kind not in key:
        return PEAK_THRESHOLD
    module = _module(folder, kind)
    x = torch.from_numpy(frames[..., 0].astype(np.float32) / 255.0)[:, None]
    with torch.no_grad():
        top = float(module.model(x)[key[kind]].max())
    return round(min(PEAK_THRESHOLD, 0.3 * top), 4)


def image_mask(mask, hw) -> np.ndarray:
    """A sleap-io mask on the image grid (nearest neighbour, as sleap-io places it)."""
    data = np.asarray(mask.data, dtype=bool)
    (sx, sy), (ox, oy) = mask.scale, mask.offset
    rows = np.floor((np.arange(hw[0]) - oy) * sy + 1e-9).astype(int)
    cols = np.floor((np.arange(hw[1]) - ox) * sx + 1e-9).astype(int)
    out = np.zeros(hw, dtype=bool)
    r_ok = (rows >= 0) & (rows < data.shape[0])
    c_ok = (cols >= 0) & (cols < data.shape[1])
    out[np.ix_(r_ok, c_ok)] = data[np.ix_(rows[r_ok], cols[c_ok])]
    return out


def predicted_masks(folders: list[Path], work: Path, meta: dict) -> dict:
    import sleap_io as sio
    from sleap_nn.inference.predictor import Predictor

    video = sio.Video.from_filename([str(p) for p in sorted((work / "seg_frames").glob("*.png"))])
    predictor = Predictor.from_model_paths(
        [str(f) for f in folders],
        device="cpu",
        batch_size=4,
        peak_threshold=meta["peak_threshold"],
        max_instances=meta["max_instances"],
    )
    labels = predictor.predict(video, frames=PRED_FRAMES)
    masks = np.zeros((len(PRED_FRAMES), 2, SIZE, SIZE), bool)
    scores = np.full((len(PRED_FRAMES), 2), np.nan)
    raw = []
    for lf in labels.labeled_frames:
        row = PRED_FRAMES.index(lf.frame_idx)
        found = [(image_mask(m, (SIZE, SIZE)), float(m.score)) for m in lf.masks]
        found.sort(key=lambda t: -t[1])
        for j, (m, s) in enumerate(found[:2]):
            masks[row, j], scores[row, j] = m, s
        raw.append([(m.data.shape, tuple(m.scale), tuple(m.offset)) for m in lf.masks])
    print("sleap-nn masks (data shape, scale, offset):", raw, flush=True)
    return {"masks": masks, "scores": scores}


def main(names: list[str], work_dir: str | None = None) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        runs = Path(work_dir) if work_dir else work
        runs.mkdir(parents=True, exist_ok=True)
        labels, frames = make_dataset(work)
        np.savez_compressed(OUT / "seg_frames.npz", frames=frames[PRED_FRAMES])
        for name in [n for n in CASES if n in names]:  # the centroid first
            spec = CASES[name]
            folder = runs / name
            if not (folder / "best.ckpt").exists():
                train_case(name, spec, labels, runs, steps=20, learning_rate=3e-3)
            dst = fixture_folder(folder, OUT / name)
            np.savez_compressed(dst / "outputs.npz", **network_outputs(spec, dst, frames))
            kind = head_type(spec)
            centroid = spec.get("centroid")
            meta = {
                "peak_threshold": peak_threshold(
                    OUT / centroid if centroid else dst,
                    "centroid" if centroid else kind,
                    frames[PRED_FRAMES],
                ),
                "max_instances": 2,
                "frames": PRED_FRAMES,
                "centroid": centroid,
            }
            if kind != "centroid":
                folders = [OUT / centroid, dst] if centroid else [dst]
                np.savez_compressed(dst / "masks.npz", **predicted_masks(folders, work, meta))
            (dst / "meta.json").write_text(json.dumps(meta, indent=2))
            print(name, "done", flush=True)


def check_export(folder: Path) -> int:
    """sleap-nn's network outputs for the folders posekit exported into `folder`
    (`posekit export CASE --format sleap-nn folder/CASE`) against the fixtures' own."""
    import torch

    worst = 0.0
    for name, spec in CASES.items():
        if not (folder / name / "best.ckpt").is_file():
            continue
        ref = np.load(OUT / name / "outputs.npz")
        with torch.no_grad():
            out = _module(folder / name, head_type(spec)).model(torch.from_numpy(ref["x"]))
        diff = max(float(np.abs(v.numpy() - ref[k]).max()) for k, v in out.items())
        print(name, "largest output difference", diff, flush=True)
        worst = max(worst, diff)
    return int(worst > 1e-5)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--check-export"]:
        sys.exit(check_export(Path(args[1])))
    work_dir = None
    if args[:1] == ["--work"]:
        work_dir, args = args[1], args[2:]
    main(args or list(CASES), work_dir)
