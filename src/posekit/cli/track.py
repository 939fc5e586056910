"""`posekit track PREDICTIONS -o TRACKED [--tracker ...] [--max-tracks N] ...`.

Also the home of the tracking options that `posekit predict` shares: the common ones
under short names (`--tracker`, `--max-tracks`, `--track-window`, `--similarity`,
`--match`) and every option of `posekit.tracking` under SLEAP's spelling
(`--tracking.<name>`, as `sleap-track` takes them). Unset options keep the library's
defaults, so the defaults are written once, in `posekit.tracking.options`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from posekit.tracking.options import MATCHERS, SIMILARITIES, TRACKERS, option_table

_SHORT = {
    "tracker": (
        "--tracker",
        "simple: match each frame to the last --track-window frames; flow: the same with "
        "points moved by optical flow (reads the video; the tracking extra); global: "
        "identities over the whole video for a known number of animals; kalman, bytetrack, "
        "ocsort: the SORT family on keypoints (Kalman motion; --tracking.max_age, "
        "det_thresh, inertia, delta_t); none: no tracks. "
        "Default: global with --max-tracks, else no tracking in predict and simple in track",
    ),
    "max_tracks": (
        "--max-tracks",
        "the number of animals: never more tracks than this, and extra instances are "
        "culled by score before matching (default: unlimited)",
    ),
    "track_window": ("--track-window", "frames back to look for a match (default: 5)"),
    "similarity": ("--similarity", "how instances are compared (default: instance)"),
    "match": ("--match", "greedy or hungarian assignment (default: greedy)"),
    "reid_model": (
        "--reid-model",
        "an embedding model folder: the global tracker also links tracklets by the animals' "
        "appearance (re-identification after long occlusions; reads the video frames)",
    ),
}
_CHOICES = {"tracker": TRACKERS, "similarity": SIMILARITIES, "match": MATCHERS}


def _type_of(default):
    if isinstance(default, bool):
        return str  # "true"/"false": the library parses booleans
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        return float
    return str


def add_tracking_arguments(p: argparse.ArgumentParser) -> None:
    """Every tracking option, each once: short names for the common ones, then SLEAP's."""
    group = p.add_argument_group("tracking (SLEAP's --tracking.<name> spellings accepted)")
    defaults = option_table()
    for name, (flag, text) in _SHORT.items():
        group.add_argument(
            flag,
            f"--tracking.{name}",
            dest=f"tracking__{name}",
            default=None,
            type=int if name in ("max_tracks", "track_window") else str,
            choices=_CHOICES.get(name),
            metavar="MODEL" if name == "reid_model" else None,
            help=text,
        )
    for name, default in defaults.items():
        if name in _SHORT:
            continue
        group.add_argument(
            f"--tracking.{name}",
            dest=f"tracking__{name}",
            default=None,
            type=_type_of(default),
            metavar="VALUE",
            help=f"see posekit.tracking.options (default: {default})",
        )


def tracking_options(args: argparse.Namespace) -> dict:
    """The tracking options the user set (name -> value); empty when none was given."""
    return {
        key[len("tracking__") :]: value
        for key, value in vars(args).items()
        if key.startswith("tracking__") and value is not None
    }


def wants_tracking(options: dict) -> bool:
    """Whether `posekit predict` should track: a tracker other than none, a count, or a
    re-ID model (which then asks for the count rather than being ignored)."""
    tracker = options.get("tracker")
    asked = bool(options.get("max_tracks") or options.get("reid_model"))
    return tracker not in (None, "none") or (tracker is None and asked)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "track", help="assign identities (tracks) to saved predictions, frame to frame"
    )
    p.add_argument("predictions", help="predictions file (.slp) to track")
    p.add_argument(
        "-o",
        "--output",
        default=None,
        help="tracked file, .slp (default: <PREDICTIONS>.tracked.slp beside the input)",
    )
    p.add_argument(
        "--keep-tracks",
        action="store_true",
        help="keep the tracks instances already have and assign only the untracked ones "
        "(default: every instance is re-assigned)",
    )
    add_tracking_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Read, track, write atomically, print what was found."""
    from posekit.data.labels import read_labels_file, save_labels
    from posekit.io.outputs import check_output_path
    from posekit.tracking import track

    source = Path(args.predictions)
    output = (
        Path(args.output)
        if args.output
        else source.with_name(source.name.removesuffix(".slp") + ".tracked.slp")
    )
    check_output_path(output, (".slp",), inputs=[source], what="tracked labels")
    labels = read_labels_file(source)
    options = tracking_options(args)
    if args.keep_tracks:
        options["keep_tracks"] = True
    tracked = track(labels, **options)
    save_labels(tracked, output)
    n_tracks = len({i.track.name for lf in tracked.labeled_frames for i in lf.instances if i.track})
    n_inst = sum(len(lf.instances) for lf in tracked.labeled_frames)
    print(
        f"Tracked {len(tracked.labeled_frames)} frames ({n_inst} instances) into {n_tracks} "
        f"tracks; {len(tracked.suggestions)} frames to check are saved as suggestions"
    )
    print(f"Wrote {output}")
    return 0
