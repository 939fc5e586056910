"""Tracking options: SLEAP's names and defaults, posekit's additions, and the alias table.

SLEAP 1.4 exposes its tracker as ``--tracking.<name>`` options (``sleap-track``) and as
keyword arguments of ``Tracker.make_tracker_by_name``. posekit keeps those names so a SLEAP
user's settings carry over; `ALIASES` maps every spelling we accept (``tracking.max_tracks``,
``--tracking.max_tracks``, ``tracking.target_instance_count`` ...) to posekit's field, so a CLI
can pass SLEAP-style flags straight to `posekit.tracking.track`.

Where posekit's default differs from SLEAP's, the field's comment says why.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from posekit.errors import PosekitError, unknown_choice

TRACKERS = ("simple", "flow", "global", "kalman", "bytetrack", "ocsort", "none")
SIMILARITIES = ("instance", "centroid", "iou", "object_keypoint")
MATCHERS = ("greedy", "hungarian")
OKS_NORMALIZATIONS = ("all", "ref", "union")
IDENTITY_SOURCES = ("auto", "identity", "tracks", "none")


@dataclasses.dataclass(frozen=True)
class TrackingOptions:
    """Every tracking setting, validated. Build it with `resolve_options`."""

    # --- SLEAP's tracker options (same names and defaults as sleap.nn.tracking)
    tracker: str = "simple"
    similarity: str = "instance"
    match: str = "greedy"
    track_window: int = 5
    robust: float = 1.0  # quantile of a track's candidate similarities; 1 = max (SLEAP)
    min_new_track_points: int = 0
    min_match_points: int = 0
    img_scale: float = 1.0
    of_window_size: int = 21
    of_max_levels: int = 3
    max_tracks: int | None = None
    target_instance_count: int = 0  # 0: use max_tracks
    # SLEAP's default is False; posekit culls whenever a count is known (max_tracks or
    # target_instance_count), because matching more instances than animals can only
    # create spurious tracks.
    pre_cull_to_target: bool = True
    pre_cull_iou_threshold: float | None = None
    post_connect_single_breaks: bool = False
    clean_instance_count: int = 0
    clean_iou_threshold: float | None = None
    oks_errors: tuple[float, ...] | float | None = None
    oks_score_weighting: bool = False
    oks_normalization: str = "all"
    # --- posekit additions
    min_track_length: int = 0  # drop tracks seen in fewer frames (0: keep all)
    # Interpolate a track across gaps of up to this many frames; None: track_window when
    # the number of animals is known (a missing animal is then surely a missed detection),
    # else 0 (a vanished track may have been a false detection).
    fill_gaps: int | None = None
    # simple/flow: also match against each track's Kalman-predicted pose, so an animal
    # missed for a few frames is looked for where it went, not where it was
    kalman_candidates: bool = False
    # --- the SORT family (kalman, bytetrack, ocsort), their papers' defaults
    max_age: int = 30  # frames a track may go unseen before it ends (no max_tracks)
    det_thresh: float = 0.5  # bytetrack: detections below only continue tracks
    inertia: float = 0.2  # ocsort: cost per radian of turning away from the motion
    delta_t: int = 3  # ocsort: observations back for a track's direction
    keep_tracks: bool = False  # keep the input's tracks instead of re-assigning
    identity_source: str = "auto"  # where identity-class evidence comes from (global)
    # global: an `embedding` model folder whose identity vectors link tracklets across
    # long gaps (re-identification), and the nats a full mismatch (cos = -1) costs / 2
    reid_model: str | None = None
    reid_weight: float = 10.0
    n_suggestions: int = 20  # weakest identity decisions written as suggestions
    suggestion_min_separation: int = 10  # frames between two suggestions

    @property
    def gap_fill(self) -> int:
        """Frames of a gap to fill with interpolated poses (see `fill_gaps`)."""
        if self.fill_gaps is not None:
            return self.fill_gaps
        return self.track_window if self.instance_count else 0

    @property
    def instance_count(self) -> int:
        """The number of animals per frame, or 0 when unknown."""
        return int(self.max_tracks or self.target_instance_count or 0)


# SLEAP spellings (and posekit's own names, so any spelling round-trips) -> field name.
ALIASES: dict[str, str] = {
    **{f.name: f.name for f in dataclasses.fields(TrackingOptions)},
    # SLEAP's `sleap-track --tracking.<name>` options
    **{f"tracking.{f.name}": f.name for f in dataclasses.fields(TrackingOptions)},
    "tracking.kf_init_frame_count": "kf_init_frame_count",  # refused below, with a reason
    "tracking.max_tracking": "max_tracking",
    "tracking.save_shifted_instances": "save_shifted_instances",
    # sleap-nn's names for the same settings
    "window_size": "track_window",
    "candidates_method": "candidates_method",
    "track_matching_method": "match",
    "of_img_scale": "img_scale",
    "tracking.window_size": "track_window",
    "tracking.of_img_scale": "img_scale",
    "tracking.track_matching_method": "match",
}

# Accepted for compatibility, with what posekit does with them (see `resolve_options`).
_COMPAT_ONLY = {
    "max_tracking": "SLEAP needs it to switch max_tracks on; posekit caps whenever max_tracks "
    "is set, and max_tracking=False switches the cap off",
    "save_shifted_instances": "posekit always shifts each window frame straight to the "
    "current frame (one pyramid per frame, built once), so there is nothing to save",
    "candidates_method": "fixed_window without max_tracks, per-track queues with it",
    "kf_init_frame_count": "posekit's tracker='kalman' needs no initialisation frames (a new "
    "track's velocity starts unknown and is learnt as it goes); drop the option and pass "
    "tracker='kalman'",
}


def canonical_name(name: str) -> str:
    """posekit's field name for `name` in any accepted spelling (``--tracking.x`` included)."""
    key = name.lstrip("-").replace("-", "_")
    if key.startswith("tracking_"):
        key = "tracking." + key[len("tracking_") :]
    if key not in ALIASES:
        raise PosekitError(unknown_choice("tracking option", name, sorted(ALIASES), "option"))
    return ALIASES[key]


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        raise PosekitError(f"{name}={value!r} is not a yes/no value; use true or false")
    return bool(value)


