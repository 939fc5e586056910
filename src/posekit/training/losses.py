"""Loss functions with the numbers SLEAP's Keras training produces.

SLEAP compiles its Keras model with one loss per output, weighted by the head's
`loss_weight` and summed:

- map heads (confidence maps, PAFs, class maps, offsets): mean squared error over every
  element, plus, when `optimization.hard_keypoint_mining.online_mining` is on, the online
  hard keypoint mining (OHKM) term below, added to the MSE;
- the class-vectors head: Keras' categorical cross-entropy *on probabilities* (the head
  ends in a softmax), which renormalises the prediction to sum to one and clips it to
  ``[1e-7, 1 - 1e-7]`` before the log. Computing it from the probabilities (instead of the
  logits) keeps an imported SLEAP model and a posekit-trained one on the same footing.

- the embedding head (sleap-nn's `embedding` type): the supervised contrastive loss
  (SupCon) of its L2-normalised vectors, with the crops' identities as labels.

posekit tensors are NCHW, so the channel axis is 1 (SLEAP's NHWC uses the last axis).

posekit-only (never chosen for a plain SLEAP config): a map head whose instance attribute
``loss_function`` is ``"balanced_mse"`` (set by `posekit.training.callbacks.RecipeLoss`
when `--auto` plans a budgeted run) is trained with `balanced_mse`, which gives the
pixels under the Gaussians the same total weight as the background. With plain MSE a
confidence map whose peaks cover ~0.1% of the pixels has an all-zero output as a deep,
flat minimum (see `posekit.training.recommend`, rule 13).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover
    from posekit.heads import Head

#: Keras' backend epsilon, used to clip probabilities in the cross-entropy.
KERAS_EPSILON = 1e-7


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all elements (Keras `MeanSquaredError`, batch-mean)."""
    return torch.mean((pred - target) ** 2)


def balanced_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error that weighs peaks like the background (posekit-only).

    With ``e = (pred - target)^2``, ``t = target`` and ``q = max(t, pred)`` (clamped to
    [0, 1], no gradient through the weight):

        loss = sum(q e) / sum(t)  +  sum((1 - q) e) / sum(1 - q)

    - The first term is the error where the labels put a peak *or* where the model claims
      one, measured against the labels' peak mass: an all-zero map costs ``mean_t(t^2)``
      (~1/3 for Gaussians) instead of the peaks' area fraction (~1e-4 with plain MSE),
      so the gradient that grows peaks is as strong as the one that flattens the
      background, whatever the map size and sigma.
    - A false peak (or every part's channel lighting up on the whole animal, or a
      constant offset over the map) is weighted by its own height and divided by the
      same peak mass, so it costs as much as a missed peak: such shortcuts cannot beat
      the all-zero map. (Normalising the first term by ``sum(q)`` instead lets a constant
      map of 0.1 reach a lower loss than any real fit; measured, it predicted nothing.)
    - The second term is the background's mean error, as plain MSE would weigh it.
    - Symmetric around each peak, so it does not move peaks. Without any visible point
      in the batch the peak mass is taken as 1 (a few map pixels).
    """
    pred = pred.float()
    target = target.float()
    err = (pred - target) ** 2
    q = torch.maximum(target, pred.detach()).clamp(0.0, 1.0)
    bg = 1.0 - q
    background = (bg * err).sum() / bg.sum().clamp(min=1.0)
    # No host sync: the peak mass is clamped instead of tested.
    return background + (q * err).sum() / target.clamp(0.0, 1.0).sum().clamp(min=1.0)


def channel_losses(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum of squared errors per channel, (C,), over batch and pixels.

    The quantity OHKM ranks channels by.
    """
    return ((pred - target) ** 2).sum(dim=(0, 2, 3))


