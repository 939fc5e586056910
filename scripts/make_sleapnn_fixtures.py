"""Make the sleap-nn fixtures under tests/fixtures/sleapnn/ with sleap-nn itself.

Run with a Python that has sleap-nn 0.3.5 installed (never posekit's environment):

    /tmp/sleapnn-venv/bin/python scripts/make_sleapnn_fixtures.py [--work DIR] [CASE ...]
    /tmp/sleapnn-venv/bin/python scripts/make_sleapnn_fixtures.py [--work DIR] --swin OUT
    /tmp/sleapnn-venv/bin/python scripts/make_sleapnn_fixtures.py --defaults

For every pose model type sleap-nn trains it trains a tiny UNet model and a tiny custom
ConvNeXt (`convnext_<type>`) for two short epochs on 16 frames of the flies clip
(downsampled 4x to 256x256, five nodes), and writes

- `<case>/training_config.yaml` and `<case>/best.ckpt` (optimiser state dropped),
- `<case>/outputs.npz`: the fixed input `x` and `module.model(x)` per head,
- `<case>/points.npz`: the points and scores of sleap-nn's own predictor on the
  frames in `frames.npz` (top-down cases run centroid + centered-instance models),
- `<case>/meta.json`: the predictor settings used,

so posekit's tests can compare network outputs and decoded points without sleap-nn.
`--swin OUT` writes the Swin-T cases, one per type (sleap-nn builds only Swin's presets:
about 335 MB each), to `OUT/swint_<type>`, and a ConvNeXt-T single-instance one to
`OUT/convnext_tiny_single_instance` (for `benchmarks/peer_predict.py`), outside the repository.
The frames are stored as arrays (and read by sleap-nn from lossless PNGs) so both
sides see the same pixels.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "sleapnn"
CLIP = Path("/work/shared/data/flies/clip.slp")
NODES = ["head", "thorax", "abdomen", "wingL", "wingR"]
EDGES = [("thorax", "head"), ("thorax", "abdomen"), ("thorax", "wingL"), ("thorax", "wingR")]
DOWN = 4
N_FRAMES = 16
PRED_FRAMES = [0, 5, 10]
PEAK_THRESHOLD = 0.1  # lowered per case to 0.3 x the largest map value (short training)


def unet(output_stride: int, up_interpolate: bool = True) -> dict:
    return {
        "unet": {
            "in_channels": 1,
            "kernel_size": 3,
            "filters": 8,
            "filters_rate": 1.5,
            "max_stride": 16,
            "stem_stride": None,
            "middle_block": True,
            "up_interpolate": up_interpolate,
            "stacks": 1,
            "convs_per_block": 2,
            "output_stride": output_stride,
        }
    }


CASES = {
    "single_instance": dict(
        backbone=unet(2),
        heads={
            "single_instance": {"confmaps": {"part_names": None, "sigma": 2.5, "output_stride": 2}}
        },
        single=True,
    ),
    "centroid": dict(
        backbone=unet(4, up_interpolate=False),
        heads={
            "centroid": {"confmaps": {"anchor_part": "thorax", "sigma": 2.5, "output_stride": 4}}
        },
    ),
    "centered_instance": dict(
        backbone=unet(2),
        heads={
            "centered_instance": {
                "confmaps": {
                    "part_names": None,
                    "anchor_part": "thorax",
                    "sigma": 2.5,
                    "output_stride": 2,
                }
            }
        },
        crop_size=64,
    ),
    "bottomup": dict(
        backbone=unet(2),
        heads={
            "bottomup": {
                "confmaps": {
                    "part_names": None,
                    "sigma": 2.5,
                    "output_stride": 2,
                    "loss_weight": 1.0,
                },
                "pafs": {"edges": None, "sigma": 5.0, "output_stride": 4, "loss_weight": 1.0},
            }
        },
    ),
    "multi_class_bottomup": dict(
        backbone=unet(2),
        heads={
            "multi_class_bottomup": {
                "confmaps": {
                    "part_names": None,
                    "sigma": 2.5,
                    "output_stride": 2,
                    "loss_weight": 1.0,
                },
                "class_maps": {
                    "classes": None,
                    "sigma": 2.5,
                    "output_stride": 4,
                    "loss_weight": 1.0,
                },
            }
        },
    ),
    "multi_class_topdown": dict(
        backbone=unet(2),
        heads={
            "multi_class_topdown": {
                "confmaps": {
                    "part_names": None,
                    "anchor_part": "thorax",
                    "sigma": 2.5,
                    "output_stride": 2,
                },
                "class_vectors": {
                    "classes": None,
                    "num_fc_layers": 1,
                    "num_fc_units": 16,
                    "global_pool": True,
                    "output_stride": 16,
                    "loss_weight": 1.0,
                },
            }
        },
        crop_size=64,
    ),
}


def convnext(output_stride: int, up_interpolate: bool = True) -> dict:
    """A tiny custom ConvNeXt (one block per stage, 4..32 channels): < 1 MB per fixture."""
    return {
        "convnext": {
            "model_type": "custom",
            "arch": {"depths": [1, 1, 1, 1], "channels": [4, 8, 16, 32]},
            "stem_patch_kernel": 4,
            "stem_patch_stride": 2,
            "in_channels": 1,
            "kernel_size": 3,
            "filters_rate": 2,
            "convs_per_block": 2,
            "up_interpolate": up_interpolate,
            "output_stride": output_stride,
            "max_stride": 32,
        }
    }


def _convnext_case(spec: dict) -> dict:
    """The UNet case `spec` on the tiny ConvNeXt (same heads and strides)."""
    unet_cfg = spec["backbone"]["unet"]
    heads = json.loads(json.dumps(spec["heads"]))
    for family in heads.values():
        if "class_vectors" in family:
            family["class_vectors"]["output_stride"] = 32  # the bottleneck's stride
    return {
        **spec,
        "backbone": convnext(unet_cfg["output_stride"], unet_cfg["up_interpolate"]),
        "heads": heads,
        "centroid": "convnext_centroid",
    }


CASES.update({f"convnext_{name}": _convnext_case(spec) for name, spec in list(CASES.items())})
# After 2 x 25 steps its maps peak on the image border, where integral refinement divides
# by a sum near 0 (points thousands of pixels out): train it longer.
CASES["convnext_multi_class_bottomup"]["steps"] = 60


#: The Swin-T cases (`--swin DIR`): every type, as the UNet cases with the Swin-T preset
#: (sleap-nn builds only the presets: about 28M parameters, over 100 MB each), so they are
#: written outside the repository.
def _swin_case(spec: dict) -> dict:
    unet_cfg = spec["backbone"]["unet"]
    case = _convnext_case(spec)  # the same heads, class vectors on the stride-32 bottleneck
    case["backbone"] = {
        "swint": {
            "model_type": "tiny",
            "in_channels": 1,
            "output_stride": unet_cfg["output_stride"],
            "up_interpolate": unet_cfg["up_interpolate"],
            "max_stride": 32,
        }
    }
    case["centroid"] = "swint_centroid"
    case["steps"] = 3 if spec.get("single") else 10
    return case


SWIN_CASES = {
    f"swint_{name}": _swin_case(spec)
    for name, spec in CASES.items()
    if not name.startswith("convnext_")
}
SWIN_SPEC = SWIN_CASES["swint_single_instance"]

#: The ConvNeXt-T preset beside it (`--swin DIR` writes both; ~335 MB too), for
#: `benchmarks/peer_predict.py`'s end-to-end timing on the presets.
CONVNEXT_T_CASE = "convnext_tiny_single_instance"
CONVNEXT_T_SPEC = dict(
    SWIN_SPEC,
    backbone={
        "convnext": {
            "model_type": "tiny",
            "in_channels": 1,
            "output_stride": 2,
            "up_interpolate": True,
            "max_stride": 32,
        }
    },
)

# Top-down model types are predicted with a centroid model in front of them.
TOPDOWN = {"centered_instance", "multi_class_topdown"}


def head_type(spec: dict) -> str:
    return next(iter(spec["heads"]))


def make_dataset(work: Path) -> tuple[Path, Path, np.ndarray]:
    """Frames of the flies clip at 1/4 size as PNGs, labels for them (two versions:
    both flies with tracks, and track 0 alone for single-instance)."""
    import cv2
    import sleap_io as sio

    src = sio.load_slp(str(CLIP))
    keep = [src.skeleton.node_names.index(n) for n in NODES]
    skeleton = sio.Skeleton(nodes=NODES, edges=[list(e) for e in EDGES])
    frames_dir = work / "frames"
    frames_dir.mkdir()
    frames, rows = [], []
    for lf in src.labeled_frames:
        insts = [i for i in lf.user_instances if i.track is not None]
        if len(insts) != 2:
            continue
        img = lf.image[..., 0]
        small = cv2.resize(
            img, (img.shape[1] // DOWN, img.shape[0] // DOWN), interpolation=cv2.INTER_AREA
        )
        path = frames_dir / f"{len(frames):03d}.png"
        cv2.imwrite(str(path), small)
        frames.append(small)
        rows.append([(i.numpy()[keep] / DOWN, i.track.name) for i in insts])
        if len(frames) == N_FRAMES:
            break
    video = sio.Video.from_filename([str(p) for p in sorted(frames_dir.glob("*.png"))])
    tracks = {name: sio.Track(name=name) for name in sorted({t for r in rows for _, t in r})}

    def labels(single: bool, n: int = N_FRAMES) -> sio.Labels:
        lfs = []
        for fi, row in enumerate(rows[:n]):
            insts = [
                sio.Instance.from_numpy(pts, skeleton=skeleton, track=tracks[t])
                for pts, t in (row[:1] if single else row)
            ]
            lfs.append(sio.LabeledFrame(video=video, frame_idx=fi, instances=insts))
        return sio.Labels(
            labeled_frames=lfs, videos=[video], skeletons=[skeleton], tracks=list(tracks.values())
        )

    multi, single = work / "multi.slp", work / "single.slp"
    labels(False).save(str(multi))
    labels(True).save(str(single))
    # Small validation sets keep the CPU time per epoch down.
    labels(False, 4).save(str(work / "multi.val.slp"))
    labels(True, 4).save(str(work / "single.val.slp"))
    return multi, single, np.stack(frames)[..., None]


def train_case(
    name: str, spec: dict, labels: Path, runs: Path, steps: int = 25, learning_rate: float = 2e-3
) -> Path:
    """Train case `name` with sleap-nn: two epochs of `spec["steps"]` (else `steps`) steps,
    no augmentation unless `spec["augment"]`; the run folder is `runs/name`."""
    from sleap_nn.train import train

    train(
        train_labels_path=[str(labels)],
        val_labels_path=[str(labels.with_suffix(".val.slp"))],
        backbone_config=spec["backbone"],
        head_configs=spec["heads"],
        crop_size=spec.get("crop_size"),
        use_augmentations_train=spec.get("augment", False),
        batch_size=4,
        max_epochs=2,
        train_steps_per_epoch=spec.get("steps", steps),
        min_train_steps_per_epoch=1,
        learning_rate=learning_rate,
        save_ckpt=True,
        ckpt_dir=str(runs),
        run_name=name,
        trainer_accelerator="cpu",
        enable_progress_bar=False,
        seed=0,
    )
    return runs / name


def strip_checkpoint(src: Path, dst: Path) -> None:
    """best.ckpt without optimiser and scheduler state (about 1/3 of the size)."""
    import torch

    ckpt = torch.load(src, map_location="cpu", weights_only=False)
    ckpt["optimizer_states"] = []
    ckpt["lr_schedulers"] = []
    ckpt.pop("callbacks", None)
    torch.save(ckpt, dst)


def fixture_folder(run: Path, dst: Path) -> Path:
    """`dst` made afresh with the run's config and its checkpoint without optimiser state."""
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir()
    shutil.copy(run / "training_config.yaml", dst / "training_config.yaml")
    strip_checkpoint(run / "best.ckpt", dst / "best.ckpt")
    return dst


