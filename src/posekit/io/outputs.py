"""Check an output path before the work that fills it, not after.

A command that runs for an hour and then finds it cannot write its result has thrown the
hour away. `check_output_path` refuses, in microseconds and before any work starts, an
output whose suffix the writer does not produce, a folder given as a file, a path under
something that is not a folder, a folder without write permission, a read-only target,
and a path that is one of the command's own inputs (which writing would destroy). It
creates nothing: the writer (`posekit.io.atomic.atomic_path`) creates the folder later.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from posekit.errors import PosekitError

__all__ = ["check_output_path", "same_file"]


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file (`os.path.samefile` when both exist: links and
    other spellings count; else the resolved paths are compared)."""
    a, b = Path(a).expanduser(), Path(b).expanduser()
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _input_files(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Each input, and for a folder input (a model folder) the files directly in it."""
    files = []
    for p in map(Path, inputs):
        if p.is_dir():
            files.extend(f for f in p.iterdir() if f.is_file())
        else:
            files.append(p)
    return files


def check_output_path(
    path: str | os.PathLike,
    suffixes: Sequence[str],
    inputs: Iterable[str | os.PathLike] = (),
    what: str = "output",
) -> Path:
    """Refuse an output path that cannot (or must not) be written; return it as a Path.

    Args:
        path: where the command will write.
        suffixes: the endings the writer produces, e.g. ``(".slp",)`` or
            ``(".slp", ".analysis.h5")``; matched against the end of the file name.
        inputs: the command's input files and folders: the output may be none of them
            (nor any file directly inside an input folder).
        what: what is written, for messages ("predictions", ...).
    """
    out = Path(path).expanduser()
    name = out.name
    if not any(name.endswith(s) and len(name) > len(s) for s in suffixes):
        stem = name.split(".")[0] or "out"
        raise PosekitError(
            f"{what} path {str(out)!r}: {what} are written as {' or '.join(suffixes)}; "
            f"choose a name ending so, e.g. {str(out.with_name(stem + suffixes[0]))!r}"
        )
    if out.is_dir():
        raise PosekitError(
            f"{what} path {str(out)!r} is a folder; give a file name, e.g. "
            f"{str(out / ('predictions' + suffixes[0]))!r}"
        )
    for source in _input_files(inputs):
        if same_file(out, source):
            raise PosekitError(
                f"{what} path {str(out)!r} is an input of this command ({str(source)!r}); "
                f"writing there would replace it: choose another output path"
            )
    if out.exists() and not out.stat().st_mode & stat.S_IWUSR:
        raise PosekitError(
            f"{str(out)!r} is read-only, so posekit will not replace it; make it writable "
            "(chmod u+w) or choose another output path"
        )
    folder = out.parent
    while not folder.exists():
        if folder.is_symlink():  # a dangling link: nothing can be created below it
            break
        folder = folder.parent
    if not folder.is_dir():
        raise PosekitError(
            f"cannot write {what} to {str(out)!r}: {str(folder)!r} is not a folder; choose "
            "another output path"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        made = "" if folder == out.parent else f" (to create {str(out.parent)!r})"
        raise PosekitError(
            f"cannot write {what} to {str(out)!r}: no permission to write in folder "
            f"{str(folder)!r}{made}; choose another output path or ask for write access"
        )
    return out
