"""Make the sleap-nn `embedding` (re-ID) fixtures under tests/fixtures/sleapnn/ with sleap-nn.

Run with a Python that has sleap-nn 0.3.5 installed (never posekit's environment):

    /tmp/sleapnn-venv/bin/python scripts/make_sleapnn_embedding_fixtures.py [CASE ...]
    /tmp/sleapnn-venv/bin/python scripts/make_sleapnn_embedding_fixtures.py --check-export DIR

sleap-nn's `embedding` model maps a crop around an animal to an identity vector. Each case
trains one for two short epochs on the pose fixtures' frames (16 frames of the flies clip
at 256x256, two tracked flies; tracklet positives, as for one video) and writes

- `<case>/training_config.yaml` and `<case>/best.ckpt` (optimiser state dropped),
- `<case>/outputs.npz`: a fixed crop-sized input `x` (already standardised, as the network
  sees it) and `module.model(x)["EmbeddingHead"]`,
- `<case>/embeddings.npz`: sleap-nn's own vectors (`sleap_nn.inference.embedding.
  embed_labels`) for every instance of the frames in `frames.npz`, with the points they
  were cropped around (`points`: frames x instances x nodes x 2, `vectors`: frames x
  instances x D).

and `embedding_crops.npz`: sleap-nn's crops of the first of those frames around centres
near its edges (its Skia crop filter, which posekit reproduces for these models).

Cases: `embedding` (tiny UNet, the head at stride 16, sleap-nn's default pooling (GeM) and
crop centre (mean of the visible points)); `convnext_embedding` (tiny custom ConvNeXt, the
head at stride 32, average pooling, crops centred on the thorax); on sleap-nn's
`pretrained` backbone with the tiny random Hugging Face models of
`make_sleapnn_hf_fixtures.py` (their `config.json` under `<case>/hf_cache/`):
`dinov2_embedding` (a frozen DINOv2, encoder-only), `hfconvnextv2_embedding`,
`timmconvnextv2_embedding` (timm's ConvNeXt V2, `mode: encoder`) and `timmdinov3_embedding`
(timm's DINOv3, encoder-only).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_sleapnn_fixtures import (  # noqa: E402
    OUT,
    PRED_FRAMES,
    convnext,
    fixture_folder,
    make_dataset,
    unet,
)
from make_sleapnn_fixtures import train_case as base_train_case  # noqa: E402

CROP = 64
#: Tracklet positives need negatives from the same video (sleap-nn refuses otherwise).
OBJECTIVE = {"positives": {"scope": "tracklet"}, "negatives": {"restrict_same_video": True}}

CASES = {
    "embedding": dict(
        backbone=unet(16),
        head={"embedding_dim": 16, "num_fc_units": 32, "output_stride": 16},
    ),
    "convnext_embedding": dict(
        backbone=convnext(32),
        head={
            "embedding_dim": 16,
            "num_fc_units": 32,
            "output_stride": 32,
            "pool": "avg",
            "anchor_part": "thorax",
        },
    ),
}


def _pretrained(name: str, **extra) -> dict:
    """sleap-nn's `pretrained` backbone on the tiny random Hugging Face model `name` of
    `make_sleapnn_hf_fixtures.py` (read offline from the cache `main` fills)."""
    backbone = {"model_name": f"posekit/{name}", "weights": True, "in_channels": 3}
    return {"pretrained": {**backbone, "output_stride": 32, "max_stride": 32, **extra}}


#: sleap-nn's re-ID setups on Hugging Face encoders: a frozen DINOv2 ViT (`mode: auto`
#: with no spatial head is its encoder-only "Case B": the last block's layer-normed patch
#: tokens, pooled; unset `pool` resolves to avg for a frozen encoder) and a ConvNeXtV2
#: that trains ("Case A": the deepest stage map; `pool` resolves to GeM).
HF_CASES = {
    "dinov2_embedding": dict(
        backbone=_pretrained("dinov2", freeze=True),
        head={"embedding_dim": 16, "num_fc_units": 32, "output_stride": 32},
    ),
    "hfconvnextv2_embedding": dict(
        backbone=_pretrained("hfconvnextv2"),
        head={"embedding_dim": 16, "num_fc_units": 32, "output_stride": 32},
    ),
    # a timm plain ViT (DINOv3) in encoder mode: its last block's tokens through one fresh
    # LayerNorm at the token stride (16), which is then the model's maximum stride
    # timm's ConvNeXt V2 in encoder mode, asked for (`auto` gives a hierarchical encoder
    # the decoder): the deepest stage map, pooled
    "timmconvnextv2_embedding": dict(
        backbone=_pretrained("timmconvnextv2", mode="encoder"),
        head={"embedding_dim": 16, "num_fc_units": 32, "output_stride": 32},
    ),
    "timmdinov3_embedding": dict(
        backbone=_pretrained("timmdinov3"),
        head={"embedding_dim": 16, "num_fc_units": 32, "output_stride": 32},
    ),
}
CASES.update(HF_CASES)


def train_case(name: str, spec: dict, labels: Path, runs: Path) -> Path:
    """Train case `name` as the pose fixtures are trained, with augmentation on: the two
    augmented views of each crop are the contrastive pairs."""
    head = {"embedding": {"embedding": {**spec["head"], "objective": OBJECTIVE}}}
    run = dict(backbone=spec["backbone"], heads=head, crop_size=CROP, steps=10, augment=True)
    return base_train_case(name, run, labels, runs)


def network_outputs(folder: Path, frames: np.ndarray) -> dict:
    import torch
    from sleap_nn.inference.loaders import _load_lightning_module
    from sleap_nn.training.lightning_modules import EmbeddingLightningModule

    module, _, _ = _load_lightning_module(
        EmbeddingLightningModule, str(folder), model_type="embedding", device="cpu"
    )
    img = frames[0, 96 : 96 + CROP, 96 : 96 + CROP, 0].astype(np.float32)
    gray = torch.from_numpy(np.ascontiguousarray(img))[None, None]
    x = module._build_input(gray, torch.ones_like(gray))  # per-crop standardisation
    with torch.no_grad():
        out = module.model(x)["EmbeddingHead"]
    return {"x": x.numpy(), "EmbeddingHead": out.numpy(), "gray": gray.numpy()}


def embeddings(folder: Path, labels_path: Path) -> dict:
    import sleap_io as sio
    from sleap_nn.inference.embedding import embed_labels

    labels = sio.load_slp(str(labels_path))
    keep = sio.Labels(
        labeled_frames=[labels.labeled_frames[i] for i in PRED_FRAMES],
        videos=labels.videos,
        skeletons=labels.skeletons,
        tracks=labels.tracks,
    )
    from sleap_nn.architectures.pretrained import PretrainedBackbone

    # sleap-nn 0.3.5's construction check of a timm ViT (`_probe_tokens`: a backward pass
    # through the token taps) fails inside `embed_labels`, which builds the model under
    # no_grad with frozen weights ("element 0 of tensors does not require grad"); the
    # check only validates, so skip it there to get sleap-nn's own vectors
    probe = PretrainedBackbone._probe_tokens
    PretrainedBackbone._probe_tokens = lambda self: None
    try:
        embed_labels(str(folder), keep, device="cpu", batch_size=8)
    finally:
        PretrainedBackbone._probe_tokens = probe
    points = np.stack([np.stack([i.numpy() for i in lf.instances]) for lf in keep])
    vectors = np.stack(
        [np.stack([np.asarray(i.identity_embedding.vector) for i in lf.instances]) for lf in keep]
    )
    tracks = np.array([[i.track.name for i in lf.instances] for lf in keep])
    return {"points": points, "vectors": vectors.astype(np.float32), "tracks": tracks}


#: Crop centres for `crops.npz`: near each edge and corner, and one off the frame.
EDGE_CENTRES = [[5.3, 7.7], [250.2, 3.1], [128.4, 252.9], [-10.0, 100.0], [31.6, 30.1]]


def skia_crops(frames: np.ndarray) -> dict:
    """sleap-nn's embedding crops of the first frame around `EDGE_CENTRES` (Skia's
    bilinear filter, anti-aliased at the frame's edges), as its dataset cuts them."""
    import torch
    from sleap_nn.data.instance_cropping import make_centered_bboxes
    from sleap_nn.data.skia_augmentation import crop_and_resize_skia_window, crop_window_bounds

    frame = frames[0]
    crops = []
    for centre in EDGE_CENTRES:
        box = make_centered_bboxes(torch.tensor(centre), CROP, CROP).unsqueeze(0)
        y0, y1, x0, x1 = crop_window_bounds(box, frame.shape[:2])
        window = np.transpose(frame[y0:y1, x0:x1], (2, 0, 1)).copy()
        crop = crop_and_resize_skia_window(
            torch.from_numpy(window)[None], (x0, y0), frame.shape[:2], box, (CROP, CROP)
        )
        crops.append(crop.numpy()[0, 0])
    return {"centres": np.asarray(EDGE_CENTRES, np.float32), "crops": np.stack(crops)}


