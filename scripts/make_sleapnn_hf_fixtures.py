"""Make the sleap-nn `pretrained` (Hugging Face models) fixtures with sleap-nn itself.

Run with a Python that has sleap-nn 0.3.5 and `transformers` installed (never posekit's
environment):

    /tmp/sleapnn-venv/bin/python scripts/make_sleapnn_hf_fixtures.py

Cases: every backbone family as a single-instance model, and the other five pose model
types (centroid, centered instance, bottom-up, multi-class bottom-up and top-down) on the
DINOv2 and the ConvNeXt. Per case it saves a tiny random Hugging Face model with `save_pretrained` (a DINOv2:
hidden size 32, 2 layers, 2 heads, patch 14, image size 56; hierarchical ConvNeXt,
ConvNeXtV2, ResNet (bottleneck): 4 stages of one block each, 8..32 channels; Swinv2:
2 blocks a stage, 8..64 channels, window 3; timm's ConvNeXt V2 with the ConvNeXts' stages
as transformers' `TimmWrapperModel`, which is how sleap-nn builds `timm/...` ids, and a
timm DINOv3 ViT of 2 blocks, width 32, the same way)
into a Hugging Face cache layout
(`hf_cache/models--posekit--<name>/snapshots/<rev>/`), has sleap-nn train a
model of the case's type on it (`model_name: posekit/<name>`, read offline from that cache)
for a few steps on the flies frames of `make_sleapnn_fixtures.py`, and writes to
`tests/fixtures/sleapnn/<case>/`:

- `training_config.yaml`, `best.ckpt` (optimiser state dropped),
- `hf_cache/.../config.json` (the Hugging Face config only: the weights are in the
  checkpoint), so posekit finds the model's sizes the way it would on a user's machine,
- `outputs.npz` (a fixed 128 x 128 input, 64 x 64 for top-down types, and `module.model(x)`),
- `points.npz`: sleap-nn's own predictor on the three frames of `frames.npz` (top-down types
  behind the family's centroid model), as for the UNet cases,
- `meta.json`: parameter count and the predictor settings.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_sleapnn_fixtures as base  # noqa: E402

REVISION = "0" * 40
CASES = {
    "dinov2_single_instance": dict(registers=0, neck={}),
    "dinov2reg_single_instance": dict(registers=4, neck={"vit_neck": "sfp"}),
    "hfconvnext_single_instance": dict(neck={}),
    "hfconvnextv2_single_instance": dict(neck={}),
    "hfresnet_single_instance": dict(neck={}),
    "hfswinv2_single_instance": dict(neck={}),
    # a timm model as sleap-nn builds `timm/...` ids: transformers' TimmWrapperModel
    "timmconvnextv2_single_instance": dict(neck={}),
    # and a timm plain ViT (DINOv3, EVA blocks with RoPE) under sleap-nn's ViT neck
    "timmdinov3_single_instance": dict(neck={}),
    # sleap-nn's detail stream beside the DINOv2 (`detail_stem`): at output stride 2 its
    # stride-2 map is a new level and its stride-4 and -8 maps join the neck's; at output
    # stride 4 (the centroid) the stride-2 map is left out
    "dinov2detail_single_instance": dict(
        neck={"detail_stem": True, "detail_channels": [8, 16, 24]}
    ),
    "dinov2detail_centroid": dict(neck={"detail_stem": True, "detail_channels": [8, 16, 24]}),
}
#: The other pose model types on one ViT (DINOv2, "dpt" neck) and one hierarchical
#: (ConvNeXt) model: same heads, strides and crops as the UNet cases of
#: make_sleapnn_fixtures.py; the top-down ones run behind their family's centroid model.
OTHER_TYPES = [
    "centroid",
    "centered_instance",
    "bottomup",
    "multi_class_bottomup",
    "multi_class_topdown",
]
CASES.update(
    {
        f"{family}_{kind}": dict(neck={})
        for family in ("dinov2", "hfconvnext")
        for kind in OTHER_TYPES
    }
)
# After 2 x 15 steps the ConvNeXt's centered-instance maps are flat on the background (two
# maxima within float rounding of each other, so a 1e-7 difference moves a point 26 px):
# train it longer. Its bottom-up model groups no instance in either tool even after
# 2 x 150 steps (the points test checks that posekit finds none too).
CASES["hfconvnext_bottomup"]["steps"] = 150
CASES["hfconvnext_centered_instance"]["steps"] = 150


def tiny_hierarchical(name: str):
    """A tiny random hierarchical model (4 stages, one block each) of `name`'s family."""
    import transformers as tf

    stages = dict(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32])
    if name == "timmconvnextv2":  # timm's ConvNeXt V2 with the same tiny stages
        args = {"depths": [1, 1, 1, 1], "dims": [8, 16, 24, 32]}
        return tf.TimmWrapperModel(
            tf.TimmWrapperConfig(architecture="convnextv2_atto", model_args=args)
        )
    if name == "timmdinov3":  # 2 blocks of width 32, patch 16
        args = {"depth": 2, "embed_dim": 32, "num_heads": 2}
        return tf.TimmWrapperModel(
            tf.TimmWrapperConfig(architecture="vit_small_patch16_dinov3", model_args=args)
        )
    if name == "hfconvnext":
        return tf.ConvNextModel(tf.ConvNextConfig(**stages, layer_scale_init_value=0.5))
    if name == "hfconvnextv2":
        return tf.ConvNextV2Model(tf.ConvNextV2Config(**stages))
    if name == "hfresnet":
        return tf.ResNetModel(tf.ResNetConfig(embedding_size=8, layer_type="bottleneck", **stages))
    # two blocks a stage (the second shifted) and a window of 3: the 128 x 128 input pads
    # every stage but the last, whose 2 x 2 config grid shrinks the window to 2
    config = tf.Swinv2Config(
        image_size=64, embed_dim=8, depths=[2, 2, 2, 2], num_heads=[1, 1, 2, 2], window_size=3
    )
    return tf.Swinv2Model(config)


