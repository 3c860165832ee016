"""Atomic writes: a failure leaves nothing half-written, and a killed writer's temporary folders are cleared by the
next writer of the same target (and only those)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from hf_unlearn.atomic import atomic_directory, atomic_write_text, temporary_sibling_prefix


def test_a_failed_write_leaves_the_previous_folder(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("disk full")
    assert (target / "a.txt").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


@pytest.mark.slow
def test_a_killed_writer_leaves_folders_that_the_next_writer_removes(tmp_path):
    target = tmp_path / "model"
    script = textwrap.dedent(
        f"""
        import os, signal, tempfile
        from hf_unlearn.atomic import atomic_directory, temporary_sibling_prefix
        with atomic_directory({str(target)!r}) as tmp:
            (tmp / "weights").write_text("partial")
            tempfile.mkdtemp(prefix=temporary_sibling_prefix({str(target)!r}) + "work.", dir={str(tmp_path)!r})
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup runs
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], check=False)
    assert proc.returncode == -signal.SIGKILL
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == 2 and not (target).exists()  # the write and the scratch folder, both left behind
    mine = tmp_path / f"{temporary_sibling_prefix(target)}busy"  # a live process's folder (this one) is kept
    mine.mkdir()
    other = tmp_path / ".model-2.pid1.x"  # another target's folder is not this writer's to remove
    other.mkdir()
    with atomic_directory(target) as tmp:
        (tmp / "weights").write_text("complete")
    assert (target / "weights").read_text() == "complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model", mine.name, other.name])


def test_atomic_write_text_leaves_no_temporary_file_on_failure(tmp_path, monkeypatch):
    path = atomic_write_text(tmp_path / "r.json", "old")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OSError, match="No space"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["r.json"]
