"""Distributed code paths exercised on CPU: a real 2-rank run of the recipe (torchrun, gloo)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ..test_recipe import ROOT, _config


def test_two_process_cpu_run(tmp_path, tiny_model_dir):
    cfg = _config(tmp_path, tiny_model_dir, save_strategy="steps", save_steps=2, evaluate=False)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node",
            "2",
            "--master_port",
            "29533",
            str(ROOT / "recipes" / "unlearn.py"),
            "--config",
            str(cfg),
        ],
        capture_output=True,
        text=True,
        timeout=240,  # a clean run takes ~10 s; a hang at exit should fail fast, not stall CI
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 0/2 finished 2 steps" in proc.stdout and "rank 1/2 finished 2 steps" in proc.stdout
    out = tmp_path / "run"
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-2"]
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    losses = [h["loss"] for h in state["log_history"] if "loss" in h]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)


def _launch(cfg, nproc: int, port: int, *extra):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node", str(nproc), "--master_port", str(port)]
    proc = subprocess.run(
        [*cmd, str(ROOT / "recipes" / "unlearn.py"), "--config", str(cfg), *extra],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("callback", ["rmu", "adaptive_rmu", "attention_shifting"])
def test_representation_callbacks_under_ddp_equal_one_process(tmp_path, tiny_model_dir, callback):
    """RMU's early exit and frozen activations, and Attention Shifting's attention patch, inside a DDP-wrapped model:
    2 ranks x 2 rows give the weights of 1 process x 4 rows (same global batch, window-normalised terms)."""
    from safetensors.torch import load_file

    weights = {}
    for nproc, per_device in ((1, 4), (2, 2)):
        run = tmp_path / f"{nproc}"
        run.mkdir()
        cfg = _config(
            run,
            tiny_model_dir,
            method="grad_diff",
            forget_coeff=0.0,
            retain_loss_type="none",
            callbacks=[callback],
            callback_layer=1,
            per_device_train_batch_size=per_device,
            max_steps=3,
            learning_rate=1e-2,
            evaluate=False,
            output_dir=str(run / "out"),
            seed=5,
        )
        _launch(cfg, nproc, 29540 + nproc)
        weights[nproc] = load_file(run / "out" / "model.safetensors")
    initial = load_file(tiny_model_dir / "model.safetensors")
    moved = [n for n, t in weights[1].items() if not torch.equal(t, initial[n])]
    trained = ("self_attn.q_proj", "self_attn.k_proj") if callback == "attention_shifting" else ("mlp.down_proj",)
    assert moved and all(any(t in n for t in trained) for n in moved)  # trained, and only the callback's parameters
    for name, tensor in weights[1].items():
        torch.testing.assert_close(weights[2][name], tensor, rtol=1e-4, atol=1e-6, msg=name)