def select_hard_keypoints(
    per_channel: torch.Tensor,
    hard_to_easy_ratio: float = 2.0,
    min_hard_keypoints: int = 2,
    max_hard_keypoints: int | None = None,
) -> torch.Tensor:
    """Indices of the channels that OHKM treats as hard, hardest first.

    A channel is hard when its loss is at least `hard_to_easy_ratio` times the easiest
    channel's loss. The count is then clamped to ``[min_hard_keypoints,
    max_hard_keypoints]`` (and to the number of channels), so a few channels are always
    boosted even when all are similar, and a handful of very easy channels cannot make
    every other channel "hard".
    """
    n = per_channel.shape[0]
    best = per_channel.min()
    # As in TensorFlow: when the easiest channel is perfect (loss 0) every other channel's
    # ratio is infinite (hard) and 0 / 0 is NaN (not hard).
    ratio = per_channel / best
    n_hard = int((ratio >= hard_to_easy_ratio).sum())
    upper = (
        n
        if max_hard_keypoints is None or max_hard_keypoints < 0
        else min(int(max_hard_keypoints), n)
    )
    k = min(max(n_hard, int(min_hard_keypoints)), upper)
    if k <= 0:
        return per_channel.new_zeros(0, dtype=torch.long)
    return torch.topk(per_channel, k=k, sorted=True).indices


def ohkm_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    hard_to_easy_ratio: float = 2.0,
    min_hard_keypoints: int = 2,
    max_hard_keypoints: int | None = None,
    loss_scale: float = 5.0,
) -> torch.Tensor:
    """Online hard keypoint mining term (SLEAP's definition).

    The `k` hardest channels (see `select_hard_keypoints`) contribute their summed
    squared error times `loss_scale`, normalised by ``batch * height * width * k``; i.e.
    `loss_scale` times the mean per-element error of the hard channels. It is added to
    the ordinary MSE, so hard channels get extra gradient and easy ones keep theirs.
    """
    if pred.dim() != 4:
        raise ValueError(f"OHKM needs (N, C, H, W) maps, got shape {tuple(pred.shape)}")
    per_channel = channel_losses(pred, target)
    hard = select_hard_keypoints(
        per_channel.detach(), hard_to_easy_ratio, min_hard_keypoints, max_hard_keypoints
    )
    k = hard.numel()
    if k == 0:
        return pred.new_zeros(())
    n, _, h, w = pred.shape
    return per_channel[hard].sum() * float(loss_scale) / float(n * h * w * k)