def save_tiny(cache: Path, name: str, registers: int = 0) -> None:
    import torch
    from transformers import (
        Dinov2Config,
        Dinov2Model,
        Dinov2WithRegistersConfig,
        Dinov2WithRegistersModel,
    )

    torch.manual_seed(0)
    sizes = dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, patch_size=14, image_size=56
    )
    if name.startswith(("hf", "timm")):
        model = tiny_hierarchical(name)
    elif registers:
        model = Dinov2WithRegistersModel(
            Dinov2WithRegistersConfig(num_register_tokens=registers, **sizes)
        )
    else:
        model = Dinov2Model(Dinov2Config(**sizes))
    with torch.no_grad():  # random, not zero, tokens and layer scales: every path counts
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    repo = cache / f"models--posekit--{name}"
    model.save_pretrained(repo / "snapshots" / REVISION)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)


def model_type(case: str) -> str:
    return case.split("_", 1)[1]


def run_spec(case: str, spec: dict) -> dict:
    """sleap-nn's training settings for `case`: the UNet case of the same model type with
    the `pretrained` backbone in its place (class vectors read its stride-32 bottleneck)."""
    import copy

    name, kind = case.split("_")[0], model_type(case)
    unet_case = base.CASES[kind]
    heads = copy.deepcopy(unet_case["heads"])
    for family in heads.values():
        if "class_vectors" in family:
            family["class_vectors"]["output_stride"] = 32
    backbone = {
        "pretrained": {
            "model_name": f"posekit/{name}",
            "weights": True,
            "in_channels": 3,
            "output_stride": unet_case["backbone"]["unet"]["output_stride"],
            "max_stride": 32,
            **spec["neck"],
        }
    }
    steps = spec.get("steps", 5 if kind == "single_instance" else 15)
    run = {"backbone": backbone, "heads": heads, "steps": steps, "single": unet_case.get("single")}
    if unet_case.get("crop_size"):
        run["crop_size"] = unet_case["crop_size"]
    return run


def main() -> None:
    import numpy as np

    only = sys.argv[1:]  # case names; all by default
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cache = work / "hf_cache"
        os.environ["HF_HUB_CACHE"] = str(cache)
        os.environ["HF_HUB_OFFLINE"] = "1"
        multi, single, frames = base.make_dataset(work)
        for case, spec in CASES.items():
            if only and case not in only:
                continue
            name, kind = case.split("_")[0], model_type(case)
            save_tiny(cache, name, spec.get("registers", 0))
            run = run_spec(case, spec)
            folder = base.train_case(case, run, single if run["single"] else multi, work / "runs")
            dst = base.OUT / case
            shutil.rmtree(dst, ignore_errors=True)
            dst.mkdir()
            shutil.copy(folder / "training_config.yaml", dst / "training_config.yaml")
            base.strip_checkpoint(folder / "best.ckpt", dst / "best.ckpt")
            snap = Path("hf_cache") / f"models--posekit--{name}"
            (dst / snap / "snapshots" / REVISION).mkdir(parents=True)
            (dst / snap / "refs").mkdir()
            for rel in ("refs/main", f"snapshots/{REVISION}/config.json"):
                shutil.copy(cache / snap.name / rel, dst / snap / rel)
            # a 128 x 128 crop (the crop size for top-down types) keeps outputs.npz small
            crop = {"heads": run["heads"], "crop_size": run.get("crop_size", 128)}
            np.savez_compressed(dst / "outputs.npz", **base.network_outputs(crop, dst, frames))
            # sleap-nn's own predictor on the fixture frames, as for the UNet cases
            folders = [base.OUT / f"{name}_centroid", dst] if kind in base.TOPDOWN else [dst]
            threshold = base.peak_threshold(dst, kind, frames[base.PRED_FRAMES])
            np.savez_compressed(
                dst / "points.npz", **base.predicted_points(kind, folders, work, threshold)
            )
            from sleap_nn.inference.loaders import _load_lightning_module

            module, _, _ = _load_lightning_module(
                base._module_class(kind), str(dst), model_type=kind, device="cpu"
            )
            count = sum(p.numel() for p in module.model.parameters())
            buffers = sum(b.numel() for b in module.model.buffers())
            meta = {
                "parameters": count,
                "buffers": buffers,
                "model_name": f"posekit/{name}",
                **base.predictor_meta(kind, threshold, f"{name}_centroid"),
            }
            (dst / "meta.json").write_text(json.dumps(meta, indent=2))
            print(case, "done", meta, flush=True)


if __name__ == "__main__":
    main()
