"""The time-to-accuracy curve's pure parts (benchmarks/time_to_accuracy.py): budgets,
merging results from several runs, the series the picture draws, the reaching split.
Training is the benchmark's job (minutes per point), not this file's."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared"


@pytest.fixture(scope="module")
def tta():
    """The benchmark module, loaded by path; its OMP_WAIT_POLICY default is undone."""
    before = os.environ.get("OMP_WAIT_POLICY")
    spec = importlib.util.spec_from_file_location(
        "tta", ROOT / "benchmarks" / "time_to_accuracy.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if before is None:
        os.environ.pop("OMP_WAIT_POLICY", None)
    return module


def _point(dataset, tool, minutes, **ev):
    return {"dataset": dataset, "tool": tool, "minutes": minutes, "models": {}, "eval": ev}


def _write(folder: Path, *points) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pts = {f"{p['dataset']} {p['tool']} {p['minutes']:g}": p for p in points}
    (folder / "results.json").write_text(json.dumps({"points": pts}))
    return folder


def test_budgets_parse_and_refuse(tta):
    assert tta.parse_budgets("2,4, 8,16,32") == [2.0, 4.0, 8.0, 16.0, 32.0]
    assert tta.parse_budgets("0.5") == [0.5]
    for bad in ("", "0,2", "two", "-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            tta.parse_budgets(bad)


def test_points_from_several_folders_merge(tta, tmp_path, capsys):
    a = _write(tmp_path / "a", _point("reaching", "posekit", 2, **{"dist.p50": 9.0}))
    b = _write(
        tmp_path / "b",
        _point("reaching", "posekit", 2, **{"dist.p50": 7.0}),  # a rerun replaces a's
        _point("reaching", "posekit", 8, **{"dist.p50": 4.5}),
        _point("reaching", "sleap-nn", 2, **{"dist.p50": None}),  # nothing found
        _point("flies", "sleap-nn", 4, **{"oks_voc.mAP": 0.1}),
    )
    points = tta.load_points([a, tmp_path / "missing", b])
    assert "missing" in capsys.readouterr().out
    assert len(points) == 4
    series = tta.curve_series(points)
    assert series["reaching"]["posekit"] == [(2, 7.0), (8, 4.5)]
    assert math.isnan(series["reaching"]["sleap-nn"][0][1])
    assert series["flies"] == {"sleap-nn": [(4, 0.1)]}


def test_plot_only_draws_one_panel_per_dataset(tta, tmp_path):
    from PIL import Image

    one = _write(tmp_path / "one", _point("flies", "posekit", 2, **{"oks_voc.mAP": 0.5}))
    assert tta.main(["--plot-only", "--out", str(one)]) == 0
    width_one = Image.open(one / "time_to_accuracy.png").size[0]
    two = _write(tmp_path / "two", _point("reaching", "posekit", 4, **{"dist.p50": 6.0}))
    png = tmp_path / "merged.png"
    assert tta.main(["--plot-only", "--out", str(two), "--merge", str(one), "--png", str(png)]) == 0
    assert Image.open(png).size[0] == 2 * width_one  # flies and reaching panels side by side
    with pytest.raises(SystemExit):  # nothing to draw: one argparse error line
        tta.main(["--plot-only", "--out", str(tmp_path / "empty")])


def test_reaching_split_is_the_readme_one(tta):
    if not (SHARED / "data" / "reaching" / "reaching.train.pkg.slp").exists():
        pytest.skip("../shared/data/reaching not present")
    train, test = tta.load_dataset("reaching", Path("unused"))
    assert (len(train), len(test)) == (44, 11)
    assert all(len(lf.user_instances) == 1 for lf in [*train, *test])
