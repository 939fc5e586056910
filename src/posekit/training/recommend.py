"""`posekit train --auto`: training settings derived from the labels, the hardware and the time.

The recommender sets what depends on the data and the machine. Without a time budget it
leaves the architecture alone (the config chooses it); with one (`max_time`, the wall
clock the user grants to training) it also makes the network as cheap as the data allow
on a CPU, because there the budget, not the epoch count, decides how good the model gets.

Notation: (H, W) frame size; `a` the typical animal size (median over instances of the
longer bounding-box side of the instance's largest connected group of parts, frame
pixels: one view of an animal seen in a mirror or several cameras; the whole instance
where the skeleton is one group); `A` the largest instance; `n` the training
examples (frames, or instances for top-down models); `s` the input scaling; `B` the
budget in seconds. "Lean" means: a budget is given and the model trains on a CPU (on a
GPU ten minutes already buy tens of thousands of samples at the config's own size).

1. **Input scaling** (`data.preprocessing.input_scaling`):
   - centroid models only need to find animals. Without a budget ``s = min(1, 512 /
     max(H, W))`` but not below ``32 / a`` (animals stay >= 32 px). Lean: ``s = 24 / a``
     (but the frame stays >= 64 px): a 24 px animal is still an unmistakable blob, and
     the cost falls with the square of the scale (1024 px frames with 94 px flies: 0.25,
     16x cheaper than full size);
   - lean single-instance models: ``s = max(min(1, 512 / max(H, W), 56 / a), min(1, 48
     / a))``: the typical animal becomes ~56 px (never below 48 px, never enlarged) and
     the frame side at most 512 px. The step cost falls with ``s^2`` and on a shared
     2-core CPU a budget buys only a few hundred steps, so the animal is made as small
     as its parts stay apart (see rule 13 for the measurements on DeepLabCut's reaching
     example: 832 x 747 frames, 220 px animal);
   - other full-frame models (single instance without a budget, bottom-up): ``s =
     min(1, 1024 / max(H, W))`` but not below ``64 / a`` (parts stay resolvable); lean:
     512 and 48 px;
   - top-down models work on crops: ``s = 1`` unless the largest instance exceeds 512 px
     (lean: 256 px), then ``s = 512 / A`` (256 / A): fine parts need full resolution
     and crops are already small.
   `s` is rounded down to a multiple of 0.05 (at least 0.05), and never above 1.
2. **Backbone (lean, UNet and LEAP only; the family is kept)**: `filters` is capped at 16
   (cost grows with its square; 16 base filters learn confidence maps of one animal
   well). For a UNet, `max_stride` becomes the smallest of 8, 16, 32, ... (never above
   the config's) whose receptive field covers twice the typical animal at the model's
   scale: enough context to tell left from right, and each level dropped saves about a
   fifth of the compute. Receptive fields come from `posekit.summary`.
3. **Output stride and sigma (lean, centroid / centered-instance / single-instance
   heads)**: centroid maps need a pixel of at most a quarter animal: the largest power of
   two ``<= a s / 4``. Part maps: a pixel of at most 2 frame pixels, the largest power of
   two ``<= 2 s`` (at least 1); the 5 x 5 integral refinement localises inside a map
   pixel. On the flies (centered-instance model, test frames 1000-1499) stride 2
   reached a median error of 2.5-3.0 px in 10-minute runs on 2 idle cores; stride-4
   runs (5 minutes on shared cores, so fewer steps) stayed at 5.7-6.3 px, and stride 2
   in the same 5-minute setting reached 1.8 px. The backbone's output stride follows the
   head. `sigma` (in map pixels;
   posekit multiplies it by the stride) becomes 1.5, i.e. 3 frame px at stride 2.
   Lean single-instance maps instead get ~24 map pixels across the typical animal (the
   largest power of two ``<= a s / 24``, at most 4) and sigma 1.5 map px that the
   training starts at twice that width (rule 15): a whole-frame map holds ~1000x more
   background than peak, and narrow peaks from the first step (1.5 map px at stride 1,
   the part rule on the reaching frames, with plain MSE) left the model on the all-zero
   map for the whole budget; a constant 2.5 map px learned but localised worse (rule 15).
4. **Crop size** (top-down): SLEAP's automatic rule at that scale, i.e. ``A s`` plus
   `crop_size_detection_padding`, rounded up to a multiple of the backbone's max stride.
5. **Batch size**: on CPU 4 (per-sample speed hardly changes with the batch there, so
   small batches give the most updates per second). On a GPU the activation memory of
   one sample is estimated as ``160 bytes x pixels x filters`` and the batch is the
   largest power of two whose samples fit in half of the GPU's memory, between 2 and 64.
   Never more than the number of training examples.
6. **Learning rate**: without a budget ``1e-4 x sqrt(batch / 4)`` capped at 1e-3
   (SLEAP's 1e-4 is tuned for batch 4; Adam's step scales with the square root of the
   batch). With a budget 1e-3: a short run makes only hundreds to a few thousand
   updates and Adam at 1e-3 gets there several times faster than at 1e-4; rule 13's
   schedule lowers it over the budget.
7. **Epochs**:
   - without a budget one epoch is ``batches_per_epoch = clamp(ceil(n / batch), 50,
     200)`` steps and training should show each example about 300 times and at least
     20 000 samples, so ``epochs = clamp(ceil(max(300 n, 20000) / (batch x
     batches_per_epoch)), 10, 300)``;
   - with a budget the updates that fit are estimated as ``S = B x R / (3 F x batch)``
     (`F` forward GFLOPs per sample from `posekit.summary` at the chosen size, x3 for the
     backward pass; `R` the machine's sustained training GFLOP/s, `Hardware.train_gflops`,
     by default 15 per CPU core (30 with native bf16, see 12), 5000 for CUDA, 1000 for
     MPS; the 2 shared Xeon cores this was written on sustained 13-38 GFLOP/s in UNet
     training, depending on load). Epochs are cut to ``batches_per_epoch =
     clamp(round(S / 30), 10, 200)`` so about 30 validations (and chances to save the
     best model and lower the learning rate) happen in the budget, and little is lost
     when the clock stops mid-epoch. `epochs` is set to 3x the estimate (at least 10,
     at most 1000) only as a start: `BudgetPlan` (rule 13) measures the seconds per
     step after 10 steps, and the time of every epoch, and re-plans the epoch count so
     training ends at the epoch end nearest the budget (the GFLOP/s guess was off by
     2-5x on the shared CPU, and a plan made for heavier settings stopped a user's
     run at a quarter of the budget).
8. **Validation**: without a budget one pass over the validation set per epoch
   (`min_val_batches_per_epoch = 1`). With a budget at most ``max(2, batches_per_epoch
   // 4)`` batches (the same fixed batches every epoch, so losses compare), which keeps
   validation under ~10% of the time, and never more than one pass (estimated from
   `validation_fraction`).
9. **Schedule**: without a budget reduce-on-plateau with factor 0.5 and min LR 1e-8
   (SLEAP's). With a budget the plateau schedule is off (rule 13). Without a budget
   patience ``p = clamp(epochs // 20, 3, 10)``, cooldown ``max(1, p // 2)``, early
   stopping after ``2p + cooldown`` epochs without improvement (the learning rate is
   lowered at least once before training gives up). With a budget ``p = clamp(E // 6,
   3, 8)`` for the ``E`` estimated epochs (short epochs validate on a few batches, so
   the loss is noisy; with patience 3 of ~30 epochs the rate was halved while the loss
   was still falling steeply), cooldown 1, and no early stopping: the clock ends the run,
   and stopping on a noisy plateau would only waste time already granted.
10. **Rotation augmentation**: the labels' own turns plus 15 degrees at each end, and
    the full circle once the labelled poses turn over 150 degrees. How far they turn is
    measured without knowing the body plan: every instance is rotated onto the mean pose
    (generalised Procrustes over its visible nodes, `pose_rotations`) and `rotation_arc`
    is the smallest arc that holds all these angles. Overhead views of moving animals
    turn all the way (flies clip, training frames of the block split: 188 deg -> +-180);
    fixed views do not (DeepLabCut's reaching example, a side view in which only the
    hand moves: 116 deg). For a fixed view the range is +-15: the augmentation is added
    to the orientations the labels already show, so +-15 makes the training poses cover
    the labelled arc plus 15 degrees at each end (the previous rule, +-(arc / 2 + 15),
    covered arc / 2 more at each end, orientations the view never shows). Rotations the
    view never shows cost the budget dearly: on reaching, 240-s runs reached a median
    error of 20.6 px with +-180 and 6.3 px with +-15; 480-s runs 7.3 px with +-75 (the
    previous rule) and 5.3 px with +-15 (same recipe otherwise). The limit: labels must
    show the orientations the animals take; a clip whose labelled frames all face one
    way (the flies' frames 0-999: 26 deg) gets +-15 and then misses animals facing
    elsewhere; override `optimization.augmentation_config.rotation_*_angle` (e.g.
    +-180) in that case. A config that already rotates as widely keeps its own
    settings.
11. **Data loader workers**: none on machines with 2 cores or fewer, else cores - 1
    (<= 8).
12. **Precision**: ``bf16-mixed`` where the hardware runs bfloat16 natively (CPUs with
    AVX512-BF16/AMX, CUDA GPUs from Ampere on), else ``32-true``. Targets and losses stay
    float32; convolutions run in bf16. On the 2-core AMX CPU this was written on, a
    144 px centered-instance UNet step (batch 4, channels-last) ran at 33 samples/s in
    bf16 vs 18 in float32.

13. **The budgeted recipe (posekit-only; not config fields)**: `Recommendation.recipe`
    and `Recommendation.callbacks()`; train() adds the callbacks. A plain SLEAP config
    (no `--auto`, or `--auto` without `--max-time`) trains exactly as SLEAP would.
    - Loss `balanced_mse` (`posekit.training.losses`) on confidence-map heads: the
      error where the labels or the model put a peak, divided by the labels' peak mass,
      plus the background's mean error. With plain MSE the all-zero map scores within
      ~1e-4 of a perfect one, and every budgeted reaching run stayed there (val loss
      3.1e-5, flat, 0 of 11 test animals found).
    - Learning rate: 20 warm-up steps from lr/10, then cosine from 1e-3 to 1e-5 over
      the *time* of the budget (`BudgetPlan`), instead of plateau halving: on short,
      noisy validations the plateau rule halved the rate to 1e-8 long before the end.
    - Epochs re-planned from measured time (rule 7).
    Reaching (832 x 747, 44 training frames, 11 test frames), `--auto --max-time 480`
    on the shared 2-core CPU: before, 0 of 11 test animals found; with this recipe
    11/11, median 7.3 px, p90 23 px, OKS mAP 0.25 (736 steps; +-75 rotation by the
    previous rule 10); with +-15 rotation (rule 10 now) 11/11, 5.3 px, 11.3 px, 0.33.
    All runs are tabled in `recipe_NOTES.md` of the change that introduced this rule and
    `recipe2_NOTES.md` (issue 15, second round). Output stride 1 instead of 2 at the
    same scale (a 4 px map pixel) made steps ~1.7x dearer and measured worse: 6.6 px,
    p90 41 px (~470 steps). The no-config command (`posekit train --labels ... --auto
    --max-time 480`) chose single_instance and reached 11/11, 5.0 px, p90 24.6 px. Flies
    top-down (`benchmarks/time_to_accuracy.py`, block split, 5 + 5 min): 200/200 flies,
    median 0.97 px, p90 5.7 px, OKS mAP 0.66.

14. **Training crops (posekit-only, off: `TRAIN_CROPS`)**: a lean single-instance model
    can train on crops of ``max(2 a, A) s`` (rounded up to the max stride) that hold the
    animal at a random place, validating and predicting on whole frames (the network is
    fully convolutional), when the crop is at most 60% of the input. Measured on
    reaching (480 s, crops of 112 px in 208 x 192 inputs): 11/11 animals, median 5.9 px,
    p90 12.7 px, mAP 0.37, against 5.3 / 11.3 / 0.33 on whole frames; the validation loss
    on whole frames ended at 0.081 against 0.032 (the network never sees the far
    background), and the steps were hardly cheaper (~1000 vs 782 in the budget: a step's
    time goes to augmenting and resizing the 832 x 747 frame, which happens before the
    crop). Not a win as it stands; cropping before the augmentation would make the steps
    cheap, mixing in whole frames would show the background.

15. **Sigma schedule (posekit-only; budgeted confidence-map heads)**: the training targets
    start at ``SIGMA_START`` (2) x the config's sigma and narrow to it along a half cosine
    over the first ``SIGMA_UNTIL`` (half) of the budget (`SigmaSchedule`); validation
    always draws the config's sigma, so the best model is chosen on the final targets.
    A wide blob gives a fresh network signal over more of the map, and the narrow final
    peak localises. Flies top-down (`benchmarks/time_to_accuracy.py`, block split, 5 +
    5 min on 2 idle cores, the same centroid model, centered-instance runs only):
    constant sigma 1.5 map px: OKS mAP 0.770, median 0.73 px, p90 2.88 px; schedule 3.0
    -> 1.5: 0.804, 0.70, 2.40; schedule 3.0 -> 1.0 (sigma 1.0 override): 0.775, 0.60,
    2.41 (finer, more far misses). Horizontal flips with the L/R nodes as symmetries
    were tried on the same runs and lost (0.729): more variety than 5 minutes can learn.
    Reaching (`--auto --max-time 480`, no config, idle cores, with the single-pass warp
    of full frames): schedule 3.0 -> 1.5 map px: 11/11 animals, median 4.8 px, p90 10.3
    px, OKS mAP 0.40 (~2100 steps); the same at scale 0.35 (animal ~80 px, ~1000
    steps): 6.0 px, 12.6 px, 0.35. Before (constant 2.5, loaded cores): 5.0, 24.6, 0.33.

Every setting is returned as a dotted override with the reason for it. The user's own
overrides are passed in (`overrides=`): the plan is made with their values (a reason
says "your override"), and they are applied again after these and win.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from posekit.architectures.registry import BACKBONES
from posekit.training.hardware import Hardware, budget_seconds, detect_hardware
from posekit.training.label_stats import (
    _frame_channels,
    _frame_hw,
    _instance_sizes,
    animal_sizes,
    label_warnings,
    rotation_arc,
)

LEAN_FILTERS = 16
LEAN_SIGMA = 1.5
#: Lean single-instance models: typical animal size in model-input pixels (rule 1).
LEAN_ANIMAL_PX = 56.0
#: Lean single-instance models: map pixels across the typical animal (rule 3).
LEAN_MAP_PIXELS_PER_ANIMAL = 24.0
#: Lean single-instance sigma in map pixels (rule 3; rule 15 starts training wider).
SINGLE_SIGMA = 1.5
BUDGET_WARMUP_STEPS = 20
#: Rule 14 (training crops) is off: measured no better on reaching (see the docstring).
TRAIN_CROPS = False
#: Lean single-instance training crops: side in typical animals, >= the largest (rule 14) ...
TRAIN_CROP_ANIMALS = 2.0
#: ... used only when the crop is at most this fraction of the model's input.
TRAIN_CROP_MAX_AREA = 0.6
#: Rule 15 (budgeted confidence maps): training sigma starts at this multiple of the
#: config's and narrows to it over the first SIGMA_UNTIL of the budget (None: off).
SIGMA_START: float | None = 2.0
SIGMA_UNTIL = 0.5
#: Degrees of rotation augmentation beyond what the labelled poses show (rule 10).
ROTATION_MARGIN = 15.0
BUDGET_LR_FLOOR = 0.01
BUDGET_EPOCHS = 30
BUDGET_LR = 1e-3


@dataclass
class Recommendation:
    """Dotted config overrides and why each was chosen.

    `plan` holds the budget arithmetic of a budgeted recommendation (forward GFLOPs per
    sample, estimated steps and epochs), empty otherwise.
    """

    overrides: dict[str, Any] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    num_workers: int = 0
    precision: str = "32-true"
    plan: dict[str, float] = field(default_factory=dict)
    #: posekit-only training settings that are not config fields (rule 13): "loss",
    #: "lr_schedule", "warmup_steps", "lr_floor_ratio", "budget_s". Empty: SLEAP's ways.
    recipe: dict[str, Any] = field(default_factory=dict)
    #: The user's own overrides: the plan is made with these values (they win).
    fixed: dict[str, Any] = field(default_factory=dict)
    #: What the labels lack or do oddly (`label_warnings`); training still runs.
    warnings: list[str] = field(default_factory=list)

    def set(self, key: str, value: Any, reason: str) -> Any:
        """Record a setting; returns the value in force (the user's, when they set it)."""
        if key in self.fixed:
            picked = f"; --auto would pick {value!r}" if reason else ""
            value, reason = self.fixed[key], f"your override{picked}"
        self.overrides[key] = value
        self.reasons[key] = reason
        return value

    def describe(self) -> str:
        lines = [f"  {k} = {v!r}  ({self.reasons.get(k, '')})" for k, v in self.overrides.items()]
        lines.append(f"  num_workers = {self.num_workers}")
        lines.append(f"  precision = {self.precision}")
        lines.extend(f"  warning: {w}" for w in self.warnings)
        if self.recipe:
            lines.append("  recipe: " + ", ".join(f"{k}={v}" for k, v in self.recipe.items()))
        if self.plan:
            lines.append("  plan: " + ", ".join(f"{k}={v:.4g}" for k, v in self.plan.items()))
        return "\n".join(lines)

    def callbacks(self) -> list[Any]:
        """Lightning callbacks that carry out `recipe` (none for SLEAP's ways)."""
        from posekit.training.budget import BudgetPlan, RecipeLoss, SigmaSchedule, TrainCrop

        out: list[Any] = []
        if self.recipe.get("loss") not in (None, "mse"):
            out.append(RecipeLoss(self.recipe["loss"]))
        if self.recipe.get("train_crop"):
            out.append(TrainCrop(int(self.recipe["train_crop"])))
        if self.recipe.get("sigma_start") and self.recipe.get("budget_s"):
            out.append(
                SigmaSchedule(
                    float(self.recipe["budget_s"]),
                    start=float(self.recipe["sigma_start"]),
                    until=float(self.recipe.get("sigma_until", 0.5)),
                )
            )
        if self.recipe.get("budget_s"):
            out.append(
                BudgetPlan(
                    float(self.recipe["budget_s"]),
                    warmup_steps=int(self.recipe.get("warmup_steps", 0)),
                    floor_ratio=float(self.recipe.get("lr_floor_ratio", 0.01)),
                    schedule_lr=self.recipe.get("lr_schedule") == "budget_cosine",
                    replan_epochs=bool(self.recipe.get("replan_epochs", True)),
                )
            )
        return out


def _round_scale(s: float) -> float:
    s = min(1.0, s)
    return round(max(0.05, math.floor(s / 0.05 + 1e-9) * 0.05), 2)


def _pow2_floor(x: float, low: int = 1) -> int:
    return max(int(low), 2 ** int(math.floor(math.log2(max(x, 1e-9)))))


def _backbone_filters(config: Any) -> int:
    chosen = config.model.backbone.which_oneof()
    for name in ("filters", "stem_filters", "decoder_filters"):
        value = getattr(chosen, name, None)
        if value:
            return int(value)
    return 64


def _max_stride(config: Any) -> int:
    chosen = config.model.backbone.which_oneof()
    return int(getattr(chosen, "max_stride", 32) or 32)


def _summary(config: Any, overrides: dict[str, Any], hw_in: tuple[int, int, int]) -> dict:
    from posekit.config.overrides import apply_overrides
    from posekit.model.summary import summary

    return summary(apply_overrides(config, overrides), hw_in)


def _lean_receptive_field(
    config: Any,
    overrides: dict[str, Any],
    head_key: str,
    out_stride: int,
    need: float,
    channels: int,
    backbone_name: str,
) -> tuple[int, float]:
    """Smallest max stride (>= 8, <= the config's) whose receptive field >= `need`."""
    limit = _max_stride(config)
    ms = min(8, limit)
    while True:
        os_ = max(1, min(out_stride, ms // 2))
        trial = dict(overrides)
        trial.update(
            {
                f"model.backbone.{backbone_name}.max_stride": ms,
                f"model.backbone.{backbone_name}.output_stride": os_,
                f"{head_key}.output_stride": os_,
            }
        )
        side = 4 * ms
        rf = float(_summary(config, trial, (side, side, channels))["receptive_field"])
        if rf >= need or ms >= limit:
            return ms, rf
        ms *= 2


def recommend(
    config: Any,
    labels: Any,
    hardware: Hardware | None = None,
    max_time: Any = None,
    overrides: Any = None,
) -> Recommendation:
    """Settings for training `config` on `labels` (`PoseLabels`) on `hardware`.

    `max_time`: the wall-clock training budget (seconds, timedelta, "DD:HH:MM:SS"); with
    one the recommendation is planned for that time (see the module docstring).
    `overrides`: the user's own dotted overrides (list of ``key=value`` or dict). The plan
    is made *with* them: a setting the user fixed keeps the user's value, and everything
    that depends on it (cost per sample, epoch length, crop size) is computed from it.
    """
    from posekit.config.overrides import apply_overrides, parse_overrides
    from posekit.data.instance_cropping import find_instance_crop_size
    from posekit.model import registry

    hw = hardware or detect_hardware()
    budget = budget_seconds(max_time)
    lean = budget is not None and hw.kind == "cpu"
    fixed = parse_overrides(overrides)
    if fixed:
        config = apply_overrides(config, fixed)
    rec = Recommendation(fixed=dict(fixed))
    rec.warnings = label_warnings(labels)
    model_type = config.model.heads.which_oneof_attrib_name()
    kind = registry.model_type(model_type)
    backbone_name = config.model.backbone.which_oneof_attrib_name()
    h, w = _frame_hw(labels)
    channels = _frame_channels(labels)
    # crops must hold the whole instance; the scale and the maps follow the animal's body
    # (one view of it, where the skeleton is split into views: see `animal_sizes`)
    largest = float(_instance_sizes(labels).max())
    typical = float(np.median(animal_sizes(labels)))

    # 1. input scaling
    if kind.crops:
        cap = 256.0 if lean else 512.0
        s = 1.0 if largest <= cap else cap / largest
        why = f"top-down crops: full resolution unless instances exceed {cap:.0f} px"
    elif not kind.needs_part_names:  # centroids
        if lean:
            s = min(1.0, max(24.0 / typical, 64.0 / max(h, w)))
            why = f"CPU budget: animals ({typical:.0f} px) -> 24 px, cost ~ scale^2"
        else:
            s = max(min(1.0, 512.0 / max(h, w)), 32.0 / typical)
            why = f"centroids: frame side -> <=512 px, animals ({typical:.0f} px) kept >= 32 px"
    elif lean and model_type == "single_instance":
        s = max(min(1.0, 512.0 / max(h, w), LEAN_ANIMAL_PX / typical), min(1.0, 48.0 / typical))
        why = (
            f"CPU budget: animals ({typical:.0f} px) -> ~{LEAN_ANIMAL_PX:.0f} px, frame side "
            f"<= 512 px, animals never below 48 px"
        )
    else:
        side, floor = (512.0, 48.0) if lean else (1024.0, 64.0)
        s = max(min(1.0, side / max(h, w)), floor / typical)
        why = f"frame side -> <={side:.0f} px, animals ({typical:.0f} px) kept >= {floor:.0f} px"
    s = float(rec.set("data.preprocessing.input_scaling", _round_scale(s), why))

    # 2-3. lean backbone, output stride and sigma
    stride = _max_stride(config)
    shrinks = BACKBONES[backbone_name].auto_shrinks if backbone_name else ()
    if lean and "filters" in shrinks:
        filters = int(getattr(config.model.backbone.which_oneof(), "filters", LEAN_FILTERS))
        if filters > LEAN_FILTERS:
            rec.set(
                f"model.backbone.{backbone_name}.filters",
                LEAN_FILTERS,
                f"CPU budget: {filters} -> {LEAN_FILTERS} filters, cost ~ filters^2",
            )
    # The lean rules set the stride and sigma of one confidence-map head: a head config
    # that holds them itself (not in `confmaps`/`pafs`/... sections).
    if lean and hasattr(config.model.heads.which_oneof(), "sigma"):
        head_key = f"model.heads.{model_type}"
        sigma, sigma_why = (
            LEAN_SIGMA,
            "map px: a 7x7 patch of signal, nearly unbiased 5x5 refinement",
        )
        if not kind.needs_part_names:
            os_ = _pow2_floor(typical * s / 4.0)
            why = f"a map pixel <= a quarter animal ({typical * s:.0f} px at scale {s})"
        elif model_type == "single_instance":
            os_ = min(4, _pow2_floor(typical * s / LEAN_MAP_PIXELS_PER_ANIMAL))
            why = (
                f"~{LEAN_MAP_PIXELS_PER_ANIMAL:.0f} map px per animal ({typical * s:.0f} px "
                f"at scale {s}); refinement localises inside a map pixel"
            )
            sigma, sigma_why = SINGLE_SIGMA, "map px; training starts twice as wide (rule 15)"
        else:
            os_ = _pow2_floor(2.0 * s)
            why = "a map pixel <= 2 frame px; refinement localises inside it"
        if f"{head_key}.output_stride" in rec.fixed:
            os_ = int(rec.fixed[f"{head_key}.output_stride"])
        if "max_stride" in shrinks:
            need = 2.0 * typical * s
            ms, rf = _lean_receptive_field(
                config, dict(rec.overrides), head_key, os_, need, channels, backbone_name
            )
            os_ = max(1, min(os_, ms // 2))
            if ms != stride or f"model.backbone.{backbone_name}.max_stride" in rec.fixed:
                ms = int(
                    rec.set(
                        f"model.backbone.{backbone_name}.max_stride",
                        ms,
                        f"receptive field {rf:.0f} px >= 2 x animal ({need:.0f} px)",
                    )
                )
            stride = ms
        backbone_cfg = config.model.backbone.which_oneof()
        if hasattr(backbone_cfg, "output_stride"):
            os_ = max(1, min(os_, stride))
            os_ = int(rec.set(f"model.backbone.{backbone_name}.output_stride", os_, why))
            rec.set(f"{head_key}.output_stride", os_, "the backbone's output stride")
            rec.set(f"{head_key}.sigma", sigma, sigma_why)

    # 4. crop size / model input size
    if kind.crops:
        padding = int(config.data.instance_cropping.crop_size_detection_padding)
        crop = find_instance_crop_size(
            labels.all_points(), padding=padding, maximum_stride=stride, input_scaling=s
        )
        crop = int(
            rec.set(
                "data.instance_cropping.crop_size",
                crop,
                f"largest instance {largest:.0f} px x {s} + {padding}, to a multiple of {stride}",
            )
        )
        in_h = in_w = crop
        n_examples = int(labels.n_instances)
    else:
        in_h = math.ceil(int(h * s) / stride) * stride
        in_w = math.ceil(int(w * s) / stride) * stride
        n_examples = len(labels)
    n_examples = max(n_examples, 1)
    train_crop = None
    if TRAIN_CROPS and lean and model_type == "single_instance":  # rule 14 (off)
        side = max(TRAIN_CROP_ANIMALS * typical, largest) * s
        c = int(math.ceil(side / stride) * stride)
        if c * c <= TRAIN_CROP_MAX_AREA * in_h * in_w:
            train_crop = c
            in_h, in_w = min(c, in_h), min(c, in_w)  # the training step's cost

    # 5. batch size
    if hw.kind == "cuda" and hw.memory_bytes:
        filters = int(rec.overrides.get(f"model.backbone.{backbone_name}.filters", 0)) or (
            _backbone_filters(config)
        )
        per_sample = 160.0 * in_h * in_w * filters
        fit = max(1.0, 0.5 * hw.memory_bytes / per_sample)
        batch = int(min(64, max(2, 2 ** int(math.floor(math.log2(fit))))))
        why = f"~{per_sample / 2**20:.0f} MiB/sample in half of {hw.memory_bytes / 2**30:.0f} GiB"
    else:
        batch, why = 4, f"{hw.kind}: small batches give the most updates per second"
    if batch > n_examples:
        batch = max(1, 2 ** int(math.floor(math.log2(n_examples))))
        why += f"; capped by {n_examples} training examples"
    batch = int(rec.set("optimization.batch_size", batch, why))

    # 6. learning rate
    if budget is not None:
        rec.set(
            "optimization.initial_learning_rate",
            BUDGET_LR,
            "time budget: few updates, a high rate that the schedule lowers",
        )
    else:
        lr = float(min(1e-3, 1e-4 * math.sqrt(batch / 4.0)))
        rec.set("optimization.initial_learning_rate", float(f"{lr:.3g}"), "1e-4 x sqrt(batch / 4)")

    # 7-8. epochs and validation
    if budget is None:
        bpe = int(min(200, max(50, math.ceil(n_examples / batch))))
        samples = max(300 * n_examples, 20000)
        epochs = int(min(300, max(10, math.ceil(samples / (batch * bpe)))))
        rec.set("optimization.batches_per_epoch", bpe, "ceil(n / batch) within [50, 200]")
        epochs = int(
            rec.set(
                "optimization.epochs",
                epochs,
                f"~{samples} samples ({n_examples} examples x 300, >= 20000)",
            )
        )
        rec.set("optimization.val_batches_per_epoch", None, "one pass over the validation set")
        rec.set("optimization.min_val_batches_per_epoch", 1, "one pass over the validation set")
        est_epochs = float(epochs)
    else:
        gflops = float(_summary(config, rec.overrides, (in_h, in_w, channels))["gflops"])
        rate = hw.gflops()
        steps = budget * rate / (3.0 * gflops * batch)
        bpe = int(min(200, max(10, round(steps / BUDGET_EPOCHS))))
        bpe = int(
            rec.set(
                "optimization.batches_per_epoch",
                bpe,
                f"~{steps:.0f} steps fit in {budget:.0f} s ({gflops:.2f} GFLOPs/sample at "
                f"{rate:.0f} GFLOP/s): ~{BUDGET_EPOCHS} epochs",
            )
        )
        est_epochs = max(1.0, steps / bpe)
        epochs = int(min(1000, max(10, math.ceil(3 * est_epochs))))
        rec.plan = {
            "budget_s": budget,
            "gflops_per_sample": gflops,
            "train_gflops_per_s": rate,
            "est_steps": steps,
            "est_epochs": est_epochs,
        }
        rec.set(
            "optimization.epochs",
            epochs,
            "3x the estimate; re-planned from the measured step time after 10 steps",
        )
        fraction = float(config.data.labels.validation_fraction or 0.1)
        n_val = max(1.0, n_examples * fraction / max(1e-6, 1.0 - fraction))
        val_batches = int(min(math.ceil(n_val / batch), max(2, bpe // 4)))
        rec.set(
            "optimization.val_batches_per_epoch",
            max(1, val_batches),
            "<= 1/4 of the training batches, at most one pass",
        )
        rec.set("optimization.min_val_batches_per_epoch", 1, "validate every epoch")

    # 9. schedule
    lrs = "optimization.learning_rate_schedule"
    if budget is None:
        patience = int(min(10, max(3, epochs // 20)))
        cooldown = max(1, patience // 2)
        plateau = bool(rec.set(f"{lrs}.reduce_on_plateau", True, "Keras/SLEAP plateau"))
    else:
        patience = int(min(8, max(3, int(est_epochs) // 6)))
        cooldown = 1
        plateau = bool(
            rec.set(
                f"{lrs}.reduce_on_plateau",
                False,
                "time budget: warm-up, then cosine to 1% of the rate by the end of the budget",
            )
        )
    if plateau:
        rec.set(f"{lrs}.reduction_factor", 0.5, "halve on plateau")
        rec.set(
            f"{lrs}.plateau_patience",
            patience,
            "epochs // 20 in [3, 10]" if budget is None else "estimated epochs // 6 in [3, 8]",
        )
        rec.set(
            f"{lrs}.plateau_cooldown",
            cooldown,
            "patience // 2" if budget is None else "react quickly in a short run",
        )
        rec.set(f"{lrs}.min_learning_rate", 1e-8, "SLEAP default")
    if budget is None:
        rec.set("optimization.early_stopping.stop_training_on_plateau", True, "stop when flat")
        rec.set(
            "optimization.early_stopping.plateau_patience",
            2 * patience + cooldown,
            "lets the learning rate drop at least once first",
        )
    else:
        rec.set(
            "optimization.early_stopping.stop_training_on_plateau",
            False,
            "the clock ends the run",
        )

    # 13. posekit-only recipe of budgeted runs (not config fields; see rule 13)
    if budget is not None:
        rec.recipe = {
            "loss": "balanced_mse",
            "lr_schedule": "plateau" if plateau else "budget_cosine",
            "warmup_steps": BUDGET_WARMUP_STEPS,
            "lr_floor_ratio": BUDGET_LR_FLOOR,
            "budget_s": budget,
            "replan_epochs": "optimization.epochs" not in rec.fixed,
        }
        if train_crop is not None:
            rec.recipe["train_crop"] = train_crop
        if SIGMA_START is not None and hasattr(config.model.heads.which_oneof(), "sigma"):
            rec.recipe["sigma_start"] = SIGMA_START
            rec.recipe["sigma_until"] = SIGMA_UNTIL

    # 10. rotation
    augmentation = config.optimization.augmentation_config
    span = float(augmentation.rotation_max_angle) - float(augmentation.rotation_min_angle)
    arc = rotation_arc(labels)
    angle = 180.0
    why = "animals may face any direction (overhead view)"
    if arc is not None:
        # The augmentation adds to the turns the labels already show: +-margin makes the
        # training poses cover the labelled arc plus the margin at each end.
        if arc / 2.0 + ROTATION_MARGIN < 90.0:
            angle = ROTATION_MARGIN
            why = (
                f"labelled poses turn over {arc:.0f} deg (fixed view): +-{ROTATION_MARGIN:.0f} "
                f"beyond them"
            )
        else:
            why = f"labelled poses turn over {arc:.0f} deg: animals face every direction"
    if not (augmentation.rotate and span >= 2.0 * angle):
        aug = "optimization.augmentation_config"
        rec.set(f"{aug}.rotate", True, why)
        rec.set(f"{aug}.rotation_min_angle", -angle, why)
        rec.set(f"{aug}.rotation_max_angle", angle, why)

    # 11. loader workers
    rec.num_workers = 0 if hw.cpu_count <= 2 else min(8, hw.cpu_count - 1)

    # 12. precision
    if hw.bf16:
        rec.precision = "bf16-mixed"
    # the user's other overrides are part of the plan too (listed with the rest)
    for key, value in rec.fixed.items():
        if key not in rec.overrides:
            rec.set(key, value, "")
    return rec


__all__ = ["Recommendation", "recommend"]