def network_outputs(spec: dict, folder: Path, frames: np.ndarray) -> dict:
    import torch
    from sleap_nn.inference.loaders import _load_lightning_module

    kind = head_type(spec)
    crop = spec.get("crop_size")
    module, _, _ = _load_lightning_module(
        _module_class(kind), str(folder), model_type=kind, device="cpu"
    )
    img = frames[0, ..., 0].astype(np.float32) / 255.0
    if crop:
        img = img[96 : 96 + crop, 96 : 96 + crop]
    x = torch.from_numpy(np.ascontiguousarray(img))[None, None]
    with torch.no_grad():
        out = module.model(x)
    return {"x": x.numpy(), **{k: v.numpy() for k, v in out.items()}}


def _module_class(head_type: str):
    import sleap_nn.training.lightning_modules as lm

    names = {
        "single_instance": "SingleInstanceLightningModule",
        "centroid": "CentroidLightningModule",
        "centered_instance": "TopDownCenteredInstanceLightningModule",
        "bottomup": "BottomUpLightningModule",
        "multi_class_bottomup": "BottomUpMultiClassLightningModule",
        "multi_class_topdown": "TopDownCenteredInstanceMultiClassLightningModule",
    }
    return getattr(lm, names[head_type])


def peak_threshold(folder: Path, head_type: str, frames: np.ndarray) -> float:
    """`PEAK_THRESHOLD`, or 0.3 x the largest confidence-map value the (briefly trained)
    model gives on the frames when that is lower, so the fixture has points to compare."""
    import torch
    from sleap_nn.inference.loaders import _load_lightning_module

    module, _, _ = _load_lightning_module(
        _module_class(head_type), str(folder), model_type=head_type, device="cpu"
    )
    x = torch.from_numpy(frames[..., 0].astype(np.float32) / 255.0)[:, None]
    with torch.no_grad():
        out = module.model(x)
    top = max(float(v.max()) for k, v in out.items() if "Confmaps" in k)
    return round(min(PEAK_THRESHOLD, 0.3 * top), 4)