def main(names: list[str]) -> None:
    import os

    from make_sleapnn_hf_fixtures import REVISION, save_tiny

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cache = work / "hf_cache"
        os.environ["HF_HUB_CACHE"] = str(cache)
        os.environ["HF_HUB_OFFLINE"] = "1"
        multi, _, frames = make_dataset(work)
        np.savez_compressed(OUT / "embedding_crops.npz", **skia_crops(frames[PRED_FRAMES]))
        for name in names:
            spec = CASES[name]
            hf = name.split("_")[0] if name in HF_CASES else None
            if hf:
                save_tiny(cache, hf)
            run = train_case(name, spec, multi, work / "runs")
            dst = fixture_folder(run, OUT / name)
            if hf:  # the Hugging Face config only: the weights are in the checkpoint
                snap = Path("hf_cache") / f"models--posekit--{hf}"
                (dst / snap / "snapshots" / REVISION).mkdir(parents=True)
                (dst / snap / "refs").mkdir()
                for rel in ("refs/main", f"snapshots/{REVISION}/config.json"):
                    shutil.copy(cache / snap.name / rel, dst / snap / rel)
            np.savez_compressed(dst / "outputs.npz", **network_outputs(dst, frames))
            np.savez_compressed(dst / "embeddings.npz", **embeddings(dst, multi))
            print(name, "done", flush=True)


