"""`posekit system` and `posekit.system_report()`: the machine report for bug reports."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import torch

import posekit
from posekit.model.system import EXTRAS, cpu_report

REPO = Path(__file__).resolve().parents[1]

#: A 2-core AMD EPYC with AVX2 and no AVX-512 (the machine of issue 22).
EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx avx2 fma bmi2 sha_ni
"""


def test_report_keys_and_values():
    report = posekit.system_report()
    assert set(report) == {
        "posekit",
        "python",
        "os",
        "torch",
        "cpu",
        "threads",
        "libraries",
        "extras",
    }
    assert report["posekit"]["version"] == posekit.__version__
    assert report["torch"]["version"] == torch.__version__
    assert report["torch"]["cuda_available"] == torch.cuda.is_available()
    assert len(report["torch"]["cuda_devices"]) == (
        torch.cuda.device_count() if torch.cuda.is_available() else 0
    )
    assert report["torch"]["num_threads"] == torch.get_num_threads()
    assert report["libraries"]["sleap-io"] == __import__("sleap_io").__version__
    assert set(report["extras"]) == set(EXTRAS)
    # torch is a core dependency, pytest runs this: the dev extra's pytest is seen
    assert report["extras"]["dev"]["packages"]["pytest"]["importable"]


def test_cpu_flags_from_cpuinfo_and_the_bf16_check(tmp_path, monkeypatch):
    import posekit.optimize

    path = tmp_path / "cpuinfo"
    path.write_text(EPYC)
    from posekit.optimize.autocast import Bf16Support

    no = Bf16Support(False, False, "this CPU cannot run bfloat16 here (mkldnn_convolution)")
    monkeypatch.setattr(posekit.optimize, "bf16_support", lambda: no)
    cpu = cpu_report(str(path))
    assert cpu["model"] == "AMD EPYC 7B13"
    assert cpu["flags"] == ["avx2", "fma"]  # no AVX-512, no AMX
    assert cpu["bf16_runs"] is False and cpu["bf16_native"] is False
    assert "mkldnn_convolution" in cpu["bf16_note"]
    yes = Bf16Support(True, True, "")
    monkeypatch.setattr(posekit.optimize, "bf16_support", lambda: yes)
    assert cpu_report(str(tmp_path / "missing"))["flags"] is None  # unknown, not empty
    report = cpu_report(str(path))
    assert report["bf16_runs"] is True and report["bf16_note"] is None


def test_extras_match_pyproject():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for name, requirements in extras.items():
        if name == "all":
            continue
        dists = {r.split(">")[0].split("=")[0].split("[")[0].strip() for r in requirements}
        assert set(EXTRAS[name]) == dists, name
    assert set(EXTRAS) == set(extras) - {"all"}


@pytest.mark.parametrize("as_json", [True, False])
def test_the_command(capsys, as_json):
    from posekit.cli import main

    assert main(["system", *(["--json"] if as_json else [])]) == 0
    out = capsys.readouterr().out
    if as_json:
        report = json.loads(out)
        assert report["torch"]["version"] == torch.__version__
        assert isinstance(report["cpu"]["bf16_runs"], bool)
    else:
        assert f"  version: {torch.__version__}" in out
        assert "bf16_runs: " in out and "extras:" in out