#: Bottom-up grouping of a briefly trained model finds no connection scoring above
#: sleap-nn's default `min_line_scores` (0.25): accept every connection instead
#: (per head type).
MIN_LINE_SCORES = {"bottomup": -1.0}


def predicted_points(kind: str, folders: list[Path], work: Path, threshold: float) -> dict:
    import sleap_io as sio
    from sleap_nn.inference.predictor import Predictor

    video = sio.Video.from_filename([str(p) for p in sorted((work / "frames").glob("*.png"))])
    predictor = Predictor.from_model_paths(
        [str(f) for f in folders],
        device="cpu",
        batch_size=4,
        peak_threshold=threshold,
        max_instances=2,
        **({"min_line_scores": MIN_LINE_SCORES[kind]} if kind in MIN_LINE_SCORES else {}),
    )
    labels = predictor.predict(video, frames=PRED_FRAMES)
    n_nodes = len(NODES)
    points = np.full((len(PRED_FRAMES), 2, n_nodes, 2), np.nan, np.float64)
    scores = np.full((len(PRED_FRAMES), 2, n_nodes), np.nan, np.float64)
    tracks = np.full((len(PRED_FRAMES), 2), "", dtype=object)
    for lf in labels.labeled_frames:
        row = PRED_FRAMES.index(lf.frame_idx)
        insts = sorted(lf.instances, key=lambda i: tuple(np.nan_to_num(i.numpy()[:, 0], nan=1e9)))
        for j, inst in enumerate(insts[:2]):
            arr = inst.numpy(scores=True)
            points[row, j] = arr[:, :2]
            scores[row, j] = arr[:, 2]
            tracks[row, j] = inst.track.name if inst.track is not None else ""
    return {"points": points, "scores": scores, "tracks": tracks.astype(str)}


