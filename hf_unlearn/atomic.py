"""Write a folder atomically: into a temporary sibling first, then renamed into place.

A crash, a full disk or an exception midway never leaves a half-written folder where a complete one is expected: the
target is replaced only once everything was written, and the temporary folder is removed on failure. A process that
is killed cannot clean up, so temporary folders carry the writer's PID, and the next writer of the same target removes
those whose process is gone.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_directory", "atomic_write_text", "temporary_sibling_prefix"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def temporary_sibling_prefix(target: str | os.PathLike[str]) -> str:
    """The name prefix of this process's temporary folders beside ``target`` (``.<name>.pid<PID>.``); give it to
    ``tempfile`` for any scratch folder next to ``target`` so that :func:`atomic_directory` can clear it after a
    kill."""
    return f".{Path(target).name}.pid{os.getpid()}."


def _remove_dead_siblings(target: Path) -> None:
    """Remove temporary folders beside ``target`` left by processes that no longer run (killed mid-write)."""
    stem = f".{target.name}.pid"
    for path in target.parent.glob(f"{glob.escape(stem)}*"):
        pid = path.name[len(stem) :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it replaces ``target`` (an existing folder there is
    removed: callers decide beforehand whether that is allowed), on failure it is deleted."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_siblings(target)
    tmp = Path(tempfile.mkdtemp(prefix=temporary_sibling_prefix(target), dir=target.parent))
    try:
        yield tmp
        old = None
        if target.exists():  # moved aside first, so the target path is never missing for longer than two renames
            old = Path(tempfile.mkdtemp(prefix=temporary_sibling_prefix(target) + "old.", dir=target.parent))
            os.replace(target, old / target.name)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary sibling renamed into place; an interruption or a full disk
    leaves the previous file (or none) and no stray temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
