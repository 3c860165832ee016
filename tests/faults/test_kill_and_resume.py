"""Fault injection on training: a run killed between steps, killed while a checkpoint is being written, and killed
with SIGKILL at a random moment is resumed with ``--resume_from_checkpoint true`` and ends with the weights of the
uninterrupted run."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from safetensors.torch import load_file

from ..test_recipe import ROOT, _config

pytestmark = pytest.mark.faults  # fault injection: kills, full disk (subprocesses)

# Runs the recipe, dying (os._exit, like a kill) at checkpoint KILL_AT_STEP: mid-way through writing its
# trainer_state.json (the Trainer's last file of a checkpoint) or right after the checkpoint is complete.
WRAPPER = textwrap.dedent(
    """
    import os, sys
    from transformers.trainer_callback import TrainerState
    step, mode = int(os.environ.get("KILL_AT_STEP", "0")), os.environ.get("KILL_MODE", "")
    original = TrainerState.save_to_json

    def save_to_json(self, path):
        if self.global_step == step and mode == "during_save":
            with open(path, "w") as fh:
                fh.write('{"global_step": ')
            os._exit(137)
        original(self, path)
        if self.global_step == step and mode == "after_save":
            os._exit(137)

    TrainerState.save_to_json = save_to_json
    if mode == "enospc":  # no mountable small filesystem: a full disk while the optimizer state is being written
        import errno, torch
        real_save = torch.save

        def torch_save(obj, f, *args, **kwargs):
            if str(f).endswith(f"checkpoint-{step}/optimizer.pt"):
                with open(f, "wb") as fh:
                    fh.write(b"PK\x03\x04 half")
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_save(obj, f, *args, **kwargs)

        torch.save = torch_save
    from hf_unlearn.scripts.unlearn import main
    main(sys.argv[1:])
    """
)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _config_for(tmp_path, tiny_model_dir, name):
    (tmp_path / name).mkdir(parents=True, exist_ok=True)
    return _config(
        tmp_path / name,
        tiny_model_dir,
        output_dir=str(tmp_path / name / "run"),
        max_steps=5,
        save_strategy="steps",
        save_steps=1,
        evaluate=False,
        seed=11,
    )


def _run(cfg, *extra, env=None):
    (cfg.parent / "w.py").write_text(WRAPPER)
    return subprocess.run(
        [sys.executable, str(cfg.parent / "w.py"), "--config", str(cfg), *extra],
        capture_output=True,
        text=True,
        timeout=300,
        env=env or ENV,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_model_dir_module):
    tmp = tmp_path_factory.mktemp("full")
    cfg = _config_for(tmp, tiny_model_dir_module, "full")
    proc = _run(cfg)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return load_file(tmp / "full" / "run" / "model.safetensors")


@pytest.fixture(scope="module")
def tiny_model_dir_module(tmp_path_factory, chat_tokenizer):
    from ..conftest import make_tiny_llama

    path = tmp_path_factory.mktemp("model") / "tiny-llama"
    make_tiny_llama(chat_tokenizer).save_pretrained(path)
    chat_tokenizer.save_pretrained(path)
    return path


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("mode", ["during_save", "after_save"])
def test_killed_run_resumes_to_the_uninterrupted_weights(tmp_path, tiny_model_dir_module, uninterrupted, mode):
    cfg = _config_for(tmp_path, tiny_model_dir_module, mode)
    killed = _run(cfg, env={**ENV, "KILL_AT_STEP": "3", "KILL_MODE": mode})
    assert killed.returncode == 137
    out = tmp_path / mode / "run"
    refused = _run(cfg)  # a plain re-run must not clobber the interrupted run
    assert refused.returncode != 0 and "interrupted run" in refused.stderr
    resumed = _run(cfg, "--resume_from_checkpoint", "true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected = "checkpoint-2" if mode == "during_save" else "checkpoint-3"
    assert f"resuming from {out / expected}" in resumed.stdout + resumed.stderr
    if mode == "during_save":
        assert "checkpoint-3 was not completely written" in resumed.stdout + resumed.stderr
    _assert_same(load_file(out / "model.safetensors"), uninterrupted)


def test_sigkill_at_a_random_moment(tmp_path, tiny_model_dir_module, uninterrupted):
    cfg = _config_for(tmp_path, tiny_model_dir_module, "sigkill")
    (cfg.parent / "w.py").write_text(WRAPPER)
    delay = random.Random(os.getpid()).uniform(4.0, 9.0)  # loading takes ~4 s here; training ~1-2 s
    proc = subprocess.Popen(
        [sys.executable, str(cfg.parent / "w.py"), "--config", str(cfg)],
        env=ENV,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    out = tmp_path / "sigkill" / "run"
    if (out / "model.safetensors").is_file() and (out / "README.md").is_file():
        _assert_same(load_file(out / "model.safetensors"), uninterrupted)  # it had finished
        return
    resumed = _run(cfg, "--resume_from_checkpoint", "true")
    if resumed.returncode != 0:  # killed before its first checkpoint: nothing to resume, start again
        assert "no checkpoint-* folder to resume" in resumed.stderr or "already holds a run" in resumed.stderr
        resumed = _run(cfg, "--overwrite", "true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_same(load_file(out / "model.safetensors"), uninterrupted)


def _mount_tmpfs(path, size_kib: int) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path)]).returncode == 0


def test_full_disk_during_a_checkpoint(tmp_path, tiny_model_dir_module, uninterrupted):
    import shutil

    one = sum(f.stat().st_size for f in (tmp_path.parent).glob("full*/full/run/checkpoint-1/*"))
    disk = tmp_path / "small-disk"
    mounted = one > 0 and _mount_tmpfs(disk, int(one * 1.5 / 1024) + 8)  # room for one checkpoint, not two
    try:
        cfg = _config_for(tmp_path, tiny_model_dir_module, "disk")
        env = ENV if mounted else {**ENV, "KILL_AT_STEP": "2", "KILL_MODE": "enospc"}
        full = _run(cfg, "--output_dir", str(disk / "run"), env=env)
        assert full.returncode != 0
        assert "is full" in full.stderr and "--resume_from_checkpoint true" in full.stderr  # the one-line message
        moved = tmp_path / "roomy"
        shutil.copytree(disk / "run", moved)  # the user frees space (here: moves the run to a bigger disk)
    finally:
        if mounted:
            subprocess.run(["umount", str(disk)])
    resumed = _run(cfg, "--output_dir", str(moved), "--resume_from_checkpoint", "true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    logs = resumed.stdout + resumed.stderr
    assert "resuming from" in logs and "was not completely written" in logs
    _assert_same(load_file(moved / "model.safetensors"), uninterrupted)