def categorical_crossentropy(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Keras `categorical_crossentropy(from_logits=False)`, mean over the batch.

    `probs` are the head's softmax outputs (N, C); `target` one-hot (N, C) (all-zero rows
    contribute zero, as in Keras).
    """
    p = probs / probs.sum(dim=-1, keepdim=True)
    p = p.clamp(KERAS_EPSILON, 1.0 - KERAS_EPSILON)
    return torch.mean(-(target * torch.log(p)).sum(dim=-1))


def bce_dice(
    logits: torch.Tensor,
    target: torch.Tensor,
    bce_weight: float = 0.5,
    dice_weight: float = 0.5,
    pos_weight: float | None = None,
    smooth: float = 1.0,
) -> torch.Tensor:
    """Foreground-mask loss of `SegmentationHead` (sleap-nn's definition).

    ``bce_weight * BCE(logits) + dice_weight * (1 - Dice)`` with the soft Dice
    ``(2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth)`` per image and channel,
    averaged. BCE alone lets a small animal vanish into the background (almost every
    pixel is background); Dice measures the overlap whatever the animal's size.

    Images whose target is NaN (a pose + mask model's instances without a mask) are
    skipped; a batch without any mask gives zero (with a gradient).
    """
    import torch.nn.functional as F

    logits, target = logits.float(), target.float()
    valid = torch.isfinite(target).flatten(1).all(dim=1)  # (N,)
    target = torch.nan_to_num(target, nan=0.0)
    pw = None if pos_weight is None else torch.tensor(float(pos_weight), device=logits.device)
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw, reduction="none")
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(2, 3))
    dice = (2.0 * inter + smooth) / (p.sum(dim=(2, 3)) + target.sum(dim=(2, 3)) + smooth)
    per_image = bce_weight * bce.flatten(1).mean(dim=1) + dice_weight * (1.0 - dice.mean(dim=1))
    return (per_image * valid).sum() / valid.sum().clamp(min=1)


def masked_smooth_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Smooth L1 (beta 1) summed over the finite target elements, divided by their
    count: `CenterOffsetHead`'s targets are NaN on background cells. Zero (with a
    gradient) when the batch has no foreground."""
    import torch.nn.functional as F

    valid = torch.isfinite(target)
    safe = torch.where(valid, target, pred.detach()).float()
    total = F.smooth_l1_loss(pred.float(), safe, reduction="none")[valid].sum()
    return total / valid.sum().clamp(min=1)


def supcon(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1):
    """Supervised contrastive loss (Khosla et al. 2020), mean over anchors with a positive.

    For each anchor ``i``: ``-mean_{p in P(i)} log(exp(z_i.z_p / t) / sum_{a != i}
    exp(z_i.z_a / t))`` with ``P(i)`` the other crops of the same identity. Anchors with
    no positive in the batch (or no identity, label < 0) contribute nothing; a batch
    without any positive pair gives a zero loss that still has a gradient path, so
    training steps stay uniform. `embeddings` (N, D) should be L2-normalised.
    """
    z = embeddings.float()
    n = z.shape[0]
    labels = labels.reshape(-1).to(z.device)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    valid = labels >= 0
    pos = (labels[:, None] == labels[None, :]) & ~eye & valid[:, None] & valid[None, :]
    logits = (z @ z.T) / float(temperature)
    logits = logits.masked_fill(eye, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    n_pos = pos.sum(1)
    per_anchor = -(log_prob.masked_fill(~pos, 0.0)).sum(1) / n_pos.clamp(min=1)
    has = n_pos > 0
    return (per_anchor * has).sum() / has.sum().clamp(min=1)


def head_loss(
    head: Head, pred: torch.Tensor, target: torch.Tensor, hard_keypoint_mining: Any = None
) -> torch.Tensor:
    """Unweighted loss of one head output, as SLEAP compiles it.

    `hard_keypoint_mining` is a `HardKeypointMiningConfig` (or None); when its
    `online_mining` is true the OHKM term is added to the MSE of map heads.
    """
    if head.loss_function == "supcon":  # target: an identity index per crop
        return supcon(pred, target, head.temperature)
    if pred.shape != target.shape:
        raise ValueError(
            f"{head.name}: prediction has shape {tuple(pred.shape)} but the target has "
            f"{tuple(target.shape)}; the data pipeline and the model disagree on the "
            f"output stride or input size"
        )
    target = target.to(pred.dtype)
    if head.loss_function == "bce_dice":
        return bce_dice(
            pred, target, head.bce_weight, head.dice_weight, getattr(head, "bce_pos_weight", None)
        )
    if head.loss_function == "masked_smooth_l1":
        return masked_smooth_l1(pred, target)
    if head.loss_function == "categorical_crossentropy":
        return categorical_crossentropy(pred, target)
    if getattr(head, "loss_function", "mse") == "balanced_mse" and pred.dim() == 4:
        loss = balanced_mse(pred, target)
    else:
        loss = mse(pred, target)
    ohkm = hard_keypoint_mining
    if ohkm is not None and getattr(ohkm, "online_mining", False) and pred.dim() == 4:
        loss = loss + ohkm_loss(
            pred,
            target,
            hard_to_easy_ratio=ohkm.hard_to_easy_ratio,
            min_hard_keypoints=ohkm.min_hard_keypoints,
            max_hard_keypoints=ohkm.max_hard_keypoints,
            loss_scale=ohkm.loss_scale,
        )
    return loss


__all__ = [
    "KERAS_EPSILON",
    "balanced_mse",
    "bce_dice",
    "categorical_crossentropy",
    "channel_losses",
    "head_loss",
    "masked_smooth_l1",
    "mse",
    "ohkm_loss",
    "select_hard_keypoints",
    "supcon",
]