def _as_optional_float(name: str, value: Any) -> float | None:
    if value is None or (isinstance(value, str) and value.strip() in ("", "none", "None")):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise PosekitError(f"{name}={value!r} is not a number") from None
    return None if out == 0 else out  # SLEAP's CLI uses 0 for "off"


def resolve_options(**options: Any) -> TrackingOptions:
    """Validated `TrackingOptions` from keyword options in any accepted spelling.

    Raises `PosekitError` naming the option and the fix for unknown names, impossible
    values (``max_tracks=0``, a negative window) and unknown choices.
    """
    fields = {f.name: f for f in dataclasses.fields(TrackingOptions)}
    values: dict[str, Any] = {}
    compat: dict[str, Any] = {}
    for raw_name, value in options.items():
        name = canonical_name(raw_name)
        if name in _COMPAT_ONLY:
            compat[name] = value
        else:
            values[name] = value

    if "kf_init_frame_count" in compat and int(compat["kf_init_frame_count"] or 0) > 0:
        raise PosekitError("tracking.kf_init_frame_count: " + _COMPAT_ONLY["kf_init_frame_count"])
    if "max_tracking" in compat and not _as_bool("max_tracking", compat["max_tracking"]):
        values["max_tracks"] = None

    tracker_named = values.get("tracker") is not None
    if not tracker_named:
        values.pop("tracker", None)
    for name in ("tracker", "similarity", "match", "oks_normalization", "identity_source"):
        if name in values:
            values[name] = str(values[name]).strip().lower()
    allowed = {
        "tracker": TRACKERS,
        "similarity": SIMILARITIES,
        "match": MATCHERS,
        "oks_normalization": OKS_NORMALIZATIONS,
        "identity_source": IDENTITY_SOURCES,
    }
    for name, choices in allowed.items():
        if name in values and values[name] not in choices:
            raise PosekitError(unknown_choice(name, values[name], choices, name.replace("_", " ")))

    for name in (
        "pre_cull_to_target",
        "post_connect_single_breaks",
        "oks_score_weighting",
        "keep_tracks",
        "kalman_candidates",
    ):
        if name in values:
            values[name] = _as_bool(name, values[name])
    for name in ("pre_cull_iou_threshold", "clean_iou_threshold"):
        if name in values:
            values[name] = _as_optional_float(name, values[name])

    if "max_tracks" in values and values["max_tracks"] is not None:
        mt = values["max_tracks"]
        if isinstance(mt, bool) or int(mt) != mt or int(mt) < 1:
            raise PosekitError(
                f"max_tracks={mt!r}: the number of animals must be a whole number >= 1; "
                "leave it unset (None) when the number is unknown"
            )
        values["max_tracks"] = int(mt)

    ints_min = {
        "track_window": 1,
        "min_new_track_points": 0,
        "min_match_points": 0,
        "of_window_size": 3,
        "of_max_levels": 0,
        "target_instance_count": 0,
        "clean_instance_count": 0,
        "min_track_length": 0,
        "fill_gaps": 0,
        "max_age": 1,
        "delta_t": 1,
        "n_suggestions": 0,
        "suggestion_min_separation": 0,
    }
    if "fill_gaps" in values and values["fill_gaps"] is None:
        del values["fill_gaps"]  # the default: decided by the number of animals
    for name, low in ints_min.items():
        if name in values:
            v = values[name]
            try:
                iv = int(v)
            except (TypeError, ValueError):
                raise PosekitError(f"{name}={v!r} is not a whole number") from None
            if iv != float(v) or iv < low:
                raise PosekitError(f"{name}={v!r}: must be a whole number >= {low}")
            values[name] = iv

    if "reid_model" in values and values["reid_model"] is not None:
        values["reid_model"] = str(values["reid_model"])
    for name in ("det_thresh", "inertia", "reid_weight"):
        if name in values:
            try:
                v = float(values[name])
            except (TypeError, ValueError):
                raise PosekitError(f"{name}={values[name]!r} is not a number") from None
            if not v >= 0:
                raise PosekitError(f"{name}={values[name]!r}: must be >= 0")
            values[name] = v
    for name in ("robust", "img_scale"):
        if name in values:
            v = float(values[name])
            if not (0 < v <= 1) or math.isnan(v):
                raise PosekitError(f"{name}={values[name]!r}: must be in (0, 1]")
            values[name] = v

    if "oks_errors" in values and values["oks_errors"] is not None:
        err = values["oks_errors"]
        if isinstance(err, str):
            err = [float(x) for x in err.split(",") if x.strip()] or None
        if err is not None:
            err = (float(err),) if isinstance(err, int | float) else tuple(float(e) for e in err)
            if any(e <= 0 for e in err):
                raise PosekitError(f"oks_errors={values['oks_errors']!r}: errors must be > 0 px")
        values["oks_errors"] = err

    unknown = set(values) - set(fields)
    assert not unknown, unknown  # every alias maps to a field or a compat name
    opts = TrackingOptions(**values)
    if not tracker_named and opts.max_tracks:
        # A known number of animals and no tracker named: the best posekit has for it.
        opts = dataclasses.replace(opts, tracker="global")
    if opts.tracker == "global" and not opts.max_tracks:
        raise PosekitError(
            "tracker='global' assigns a known number of identities; set max_tracks=N "
            "(the number of animals), or use tracker='simple' or 'flow'"
        )
    if opts.reid_model and opts.tracker != "global":
        raise PosekitError(
            f"reid_model links tracklets of the 'global' tracker, not {opts.tracker!r}; set "
            "max_tracks=N (the number of animals) and leave the tracker unset or 'global'"
        )
    return opts


def option_table() -> Mapping[str, Any]:
    """Default of every option by field name (for `--help` texts and docs)."""
    return {f.name: f.default for f in dataclasses.fields(TrackingOptions)}