def predictor_meta(kind: str, threshold: float, centroid: str) -> dict:
    """The predictor settings a fixture's points were made with (its meta.json)."""
    return {
        "peak_threshold": threshold,
        "max_instances": 2,
        "integral_refinement": "integral",
        "integral_patch_size": 5,
        "frames": PRED_FRAMES,
        "with_centroid": kind in TOPDOWN,
        "centroid": centroid if kind in TOPDOWN else None,
        "min_line_scores": MIN_LINE_SCORES.get(kind),
    }


DEFAULTS = ROOT / "src" / "posekit" / "config" / "sleap_nn_defaults.yaml"


def write_defaults() -> None:
    """sleap-nn's default config tree, plus the defaults of each head family posekit maps
    (under `head_defaults`) and of each backbone (`backbone_defaults`), as data for posekit.config.sleap_nn (the way back fills
    every field sleap-nn's loaders read; the way in compares settings to them)."""
    import yaml
    from omegaconf import OmegaConf
    from sleap_nn.config import model_config as mc
    from sleap_nn.config.training_job_config import TrainingJobConfig

    tree = OmegaConf.to_container(OmegaConf.structured(TrainingJobConfig()))
    tree.pop("sleap_nn_version", None)
    families = {
        "single_instance": {"confmaps": mc.SingleInstanceConfMapsConfig},
        "centroid": {"confmaps": mc.CentroidConfMapsConfig},
        "centered_instance": {"confmaps": mc.CenteredInstanceConfMapsConfig},
        "bottomup": {"confmaps": mc.BottomUpConfMapsConfig, "pafs": mc.PAFConfig},
        "multi_class_bottomup": {
            "confmaps": mc.BottomUpConfMapsConfig,
            "class_maps": mc.ClassMapConfig,
        },
        "multi_class_topdown": {
            "confmaps": mc.CenteredInstanceConfMapsConfig,
            "class_vectors": mc.ClassVectorsConfig,
        },
        "semantic_segmentation": {"segmentation": mc.SegmentationHeadConfig},
        "bottomup_segmentation": {
            "segmentation": mc.SegmentationHeadConfig,
            "center": mc.InstanceCenterConfig,
            "offsets": mc.CenterOffsetConfig,
        },
        "centered_instance_segmentation": {
            "segmentation": mc.CenteredInstanceSegmentationHeadConfig
        },
        # the objective as sleap-nn's training resolves it (its default is None)
        "embedding": {
            "embedding": lambda: mc.EmbeddingHeadConfig(
                objective=mc.resolve_embedding_objective(None)
            )
        },
    }
    tree["head_defaults"] = {
        fam: {sub: OmegaConf.to_container(OmegaConf.structured(cls())) for sub, cls in subs.items()}
        for fam, subs in families.items()
    }
    tree["backbone_defaults"] = {
        name: OmegaConf.to_container(OmegaConf.structured(cls()))
        for name, cls in (
            ("unet", mc.UNetConfig),
            ("convnext", mc.ConvNextConfig),
            ("swint", mc.SwinTConfig),
            ("pretrained", mc.PretrainedConfig),
        )
    }
    header = "# sleap-nn 0.3.5's default config, written by scripts/make_sleapnn_fixtures.py --defaults\n"
    DEFAULTS.write_text(header + yaml.safe_dump(tree, sort_keys=False))


