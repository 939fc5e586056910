"""Identity vectors of instances from an `embedding` model, for re-identification.

An embedding model does not find animals: it looks at a crop around an animal someone
else found (a pose model's predictions, or labels) and returns a unit vector that is
close (cosine) for crops of the same animal and far for different animals. The trackers
compare these vectors across long gaps, where motion says little
(`posekit.tracking.global_assignment`).

Crops are cut as training cut them: the frame preprocessed as the model's config says
(channels, input scaling), then a ``crop_size`` square centred on the instance's
centroid (the head's ``anchor_part`` when visible, else the bounding-box midpoint of
the visible points), bilinear and zero outside the frame (`extract_crops`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from posekit.data.instance_cropping import crop_instances, instance_centroids, sleap_nn_crops
from posekit.errors import PosekitError
from posekit.heads import EmbeddingHead


class EmbeddingPredictor:
    """Embeds instances with a trained `embedding` model.

    Args:
        model: a loaded model of type ``embedding`` (`posekit.load_model`).
        batch_size: crops per forward pass.
    """

    def __init__(self, model, batch_size: int | None = 32, **_options: Any):
        if model is None or model.model_type != "embedding":
            got = None if model is None else model.model_type
            raise PosekitError(
                f"re-identification needs a model of type 'embedding'; got {got!r} (train one "
                "with model.heads.embedding in the config)"
            )
        self.model = model
        self.batch_size = int(batch_size or 32)

    def _crop_setup(self) -> tuple[EmbeddingHead, int, int | None]:
        """(the head, crop size, anchor part index) from the trained model."""
        head = next(h for h in self.model.heads if isinstance(h, EmbeddingHead))
        if not self.model.crop_size:
            raise PosekitError(
                "the embedding model's config has no data.instance_cropping.crop_size; "
                "it was not trained by posekit (train it with posekit train)"
            )
        skel = self.model.skeleton
        names = list(skel.node_names) if skel is not None else []
        anchor = names.index(head.anchor_part) if head.anchor_part in names else None
        return head, int(self.model.crop_size), anchor

    @classmethod
    def from_models(cls, models: dict, **options: Any) -> EmbeddingPredictor:
        return cls(models.get("embedding"), **options)

    def _models(self) -> list:
        return [self.model]

    def predict(self, *args: Any, **kwargs: Any):
        raise PosekitError(
            "an embedding model finds no animals, it tells found ones apart: use it with "
            "a pose model's predictions, `posekit track PREDICTIONS --reid-model MODEL` or "
            "`posekit predict POSE_MODEL... --reid-model MODEL`"
        )

    @torch.no_grad()
    def embed_frames(self, frames: Iterable[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """(k, D) float32 unit vectors per frame, for (image (H, W, C), points (k, n, 2)).

        Instances without a visible point get a row of NaN (no appearance evidence).
        """
        head, crop_size, anchor_index = self._crop_setup()
        self.model.eval()
        out: list[np.ndarray] = []
        crops: list[torch.Tensor] = []
        where: list[tuple[int, int]] = []  # (frame, instance) of each crop
        dim = head.embedding_dim

        def flush() -> None:
            if not crops:
                return
            batch = torch.cat(crops)
            vecs = self.model(batch)[head.name].float().cpu().numpy()
            for (f, i), v in zip(where, vecs):
                out[f][i] = v
            crops.clear()
            where.clear()

        for image, points in frames:
            points = np.asarray(points, dtype=np.float32).reshape(len(points), -1, 2)
            out.append(np.full((len(points), dim), np.nan, dtype=np.float32))
            pts = torch.from_numpy(points)
            cents = instance_centroids(pts, anchor_index, head.centroid_method)
            cents = cents * self.model.input_scale
            ok = torch.isfinite(cents).all(-1)
            if not bool(ok.any()):
                continue
            img = self.model.preprocess(np.asarray(image)[None])  # pads, which crops ignore
            idx = torch.nonzero(ok).flatten()
            zeros = torch.zeros(len(idx), dtype=torch.long, device=img.device)
            if getattr(self.model, "sleap_nn", False):  # trained on sleap-nn's crops
                c = sleap_nn_crops(img, cents[idx], crop_size, zeros)
            else:
                c, _ = crop_instances(img, cents[idx].to(img.device), crop_size, zeros)
            for j, i in enumerate(idx.tolist()):
                crops.append(c[j : j + 1])
                where.append((len(out) - 1, i))
            if len(crops) >= self.batch_size:
                flush()
        flush()
        return out

    def embed_labeled_frames(self, lfs: list) -> list[np.ndarray]:
        """Embeddings of every instance of `sleap_io` labeled frames (reads their video)."""
        return self.embed_frames((_read(lf), _points(lf)) for lf in lfs)

    def reid_metrics(self, labels) -> dict[str, Any]:
        """How well the vectors tell the tracked animals of `labels` apart.

        ``reid.accuracy``: the fraction of tracked instances whose vector is closest
        (cosine) to the mean vector of their own track, each mean computed without the
        instance's own frame (so a frame never votes for itself).
        """
        lfs = [lf for lf in labels.labeled_frames if any(i.track for i in lf.instances)]
        vecs = self.embed_labeled_frames(lfs)
        rows, frame, track = [], [], []
        for f, (lf, v) in enumerate(zip(lfs, vecs)):
            for inst, z in zip(lf.instances, v):
                if inst.track is not None and np.isfinite(z).all():
                    rows.append(z)
                    frame.append(f)
                    track.append(inst.track.name)
        if not rows:
            return {"reid.accuracy": float("nan"), "reid.n_instances": 0}
        z, frame = np.stack(rows), np.asarray(frame)
        names, ti = np.unique(np.asarray(track), return_inverse=True)
        total = np.zeros((len(names), z.shape[1]))
        np.add.at(total, ti, z)
        own = np.zeros((len(frame), len(names), z.shape[1]))  # this frame's share
        for f in np.unique(frame):
            mine = np.flatnonzero(frame == f)
            share = np.zeros((len(names), z.shape[1]))
            np.add.at(share, ti[mine], z[mine])
            own[mine] = share
        protos = total[None] - own
        with np.errstate(all="ignore"):
            protos /= np.linalg.norm(protos, axis=2, keepdims=True)
        sims = np.nan_to_num(np.einsum("nd,nkd->nk", z, protos), nan=-2.0)
        return {
            "reid.accuracy": float(np.mean(np.argmax(sims, axis=1) == ti)),
            "reid.n_instances": len(rows),
        }


def _points(lf) -> np.ndarray:
    if not lf.instances:
        return np.zeros((0, 0, 2))
    return np.stack([np.asarray(inst.numpy(), dtype=np.float32) for inst in lf.instances])


def _read(lf) -> np.ndarray:
    try:
        image = lf.video[lf.frame_idx]
    except Exception as exc:  # noqa: BLE001 - any reader failure means the same thing
        raise PosekitError(
            f"re-identification reads the video frames but frame {lf.frame_idx} of "
            f"{getattr(lf.video, 'filename', lf.video)!r} cannot be read "
            f"({type(exc).__name__}: {exc}); fix the video path (sleap_io "
            "Labels.replace_filenames) or track without --reid-model"
        ) from None
    return np.asarray(image)


def load_embedder(model: Any, device: str | None = None, batch_size: int = 32):
    """An `EmbeddingPredictor` for a model folder (or an already loaded model)."""
    if isinstance(model, EmbeddingPredictor):
        return model
    if not hasattr(model, "model_type"):
        from posekit.model.device import resolve_device
        from posekit.model.folder import load_model

        model = load_model(model, device=resolve_device(device or "auto"))
    return EmbeddingPredictor(model, batch_size=batch_size)


__all__ = ["EmbeddingPredictor", "load_embedder"]
