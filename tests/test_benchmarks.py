"""The quality benchmark's trainer set-up for every method and variant, one step each on a tiny model.

The benchmark itself is measured, not tested; this keeps its code path (settings, callbacks, LoRA placement) working
as the library changes.
"""

import pytest

from benchmarks import quality
from hf_unlearn import build_fictitious_authors

from .conftest import make_tiny_llama

RUNS = [*quality.METHODS, *quality.VARIANTS]


@pytest.fixture(scope="module")
def bench():
    return build_fictitious_authors(num_authors=10)


@pytest.mark.parametrize("name", RUNS)
def test_quality_benchmark_trains_every_method_and_variant(name, bench, chat_tokenizer, tmp_path, monkeypatch):
    monkeypatch.setattr(quality, "OUTPUT_LEVEL", {**quality.OUTPUT_LEVEL, "max_steps": 1})
    monkeypatch.setattr(quality, "RMU", {**quality.RMU, "max_steps": 1})
    variant = quality.VARIANTS.get(name, {})
    model = make_tiny_llama(chat_tokenizer, layers=20)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer, settings = quality._run_trainer(name, model, chat_tokenizer, bench, str(tmp_path))
    for key, value in (variant.get("args") or {}).items():
        assert settings[key] == value and getattr(trainer.args, key) == value
    trainer.train()
    assert trainer.state.global_step == 1
    changed = {n for n, p in trainer.model.named_parameters() if n in before and not p.detach().equal(before[n])}
    trained = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    if name.startswith(("rmu", "adaptive_rmu")):  # full fine-tuning of down_proj of layers 5-7 only
        assert changed and all(".mlp.down_proj." in n and int(n.split(".")[2]) in (5, 6, 7) for n in changed)
    else:  # LoRA: only adapter weights train (on q/k of layers 10-19 for Attention Shifting)
        assert trained and all("lora_" in n for n in trained)
        if name.startswith("attention_shifting"):
            assert all(("q_proj" in n or "k_proj" in n) and 10 <= int(n.split(".")[4]) <= 19 for n in trained)