def check_export(folder: Path) -> int:
    """sleap-nn's vectors from the folders posekit exported into `folder/<case>`
    (`posekit export tests/fixtures/sleapnn/<case> --format sleap-nn DIR/<case>`) against
    the fixtures' vectors: 1 when any differs by more than 1e-5."""
    bad = 0
    import os

    from make_sleapnn_hf_fixtures import save_tiny

    with tempfile.TemporaryDirectory() as tmp:
        multi, _, _ = make_dataset(Path(tmp))
        # sleap-nn builds a `weights: true` encoder from the model's files before it loads
        # the checkpoint: the tiny random models again, in a cache of their own
        os.environ["HF_HUB_CACHE"] = str(Path(tmp) / "hf_cache")
        os.environ["HF_HUB_OFFLINE"] = "1"
        for name in HF_CASES:
            save_tiny(Path(tmp) / "hf_cache", name.split("_")[0])
        for name in CASES:
            ref = np.load(OUT / name / "embeddings.npz")
            got = embeddings(folder / name, multi)
            diff = float(np.abs(got["vectors"] - ref["vectors"]).max())
            print(f"{name}: {got['vectors'].shape[:2]} vectors, max difference {diff:.2g}")
            bad += diff > 1e-5
    return int(bad > 0)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--check-export"]:
        sys.exit(check_export(Path(sys.argv[2])))
    main(sys.argv[1:] or list(CASES))
