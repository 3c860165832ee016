"""Distributed code paths exercised on CPU: a real 2-rank run of the recipe (torchrun, gloo)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_unlearn.recipes import resolve_accelerate_config

from ..test_recipe import ROOT, _config

pytestmark = pytest.mark.distributed  # real 2-rank runs (torchrun, accelerate launch)


def test_two_process_cpu_run(tmp_path, tiny_model_dir):
    cfg = _config(tmp_path, tiny_model_dir, save_strategy="steps", save_steps=2, evaluate=False)
    proc = _launch(cfg, 2, 29533)  # a clean run takes ~10 s; a hang at exit fails at the timeout
    assert "rank 0/2 finished 2 steps" in proc.stdout and "rank 1/2 finished 2 steps" in proc.stdout
    out = tmp_path / "run"
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-2"]
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    losses = [h["loss"] for h in state["log_history"] if "loss" in h]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)


def _run(cmd: list[str]):
    """A launcher command line from the repository root, offline, one thread per rank; it must succeed."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _launch(cfg, nproc: int, port: int, *extra):
    cmd = [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node", str(nproc), "--master_port", str(port)]
    return _run([*cmd, str(ROOT / "recipes" / "unlearn.py"), "--config", str(cfg), *extra])


def _one_and_two_ranks(tmp_path, model_dir, two_ranks, port: int, file: str = "model.safetensors", **over) -> dict:
    """Train 1 process x 4 rows (torchrun) and 2 ranks x 2 rows (``two_ranks(cfg, port)``) with the recipe, same
    seed and settings; the saved ``file`` of each, keyed by the number of processes."""
    from safetensors.torch import load_file

    weights = {}
    for nproc, per_device in ((1, 4), (2, 2)):
        run = tmp_path / f"{nproc}"
        run.mkdir()
        settings = {"max_steps": 3, "learning_rate": 1e-2, "evaluate": False, "output_dir": str(run / "out"), **over}
        cfg = _config(run, model_dir, per_device_train_batch_size=per_device, **settings)
        proc = _launch(cfg, 1, port) if nproc == 1 else two_ranks(cfg, port + 1)
        assert f"rank {nproc - 1}/{nproc} finished 3 steps" in proc.stdout
        weights[nproc] = load_file(run / "out" / file)
    return weights


@pytest.mark.parametrize("callback", ["rmu", "adaptive_rmu", "attention_shifting"])
def test_representation_callbacks_under_ddp_equal_one_process(tmp_path, tiny_model_dir, callback):
    """RMU's early exit and frozen activations, and Attention Shifting's attention patch, inside a DDP-wrapped model:
    2 ranks x 2 rows give the weights of 1 process x 4 rows (same global batch, window-normalised terms)."""
    from safetensors.torch import load_file

    weights = _one_and_two_ranks(
        tmp_path,
        tiny_model_dir,
        lambda cfg, port: _launch(cfg, 2, port),
        29540,
        method="grad_diff",
        forget_coeff=0.0,
        retain_loss_type="none",
        callbacks=[callback],
        callback_layer=1,
        seed=5,
    )
    initial = load_file(tiny_model_dir / "model.safetensors")
    moved = [n for n, t in weights[1].items() if not torch.equal(t, initial[n])]
    trained = ("self_attn.q_proj", "self_attn.k_proj") if callback == "attention_shifting" else ("mlp.down_proj",)
    assert moved and all(any(t in n for t in trained) for n in moved)  # trained, and only the callback's parameters
    for name, tensor in weights[1].items():
        torch.testing.assert_close(weights[2][name], tensor, rtol=1e-4, atol=1e-6, msg=name)


def _accelerate(cfg, config_file, port: int, *extra):
    """The README's `accelerate launch` command line."""
    cmd = [str(Path(sys.executable).with_name("accelerate")), "launch", "--config_file", str(config_file)]
    return _run([*cmd, "--main_process_port", str(port), str(ROOT / "recipes" / "unlearn.py"), "--config", str(cfg)])


LORA = {"use_peft": True, "lora_r": 4, "lora_alpha": 8, "lora_target_modules": ["q_proj", "v_proj"]}


@pytest.mark.parametrize(
    "name,over",
    [
        ("npo_full", {"method": "npo"}),
        ("npo_lora", {"method": "npo", **LORA}),
        ("grad_diff_kl", {"method": "grad_diff", "retain_loss_type": "kl"}),
    ],
)
def test_accelerate_launch_multi_cpu_equals_one_process(tmp_path, tiny_model_dir, name, over):
    """`accelerate launch --config_file .../multi_cpu.yaml` (the shipped config; 2 CPU ranks x 2 rows) gives the
    weights of one process x 4 rows: the same global batch, with window-normalised terms and the precomputed or
    adapter-disabled references of NPO and the KL retain term."""
    from safetensors.torch import load_file

    config = resolve_accelerate_config("multi_cpu")
    file = "adapter_model.safetensors" if "use_peft" in over else "model.safetensors"
    weights = _one_and_two_ranks(
        tmp_path, tiny_model_dir, lambda cfg, port: _accelerate(cfg, config, port), 29550, file=file, seed=3, **over
    )
    if "use_peft" in over:  # the adapter trained
        assert any("lora_B" in n and t.abs().max() > 0 for n, t in weights[1].items())
    else:
        initial = load_file(tiny_model_dir / "model.safetensors")
        assert any(not torch.equal(t, initial[n]) for n, t in weights[1].items())
    for key, tensor in weights[1].items():
        torch.testing.assert_close(weights[2][key], tensor, rtol=1e-4, atol=1e-6, msg=key)


@pytest.mark.skipif(torch.cuda.is_available(), reason="on GPUs accelerate shards: benchmarks/gpu_tests checks that")
def test_fsdp_config_on_cpu_ranks_says_it_runs_as_ddp(tmp_path, tiny_model_dir):
    """accelerate 1.16 selects FSDP only on GPU-type devices: the shipped FSDP2 config on CPU ranks trains as DDP, and
    the recipe says so instead of leaving the user to believe the model is sharded."""
    import yaml

    shipped = yaml.safe_load(resolve_accelerate_config("fsdp2").read_text())
    config = tmp_path / "fsdp2_cpu.yaml"
    config.write_text(yaml.safe_dump({**shipped, "mixed_precision": "no", "num_processes": 2}))
    cfg = _config(tmp_path, tiny_model_dir, evaluate=False)
    proc = _accelerate(cfg, config, 29552)
    assert "asks for FSDP, but accelerate runs this job as MULTI_CPU" in proc.stderr
    assert "rank 1/2 finished 2 steps" in proc.stdout


def test_fsdp2_sharded_label_path_equals_one_process(tmp_path, tiny_model_dir):
    """The nearest thing to FSDP2 that runs on CPU: torch's `fully_shard` over 2 gloo ranks (parameters are DTensor
    shards), the trainers' label-position forward and an NPO step with a precomputed reference, against one process
    on the same 4 rows."""
    out = tmp_path / "fsdp2.json"
    cmd = [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node", "2", "--master_port", "29553"]
    _run([*cmd, str(Path(__file__).with_name("fsdp2_label_path.py")), str(tiny_model_dir), str(out)])
    result = json.loads(out.read_text())
    assert result["parameter_types"] == ["DTensor"]  # really sharded
    assert result["moved"] > 1e-2 and result["max_weight_diff"] < 1e-6
    assert result["loss"] == pytest.approx(result["single_loss"], rel=1e-6)


def test_sharded_models_are_evaluated_from_the_saved_folder(tmp_path, tiny_model_dir):
    """Under FSDP or ZeRO-3 every forward gathers parameters from all ranks, so rank 0 cannot evaluate the trained
    model alone: the recipe evaluates the final model it saved instead."""
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from hf_unlearn.scripts.unlearn import _evaluation_model, _sharded

    def trainer(kind, processes=2, stage=None):
        state = SimpleNamespace(deepspeed_plugin=SimpleNamespace(zero_stage=stage) if stage else None)
        acc = SimpleNamespace(num_processes=processes, distributed_type=kind, state=state, device=torch.device("cpu"))
        return SimpleNamespace(accelerator=acc, model="in-memory model")

    assert _sharded(trainer(DistributedType.FSDP)) and _sharded(trainer(DistributedType.DEEPSPEED, stage=3))
    assert not _sharded(trainer(DistributedType.DEEPSPEED, stage=2)) and not _sharded(trainer(DistributedType.FSDP, 1))
    assert _evaluation_model(trainer(DistributedType.MULTI_CPU), str(tiny_model_dir)) == "in-memory model"
    loaded = _evaluation_model(trainer(DistributedType.FSDP), str(tiny_model_dir))
    assert isinstance(loaded, torch.nn.Module) and loaded.config.num_hidden_layers == 2