def main(names: list[str], work_dir: str | None = None, out: Path = OUT) -> None:
    """`work_dir`: keep the training runs there, and reuse the cases already trained in
    it (a folder with best.ckpt) instead of training them again. `out`: where the
    fixture folders go (the Swin case: outside the repository)."""
    out.mkdir(parents=True, exist_ok=True)
    cases = {**CASES, **SWIN_CASES, CONVNEXT_T_CASE: CONVNEXT_T_SPEC}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        runs = Path(work_dir) if work_dir else work
        runs.mkdir(parents=True, exist_ok=True)
        multi, single, frames = make_dataset(work)
        if not (out / "frames.npz").exists():
            np.savez_compressed(out / "frames.npz", frames=frames[PRED_FRAMES])
        names = [n for n in cases if n in names]  # centroids first: top-down cases use them
        for name in names:
            spec = cases[name]
            folder = runs / name
            if not (folder / "best.ckpt").exists():
                train_case(name, spec, single if spec.get("single") else multi, runs)
            dst = fixture_folder(folder, out / name)
            np.savez_compressed(dst / "outputs.npz", **network_outputs(spec, dst, frames))
            kind = head_type(spec)
            centroid = spec.get("centroid", "centroid")
            folders = [out / centroid, dst] if kind in TOPDOWN else [dst]
            threshold = peak_threshold(dst, kind, frames[PRED_FRAMES])
            np.savez_compressed(
                dst / "points.npz", **predicted_points(kind, folders, work, threshold)
            )
            meta = predictor_meta(kind, threshold, centroid)
            (dst / "meta.json").write_text(json.dumps(meta, indent=2))
            print(name, "done", flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--defaults"]:
        write_defaults()
    else:
        args = sys.argv[1:]
        work_dir = None
        if args[:1] == ["--work"]:
            work_dir, args = args[1], args[2:]
        if args[:1] == ["--swin"]:
            main([*SWIN_CASES, CONVNEXT_T_CASE], work_dir, out=Path(args[1]))
        else:
            main(args or list(CASES), work_dir)
