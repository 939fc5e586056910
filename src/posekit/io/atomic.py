"""Atomic outputs: a reader (or a crash) sees the old file or the new one, never half.

Every file posekit writes (configs, predictions, checkpoints, pictures, exports, model
folders) goes through `atomic_path`: the writer fills a hidden temporary sibling in the
same folder (same filesystem, so the final `os.replace` is atomic), which is renamed over
the target only once it is complete, and removed if writing fails.

Permissions follow the user's umask, like every other tool (Python's `mkstemp` and
`mkdtemp` would make the file 0600 and the folder 0700, unreadable to a lab's
colleagues); a file that already exists keeps its mode.

A read-only target is never replaced: the user protected it, so writing fails with a
message instead.

Temporaries are named ``.<name>.posekit-tmp-<pid><suffix>``: a process killed while
writing (SIGKILL skips every cleanup) leaves one behind, and the next write of the same
target removes those whose process is gone (`remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "remove_stale_temporaries", "umask_mode", "write_text_atomic"]

_TMP_MARK = ".posekit-tmp-"


def umask_mode(directory: bool = False) -> int:
    """The mode a new file (0666) or folder (0777) gets under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's live process
        return True
    return True


def remove_stale_temporaries(target: str | os.PathLike) -> list[Path]:
    """Remove temporaries of `target` left by processes that no longer run.

    Returns the removed paths. Temporaries of live processes (another run writing the same
    file right now) are left alone.
    """
    target = Path(target)
    removed = []
    if not target.parent.is_dir():
        return removed
    for p in target.parent.glob(f".{target.name}{_TMP_MARK}*"):
        pid_text = p.name[len(f".{target.name}{_TMP_MARK}") :].split(".")[0].split("-")[0]
        if pid_text.isdigit() and _pid_alive(int(pid_text)) and int(pid_text) != os.getpid():
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_path(
    target: str | os.PathLike, suffix: str | None = None, directory: bool = False
) -> Iterator[Path]:
    """Yield a temporary path to write instead of `target`; rename it over `target` after.

    Args:
        target: the final file (or folder, with `directory=True`).
        suffix: the temporary's suffix (default the target's, so writers that pick the
            format from the suffix, such as sleap-io or matplotlib, keep working).
        directory: create the temporary as an empty folder and swap whole folders: an
            existing `target` folder is moved aside and deleted only after the new one is
            in place.

    If the body raises (or is interrupted) the temporary is removed and `target` is
    untouched.
    """
    target = Path(target)
    if target.exists() and not target.is_dir() and not target.stat().st_mode & stat.S_IWUSR:
        from posekit.errors import PosekitError

        raise PosekitError(
            f"{target} is read-only, so posekit will not replace it; make it writable "
            "(chmod u+w) or choose another output path"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    suffix = target.suffix if suffix is None else suffix
    tmp = target.with_name(f".{target.name}{_TMP_MARK}{os.getpid()}{'' if directory else suffix}")
    try:
        if directory:
            tmp.mkdir(mode=umask_mode(directory=True))
        yield tmp
        if directory:
            os.chmod(tmp, umask_mode(directory=True))
            if target.exists():
                old = target.with_name(f".{target.name}{_TMP_MARK}{os.getpid()}-old")
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        else:
            if not tmp.exists():
                raise FileNotFoundError(f"nothing was written to the temporary file {tmp}")
            mode = target.stat().st_mode & 0o777 if target.exists() else umask_mode()
            os.chmod(tmp, mode)
            os.replace(tmp, target)
    except BaseException:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(target: str | os.PathLike, text: str, fsync: bool = True) -> Path:
    """Write `text` (UTF-8) to `target` atomically; `fsync` also flushes it to disk."""
    target = Path(target)
    with atomic_path(target) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
    return target
