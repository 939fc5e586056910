"""`import posekit` and `import posekit.config` stay light: no torch."""

from __future__ import annotations

import subprocess
import sys
import time


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_config_import_does_not_load_torch():
    out = _run(
        "import sys, posekit, posekit.config\n"
        "from posekit.config import TrainingJobConfig, load_config, SkeletonConfig\n"
        "TrainingJobConfig()\n"
        "print(sorted(m for m in ('torch', 'lightning', 'sleap_io', 'h5py') if m in sys.modules))"
    )
    assert out == "[]"


def test_import_time_reported(capsys):
    # Reported, not asserted: timings on a shared 2-core machine are noisy.
    times = []
    for _ in range(3):
        start = time.perf_counter()
        _run("import posekit")
        times.append(time.perf_counter() - start)
    with capsys.disabled():
        print(f"\n`python -c 'import posekit'` wall time: best {min(times) * 1000:.0f} ms")
