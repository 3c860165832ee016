"""Task-vector negation, LoRA task vectors and Selective Task Arithmetic on tiny saved models: the formulas tensor by
tensor, streaming against in-memory, LoRA negation against its merged delta, STA's kept fraction, the scale sweep,
and the refusals of bad input."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from hf_unlearn import build_fictitious_authors
from hf_unlearn.task_arithmetic import (
    SafetensorsStreamWriter,
    TaskVector,
    choose_scale,
    contrast_masks,
    lora_task_vector,
    merge_lora,
    negate_checkpoint,
    negate_lora_adapter,
    sta_importance,
    sta_masks,
)

from .conftest import make_tiny_llama


def _save(model, tok, path, **kw):
    model.save_pretrained(path, **kw)
    tok.save_pretrained(path)
    return path


def _moved(model, seed, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return model


@pytest.fixture
def pair(tmp_path, chat_tokenizer):
    """A target and a 'reinforced' model (the target moved), both saved."""
    target = _save(make_tiny_llama(chat_tokenizer), chat_tokenizer, tmp_path / "target")
    reinforced = _save(_moved(make_tiny_llama(chat_tokenizer), 1), chat_tokenizer, tmp_path / "reinforced")
    return target, reinforced


def test_stream_writer_round_trips_every_dtype(tmp_path):
    tensors = {
        "a": torch.randn(3, 4),
        "b": torch.randn(5).to(torch.bfloat16),
        "c": torch.arange(6, dtype=torch.int64).view(2, 3),
        "d": torch.randn(2, 2).half(),
        "e": torch.zeros(0, 4),
    }
    dtypes = {torch.float32: "F32", torch.bfloat16: "BF16", torch.int64: "I64", torch.float16: "F16"}
    layout = [(k, dtypes[v.dtype], list(v.shape)) for k, v in tensors.items()]
    with SafetensorsStreamWriter(tmp_path / "x.safetensors", layout) as w:
        for k, v in tensors.items():
            w.write(k, v)
    back = load_file(tmp_path / "x.safetensors")
    for k, v in tensors.items():
        assert torch.equal(back[k], v), k
    with pytest.raises(ValueError, match="expected a"):
        SafetensorsStreamWriter(tmp_path / "y.safetensors", layout).write("b", tensors["b"])


def test_negation_equals_the_formula_and_the_in_memory_path(pair, tmp_path, chat_tokenizer):
    target, reinforced = pair
    out = negate_checkpoint(target, reinforced, tmp_path / "unlearned", scale=0.7)
    t, r, o = (load_file(p / "model.safetensors") for p in (target, reinforced, out))
    assert set(o) == set(t)
    for k in t:
        torch.testing.assert_close(o[k], t[k] - 0.7 * (r[k] - t[k]), rtol=0, atol=1e-6, msg=k)
    # In memory: the same vector applied to the target model.
    model = make_tiny_llama(chat_tokenizer)
    tau = TaskVector.from_models(target, reinforced)
    tau.apply_to(model, scale=-0.7)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), o[name], rtol=0, atol=1e-6, msg=name)
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    record = json.loads((out / "task_vector.json").read_text())
    assert record["scale"] == 0.7 and record["masked"] is False
    # Vector algebra.
    torch.testing.assert_close((-tau)[k], -tau[k])
    torch.testing.assert_close((tau + tau)[k], 2 * tau[k])
    torch.testing.assert_close((tau - tau)[k], torch.zeros_like(tau[k]))


def test_negation_of_a_bf16_sharded_checkpoint_keeps_dtype_and_files(tmp_path, chat_tokenizer):
    target = _save(
        make_tiny_llama(chat_tokenizer).to(torch.bfloat16), chat_tokenizer, tmp_path / "t", max_shard_size="50KB"
    )
    moved = _moved(make_tiny_llama(chat_tokenizer), 2).to(torch.bfloat16)
    reinforced = _save(moved, chat_tokenizer, tmp_path / "r", max_shard_size="50KB")
    assert (target / "model.safetensors.index.json").is_file()
    out = negate_checkpoint(target, reinforced, tmp_path / "o", scale=1.0)
    files = sorted(p.name for p in target.glob("*.safetensors"))
    assert files == sorted(p.name for p in out.glob("*.safetensors")) and len(files) > 1
    for name in files:
        t, r, o = (load_file(p / name) for p in (target, reinforced, out))
        for k in t:
            assert o[k].dtype == torch.bfloat16
            expected = (t[k].float() - (r[k].float() - t[k].float())).to(torch.bfloat16)
            assert torch.equal(o[k], expected), k  # float32 arithmetic, one rounding at the end


def test_tied_and_resized_embeddings_are_skipped_with_a_warning(tmp_path, chat_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    def tiny(vocab, tied, seed):
        torch.manual_seed(seed)
        cfg = LlamaConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            tie_word_embeddings=tied,
        )
        return LlamaForCausalLM(cfg)

    target = _save(tiny(420, True, 0), chat_tokenizer, tmp_path / "t")
    reinforced = _save(tiny(420, True, 1), chat_tokenizer, tmp_path / "r")
    with safe_open(target / "model.safetensors", "pt") as f:
        assert "lm_head.weight" not in set(f.keys())  # tied: stored once
    negate_checkpoint(target, reinforced, tmp_path / "o1")  # no warning needed: the same keys
    resized = _save(tiny(424, True, 1), chat_tokenizer, tmp_path / "r2")
    with pytest.warns(UserWarning, match="model.embed_tokens.weight"):
        out = negate_checkpoint(target, resized, tmp_path / "o2")
    t, o = load_file(target / "model.safetensors"), load_file(out / "model.safetensors")
    assert torch.equal(o["model.embed_tokens.weight"], t["model.embed_tokens.weight"])  # kept as the target's
    r = load_file(resized / "model.safetensors")
    key = "model.layers.0.mlp.up_proj.weight"  # the other weights are negated as usual
    torch.testing.assert_close(o[key], 2 * t[key] - r[key], rtol=0, atol=1e-6)


def test_bad_input_is_refused_and_nothing_is_overwritten(pair, tmp_path, chat_tokenizer):
    target, reinforced = pair
    with pytest.raises(ValueError, match="zero everywhere"):
        negate_checkpoint(target, target, tmp_path / "zero")
    with pytest.raises(ValueError, match="zero everywhere"):
        TaskVector.from_models(target, target)
    assert not (tmp_path / "zero").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not empty"):
        negate_checkpoint(target, reinforced, existing)
    with pytest.raises(ValueError, match="zero everywhere"):  # an overwrite that fails keeps the old folder
        negate_checkpoint(target, target, existing, overwrite=True)
    assert (existing / "mine.txt").read_text() == "keep"
    with pytest.raises(ValueError, match="inside the input"):
        negate_checkpoint(target, reinforced, target / "sub")
    other = _save(make_tiny_llama(chat_tokenizer, layers=3), chat_tokenizer, tmp_path / "other")
    with pytest.raises(ValueError, match="different architectures"):
        negate_checkpoint(target, other, tmp_path / "o")
    partial = tmp_path / "partial"
    weights = load_file(reinforced / "model.safetensors")
    weights.pop("model.layers.0.mlp.up_proj.weight")
    partial.mkdir()
    from safetensors.torch import save_file

    save_file(weights, partial / "model.safetensors")
    with pytest.raises(ValueError, match=r"up_proj\.weight missing"):
        negate_checkpoint(target, partial, tmp_path / "o")
    with pytest.raises(FileNotFoundError, match=r"No model\.safetensors"):
        negate_checkpoint(target, tmp_path / "nothing-here", tmp_path / "o")


def _lora_adapter(base_dir, tmp_path, chat_tokenizer, **lora):
    from peft import LoraConfig, get_peft_model

    model = make_tiny_llama(chat_tokenizer)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"], **lora))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # B != 0: a real update (the base weights stay those of make_tiny_llama)
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    path = tmp_path / "adapter"
    peft_model.save_pretrained(path)
    return path, peft_model


@pytest.mark.parametrize("lora", [{}, {"use_rslora": True}])
def test_lora_negation_equals_negating_the_merged_delta(tmp_path, chat_tokenizer, lora):
    base = _save(make_tiny_llama(chat_tokenizer), chat_tokenizer, tmp_path / "base")
    adapter, peft_model = _lora_adapter(base, tmp_path, chat_tokenizer, **lora)
    merged = peft_model.merge_and_unload()  # base + tau, by PEFT itself
    b = load_file(base / "model.safetensors")
    tau = lora_task_vector(adapter)
    for k, v in tau.items():
        torch.testing.assert_close(b[k] + v, dict(merged.named_parameters())[k].detach(), rtol=1e-5, atol=1e-6)
    out = merge_lora(base, adapter, tmp_path / "negated", scale=-1.0)
    o = load_file(out / "model.safetensors")
    for k in b:
        expected = b[k] - tau[k] if k in tau else b[k]
        torch.testing.assert_close(o[k], expected, rtol=1e-5, atol=1e-6, msg=k)
    # The negated adapter: lora_B flipped, lora_A kept, so its vector is -tau (flipping both would give +tau).
    neg = negate_lora_adapter(adapter, tmp_path / "neg-adapter", scale=1.0)
    for k, v in lora_task_vector(neg).items():
        torch.testing.assert_close(v, -tau[k])
    from peft import PeftModel

    model = PeftModel.from_pretrained(make_tiny_llama(chat_tokenizer), neg).merge_and_unload()
    for k, v in model.named_parameters():
        torch.testing.assert_close(v.detach(), o[k], rtol=1e-5, atol=1e-6, msg=k)


def test_lora_on_another_base_is_refused(tmp_path, chat_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    base = _save(make_tiny_llama(chat_tokenizer), chat_tokenizer, tmp_path / "base")
    adapter, _ = _lora_adapter(base, tmp_path, chat_tokenizer)
    cfg = LlamaConfig(
        vocab_size=len(chat_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    other = _save(LlamaForCausalLM(cfg), chat_tokenizer, tmp_path / "other")
    with pytest.raises(ValueError, match="another base model"):
        merge_lora(other, adapter, tmp_path / "o")
    with pytest.raises(FileNotFoundError, match="not a PEFT adapter"):
        lora_task_vector(base)


def test_sta_importance_masks_and_negation(pair, tmp_path, chat_tokenizer):
    target, reinforced = pair
    bench = build_fictitious_authors(num_authors=10, qa_per_author=4, seed=0)
    model = make_tiny_llama(chat_tokenizer)
    tau = TaskVector.from_models(target, reinforced)
    tau.apply_to(model)  # the model at the fine-tuned weights
    rows = bench["forget"]
    imp = sta_importance(model, chat_tokenizer, rows, tau, batches=2, batch_size=2)
    # Independent: mean over the same two batches of the token-mean NLL gradient, times tau.
    from hf_unlearn.data import DataCollatorForUnlearning, tokenize_rows

    enc = tokenize_rows(rows, chat_tokenizer)
    collate = DataCollatorForUnlearning(pad_token_id=chat_tokenizer.pad_token_id)
    grads = {k: torch.zeros_like(v) for k, v in tau.items()}
    squares = {k: torch.zeros_like(v) for k, v in tau.items()}
    params = dict(model.named_parameters())
    for start in (0, 2):
        batch = collate([{"input_ids": e["input_ids"], "labels": e["labels"]} for e in enc[start : start + 2]])
        model.zero_grad()
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        target_ids = batch["labels"][:, 1:]
        m = target_ids != -100
        torch.nn.functional.cross_entropy(logits[m], target_ids[m]).backward()
        for k in tau:
            grads[k] += params[k].grad / 2
            squares[k] += params[k].grad.square() / 2
    for k in tau:
        torch.testing.assert_close(imp[k], (grads[k] * tau[k]).abs(), rtol=1e-4, atol=1e-9)
    model.zero_grad()
    fisher = sta_importance(model, chat_tokenizer, rows, tau, kind="fisher", batches=2, batch_size=2)
    for k in tau:
        torch.testing.assert_close(fisher[k], squares[k] * tau[k].square(), rtol=1e-4, atol=1e-12)
    assert all(p.grad is None for p in model.parameters())  # the model's gradients are left as they were
    # Masks keep the stated fraction, per tensor and over the whole model.
    per_tensor = sta_masks(imp, keep=0.1)
    for k, m in per_tensor.items():
        assert int(m.sum()) == max(1, round(0.1 * m.numel())), k
        kept = imp[k][m]
        assert kept.min() >= imp[k][~m].max() if (~m).any() else True
    overall = sta_masks(imp, keep=0.25, granularity="global")
    total = sum(m.numel() for m in overall.values())
    assert sum(int(m.sum()) for m in overall.values()) == round(0.25 * total)
    contrast = contrast_masks(imp, {k: torch.zeros_like(v) for k, v in imp.items()})
    assert all(torch.equal(contrast[k], imp[k] > 1e-12) for k in imp)
    # STA negation: only the kept entries move.
    out = negate_checkpoint(target, reinforced, tmp_path / "sta", masks=per_tensor)
    t, r, o = (load_file(p / "model.safetensors") for p in (target, reinforced, out))
    for k, m in per_tensor.items():
        torch.testing.assert_close(o[k], t[k] - m * (r[k] - t[k]), rtol=0, atol=1e-6)
    assert json.loads((out / "task_vector.json").read_text())["masked"] is True
    with pytest.raises(ValueError, match="keep must be"):
        sta_masks(imp, keep=0)


def test_choose_scale_on_a_toy_utility_curve():
    utility = {0.25: 0.80, 0.5: 0.79, 0.75: 0.785, 1.0: 0.70, 1.5: 0.5}
    seen = []

    def evaluate(scale):
        seen.append(scale)
        return utility[scale]

    choice = choose_scale(evaluate, [1.5, 0.5, 1.0, 0.25, 0.75], baseline=0.80, tolerance=0.02)
    assert choice.scale == 0.75 and seen == [0.25, 0.5, 0.75, 1.0]  # stops at the first scale that breaks it
    assert choice.curve[-1] == (1.0, 0.70)
    with pytest.raises(ValueError, match="smallest scale"):
        choose_scale(lambda s: 0.1, [0.5, 1.0], baseline=0.8)


def test_cli_reinforces_sweeps_selects_and_writes_a_card(tiny_model_dir, tmp_path, capsys):
    from huggingface_hub import ModelCard

    from hf_unlearn.cli import main

    common = ["task-vector", "--model_name_or_path", str(tiny_model_dir), "--num_authors", "10", "--qa_per_author", "2"]
    reinforced = tmp_path / "reinforced"
    args = [*common, "--reinforced_model_name_or_path", str(reinforced), "--output_dir", str(tmp_path / "tv")]
    args += ["--sweep", "0.5", "1", "2", "--tolerance", "1"]
    assert main([*args, "--reinforce_learning_rate", "1e-3", "--reinforce_epochs", "2"]) == 0
    err = capsys.readouterr().err  # progress: hf_unlearn's logger
    assert "Reinforcing" in err and "scale 2: general knowledge" in err  # tolerance 1: every scale is allowed
    assert (reinforced / "config.json").is_file()
    record = json.loads((tmp_path / "tv" / "task_vector.json").read_text())
    assert record["scale"] == 2.0 and not record["masked"]
    card = ModelCard.load(tmp_path / "tv" / "README.md")
    assert card.data.unlearning["method"] == "TaskVector"
    sta = [*common, "--reinforced_model_name_or_path", str(reinforced), "--output_dir", str(tmp_path / "sta")]
    sta += ["--sta_keep", "0.05"]
    assert main(sta) == 0
    t, r, o = (load_file(p / "model.safetensors") for p in (tiny_model_dir, reinforced, tmp_path / "sta"))
    moved = sum(int((o[k] != t[k]).sum()) for k in t)
    total = sum(t[k].numel() for k in t if not torch.equal(r[k], t[k]))
    assert 0 < moved <= 0.06 * total  # only the selected entries moved
    assert ModelCard.load(tmp_path / "sta" / "README.md").data.unlearning["method"] == "STA"
    assert main(sta) == 2  # the output folder is not empty now: one clear error
    assert "not empty" in capsys.readouterr().err
    # A YAML file gives the defaults (hf_unlearn 0.1's keys still work, with a warning); flags override it; unknown
    # keys are one clear error.
    cfg = tmp_path / "tv.yaml"
    cfg.write_text(
        f"target: {tiny_model_dir}\nreinforced: {reinforced}\noutput: {tmp_path / 'from-yaml'}\nscale: 0.5\nsweep: []\n"
    )
    with pytest.warns(FutureWarning, match="target: is deprecated: use model_name_or_path:"):
        assert main(["task-vector", "--config", str(cfg), "--scale", "0.25", "--num_authors", "10"]) == 0
    assert json.loads((tmp_path / "from-yaml" / "task_vector.json").read_text())["scale"] == 0.25
    cfg.write_text("target: x\nscael: 2\n")
    assert main(["task-vector", "--config", str(cfg)]) == 2
    assert "unknown options scael" in capsys.readouterr().err
