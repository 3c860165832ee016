"""Distributed code paths exercised on CPU: a real 2-rank run of the recipe (torchrun, gloo)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

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
