"""`posekit.io.atomic`: old or new file, never half; the user's umask; no stale temporaries."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from posekit.errors import PosekitError
from posekit.io.atomic import atomic_path, remove_stale_temporaries, write_text_atomic


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_new_files_and_folders_follow_the_umask(tmp_path, umask_022):
    f = write_text_atomic(tmp_path / "a.json", "{}")
    assert stat.S_IMODE(f.stat().st_mode) == 0o644
    with atomic_path(tmp_path / "model", directory=True) as d:
        (d / "w.bin").write_bytes(b"x")
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755
    assert (tmp_path / "model" / "w.bin").read_bytes() == b"x"


def test_an_existing_file_keeps_its_mode(tmp_path, umask_022):
    f = tmp_path / "a.txt"
    f.write_text("old")
    f.chmod(0o640)
    write_text_atomic(f, "new")
    assert f.read_text() == "new" and stat.S_IMODE(f.stat().st_mode) == 0o640


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(f) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert f.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_a_folder_is_swapped_whole(tmp_path):
    d = tmp_path / "best_model"
    d.mkdir()
    (d / "old.bin").write_bytes(b"old")
    with atomic_path(d, directory=True) as tmp:
        (tmp / "new.bin").write_bytes(b"new")
    assert sorted(p.name for p in d.iterdir()) == ["new.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_model"]


def test_a_read_only_output_is_not_replaced(tmp_path):
    f = tmp_path / "keep.slp"
    f.write_text("hand labels")
    f.chmod(0o444)
    with pytest.raises(PosekitError, match="read-only"):
        write_text_atomic(f, "predictions")
    assert f.read_text() == "hand labels"


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    """A SIGKILL skips every cleanup; the next write of the same target removes its debris."""
    target = tmp_path / "out.slp"
    code = (
        "import os, signal, sys\n"
        "from posekit.io.atomic import atomic_path\n"
        f"with atomic_path({str(target)!r}) as tmp:\n"
        "    tmp.write_bytes(b'')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode == -9
    debris = [p for p in tmp_path.iterdir() if p.name != "out.slp"]
    assert len(debris) == 1 and debris[0].name.startswith(".out.slp.posekit-tmp-")
    write_text_atomic(target, "done")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.slp"]
    assert remove_stale_temporaries(target) == []
