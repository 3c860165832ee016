"""Sharded training through `accelerate launch` on 2 GPUs, run by ``benchmarks/gpu_check.py`` (not part of the CPU
suite: accelerate selects FSDP and DeepSpeed only on GPU-type devices). Each run must give the weights of one
process on the same global batch."""

import sys
from pathlib import Path

import pytest
import torch
import yaml

from hf_unlearn.recipes import resolve_accelerate_config

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.distributed.test_two_ranks import _accelerate, _one_and_two_ranks  # noqa: E402

if torch.cuda.device_count() < 2:  # collected only by gpu_check on a machine with 2 or more GPUs
    pytest.skip("needs 2 CUDA devices", allow_module_level=True)


@pytest.fixture
def tiny_model_dir(tmp_path):
    from tests.conftest import CHATML, _train_tokenizer, make_tiny_llama

    tok = _train_tokenizer(CHATML)
    path = tmp_path / "tiny-llama"
    make_tiny_llama(tok).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _sharded_config(tmp_path, name: str) -> Path:
    shipped = yaml.safe_load(resolve_accelerate_config(name).read_text())
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**shipped, "mixed_precision": "no", "num_processes": 2}))  # fp32: comparable
    return path


@pytest.mark.parametrize("config", ["fsdp2", "zero3"])
@pytest.mark.parametrize("method", ["npo", "grad_diff"])
def test_sharded_run_equals_one_process(tmp_path, tiny_model_dir, config, method):
    if config == "zero3":
        pytest.importorskip("deepspeed")
    accelerate_config = _sharded_config(tmp_path, config)

    def sharded(cfg, port):
        proc = _accelerate(cfg, accelerate_config, port)
        assert "warning: the accelerate config asks for" not in proc.stderr  # really sharded
        return proc

    over = {"retain_loss_type": "kl"} if method == "grad_diff" else {}
    weights = _one_and_two_ranks(
        tmp_path, tiny_model_dir, sharded, 29560, method=method, evaluate=True, max_new_tokens=4, seed=3, **over
    )
    assert (tmp_path / "2" / "out" / "results.json").is_file()  # rank 0 evaluated the saved model
    for key, tensor in weights[1].items():
        torch.testing.assert_close(weights[2][key], tensor, rtol=1e-4, atol=1e-6, msg=key)
