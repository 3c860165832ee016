"""Representation-level callbacks (RMU, Adaptive RMU): early exit, losses against their formulas computed here,
state across save/resume, composition with NPO, PEFT and activation checkpointing, clear errors."""

import os

import pytest
import torch

from hf_unlearn import build_fictitious_authors
from hf_unlearn.callbacks import AdaptiveRMUCallback, RMUCallback, decoder_layers, stop_after
from hf_unlearn.trainers import GradDiffConfig, GradDiffTrainer, NPOConfig, NPOTrainer

from .conftest import SHORT_RUN, StopAtStep, callbacks_only_trainer, first_batch, make_tiny_llama

LAYER = 1


@pytest.fixture(scope="module")
def bench():
    return build_fictitious_authors(num_authors=10, qa_per_author=4, seed=5)


def _rmu_only(tok, bench, tmp_path, cb, model=None, **kw):
    return callbacks_only_trainer(tok, bench, tmp_path, cb, model=model, **kw)


def _initial(tok):
    """A fresh copy of the initial weights (same seed), independent of any forward patching of the trained model."""
    return make_tiny_llama(tok, layers=3)


def _layer_out(model, ids, mask):
    return model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[LAYER + 1].float()


def test_early_stopped_activations_equal_a_full_forward(chat_tokenizer):
    model = make_tiny_llama(chat_tokenizer, layers=3)
    ids = torch.randint(0, 300, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    seen = {}
    handle = decoder_layers(model)[LAYER].register_forward_hook(lambda m, a, o: seen.__setitem__("h", o))
    calls = {"n": 0}
    later = decoder_layers(model)[LAYER + 1].register_forward_hook(lambda m, a, o: calls.__setitem__("n", 1))
    with torch.no_grad(), stop_after(model, LAYER):
        model(input_ids=ids, attention_mask=mask)
    handle.remove()
    later.remove()
    assert calls["n"] == 0  # nothing after layer L ran
    with torch.no_grad():
        full = _layer_out(model, ids, mask)
    torch.testing.assert_close(seen["h"].float(), full)


@pytest.mark.parametrize("token_mask", ["attention", "labels", "all"])
def test_rmu_loss_matches_its_formula(chat_tokenizer, bench, tmp_path, token_mask):
    cb = RMUCallback(layer=LAYER, steering_coeff=3.0, alpha=7.0, seed=11, token_mask=token_mask)
    tr = _rmu_only(chat_tokenizer, bench, tmp_path, cb)
    model = tr.model
    frozen = _initial(chat_tokenizer)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == [f"model.layers.{i}.mlp.down_proj.weight" for i in range(0, LAYER + 1)]
    with torch.no_grad():  # move the trained tensors so the retain term is non-zero
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    batch = first_batch(tr)
    with torch.no_grad():
        loss = tr.compute_loss(model, batch)
        g = torch.Generator().manual_seed(11)
        u = torch.rand(64, generator=g)
        u = u / u.norm()
        terms = []
        for group, weight, target_model in (("forget", 1.0, None), ("retain", 7.0, frozen)):
            ids, mask = batch[f"{group}_input_ids"], batch[f"{group}_attention_mask"]
            h = _layer_out(model, ids, mask)
            target = 3.0 * u if target_model is None else _layer_out(target_model, ids, mask)
            per_tok = (h - target).pow(2).mean(-1)
            m = {
                "attention": mask.bool(),
                "labels": batch[f"{group}_labels"] != -100,
                "all": torch.ones_like(mask, dtype=torch.bool),
            }[token_mask]
            terms.append(weight * (per_tok * m).sum() / m.sum())
    torch.testing.assert_close(loss, terms[0] + terms[1], rtol=1e-4, atol=1e-6)
    assert terms[1] > 0


def test_rmu_row_reduction_reproduces_open_unlearning_and_differs_from_the_token_mean(chat_tokenizer, bench, tmp_path):
    losses = {}
    for reduction in ("tokens", "rows"):
        cb = RMUCallback(layer=LAYER, steering_coeff=3.0, alpha=7.0, seed=11, token_mask="labels", reduction=reduction)
        tr = _rmu_only(chat_tokenizer, bench, tmp_path / reduction, cb)
        with torch.no_grad():
            for p in tr.model.parameters():
                if p.requires_grad:
                    p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
        batch = first_batch(tr)
        with torch.no_grad():
            losses[reduction] = tr.compute_loss(tr.model, batch)
    frozen = _initial(chat_tokenizer)
    u = cb.control_vector
    expected = {"tokens": 0.0, "rows": 0.0}
    with torch.no_grad():
        for group, weight, target_model in (("forget", 1.0, None), ("retain", 7.0, frozen)):
            ids, mask = batch[f"{group}_input_ids"], batch[f"{group}_attention_mask"]
            h = _layer_out(tr.model, ids, mask)
            target = 3.0 * u if target_model is None else _layer_out(target_model, ids, mask)
            per_tok = (h - target).pow(2).mean(-1)
            m = batch[f"{group}_labels"] != -100
            expected["tokens"] += weight * (per_tok * m).sum() / m.sum()
            expected["rows"] += weight * ((per_tok * m).sum(-1) / m.sum(-1)).mean()  # open-unlearning's reduction
            lengths = m.sum(-1)
    assert len(set(lengths.tolist())) > 1  # rows of different answer lengths: the reductions must differ
    for reduction in ("tokens", "rows"):
        torch.testing.assert_close(losses[reduction], expected[reduction], rtol=1e-4, atol=1e-6)
    assert abs(float(expected["rows"] - expected["tokens"])) > 1e-4 * float(expected["tokens"])
    # Guards the default reduction: a change would shift every committed RMU row (rows = open-unlearning's parity).
    assert RMUCallback().reduction == "tokens"
    with pytest.raises(ValueError, match="reduction"):
        RMUCallback(reduction="mean")


def test_rmu_steps_move_forget_toward_target_and_keep_retain(chat_tokenizer, bench, tmp_path):
    cb = RMUCallback(layer=LAYER, steering_coeff=4.0, alpha=50.0)
    tr = _rmu_only(chat_tokenizer, bench, tmp_path, cb, max_steps=20, learning_rate=3e-2)
    frozen = _initial(chat_tokenizer)
    batch = first_batch(tr)
    u = cb.control_vector

    def distances(model):
        with torch.no_grad():
            f = _layer_out(model, batch["forget_input_ids"], batch["forget_attention_mask"])
            r = _layer_out(model, batch["retain_input_ids"], batch["retain_attention_mask"])
            r0 = _layer_out(frozen, batch["retain_input_ids"], batch["retain_attention_mask"])
        return float((f - 4.0 * u).pow(2).mean()), float((r - r0).pow(2).mean())

    f_before, r_before = distances(tr.model)
    tr.train()
    f_after, r_after = distances(tr.model)
    assert r_before == 0.0
    assert f_after < 0.85 * f_before  # measured: 0.251 -> 0.197 in 20 steps
    assert r_after < 0.1 * (f_before - f_after)


def test_adaptive_coefficient_modes(chat_tokenizer, bench, tmp_path):
    cb = AdaptiveRMUCallback(layer=LAYER, beta=5.0)
    tr = _rmu_only(chat_tokenizer, bench, tmp_path, cb)
    frozen = _initial(chat_tokenizer)
    with torch.no_grad():
        for p in tr.model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    batch = first_batch(tr)
    tr.model.train()  # metrics are filed under the mode of the model
    with torch.no_grad():
        tr.compute_loss(tr.model, batch)
        h0 = _layer_out(frozen, batch["forget_input_ids"], batch["forget_attention_mask"])
        m = batch["forget_attention_mask"].bool()
        expected = 5.0 * (h0.norm(dim=-1) * m).sum() / m.sum()
    assert tr._metrics["train"]["rmu/coeff"][-1] == pytest.approx(float(expected), rel=1e-4)
    first = AdaptiveRMUCallback(layer=LAYER, coeff_mode="first_batch")
    tr2 = _rmu_only(chat_tokenizer, bench, tmp_path, first, max_steps=3)
    tr2.train()
    coeffs = tr2._metrics["train"].get("rmu/coeff") or [
        h["rmu/coeff"] for h in tr2.state.log_history if "rmu/coeff" in h
    ]
    assert len(set(round(c, 6) for c in coeffs)) == 1 and first.constant is not None
    with pytest.raises(ValueError, match="coeff_mode"):
        AdaptiveRMUCallback(coeff_mode="median")


def test_state_survives_save_and_resume(chat_tokenizer, bench, tmp_path):
    from safetensors.torch import load_file

    def run(out, stop=None, resume=None):
        cb = AdaptiveRMUCallback(layer=LAYER, coeff_mode="first_batch", alpha=5.0)
        tr = _rmu_only(
            chat_tokenizer, bench, out, cb, max_steps=4, save_strategy="steps", save_steps=2, seed=3, learning_rate=5e-3
        )
        if stop:
            tr.add_callback(StopAtStep(stop))
        tr.train(resume_from_checkpoint=resume)
        return tr, cb

    full, _ = run(tmp_path / "a")
    _, cb_partial = run(tmp_path / "b", stop=2)
    # The trainer's one state file, for every objective and callback: the callback's entries carry its name.
    saved = load_file(os.path.join(tmp_path / "b" / "out" / "checkpoint-2", "hf_unlearn_state.safetensors"))
    assert sorted(saved) == [
        "objective.0.AdaptiveRMUCallback/coefficient",
        "objective.0.AdaptiveRMUCallback/control_vector",
    ]
    torch.testing.assert_close(saved["objective.0.AdaptiveRMUCallback/control_vector"], cb_partial.control_vector)
    assert saved["objective.0.AdaptiveRMUCallback/coefficient"][0] == pytest.approx(float(cb_partial.constant))
    resumed, cb_resumed = run(tmp_path / "b", resume=str(tmp_path / "b" / "out" / "checkpoint-2"))
    assert float(cb_resumed.constant) == pytest.approx(float(cb_partial.constant))
    for (n, a), (_, b) in zip(full.model.named_parameters(), resumed.model.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=n)


def test_composes_with_npo(chat_tokenizer, bench, tmp_path):
    cb = RMUCallback(layer=LAYER, steering_coeff=2.0, alpha=3.0)
    args = NPOConfig(output_dir=str(tmp_path), **{**SHORT_RUN, "max_steps": 2})
    tr = NPOTrainer(
        make_tiny_llama(chat_tokenizer, layers=3),
        args=args,
        forget_dataset=bench["forget"],
        retain_dataset=bench["retain"],
        processing_class=chat_tokenizer,
        callbacks=[cb],
    )
    tr.train()
    logs = [h for h in tr.state.log_history if "loss/rmu_forget" in h]
    assert logs and {"loss/forget", "loss/retain", "loss/rmu_forget", "loss/rmu_retain"} <= set(logs[0])
    first = logs[0]
    parts = first["loss/forget"] + first["loss/retain"] + first["loss/rmu_forget"] + first["loss/rmu_retain"]
    assert first["loss"] == pytest.approx(parts, rel=1e-3)


def test_peft_reference_and_activation_checkpointing(chat_tokenizer, bench, tmp_path):
    from peft import LoraConfig

    losses = []
    for checkpointing in (False, True):
        cb = RMUCallback(layer=LAYER, steering_coeff=2.0, alpha=3.0)
        tr = callbacks_only_trainer(
            chat_tokenizer,
            bench,
            tmp_path,
            cb,
            peft_config=LoraConfig(r=4, target_modules=["down_proj", "q_proj"], layers_to_transform=[0, 1]),
            max_steps=2,
            seed=1,
            activation_checkpointing=checkpointing,
        )
        tr.train()
        losses.append([h["loss"] for h in tr.state.log_history if "loss" in h])
        assert all(p.requires_grad == ("lora_" in n) for n, p in tr.model.named_parameters())
    assert losses[0][0] == pytest.approx(losses[1][0], rel=1e-5)
    assert losses[0][0] > 0 and losses[0][-1] < losses[0][0]


def test_clear_errors(chat_tokenizer, bench, tmp_path):
    with pytest.raises(ValueError, match=r"layer 9 is out of range; this model has decoder layers 0..2"):
        _rmu_only(chat_tokenizer, bench, tmp_path, RMUCallback(layer=9))
    with pytest.raises(ValueError, match="match no parameter"):
        _rmu_only(chat_tokenizer, bench, tmp_path, RMUCallback(layer=LAYER, params=[r"\.nonexistent\."]))
    with pytest.raises(ValueError, match="lie in decoder layers <= 1"):
        _rmu_only(chat_tokenizer, bench, tmp_path, RMUCallback(layer=LAYER, params=[r"layers\.2\.mlp"]))
    with pytest.raises(ValueError, match="token_mask"):
        RMUCallback(token_mask="answer")
    with pytest.raises(ValueError, match="nothing to optimise"):
        GradDiffTrainer(
            make_tiny_llama(chat_tokenizer),
            args=GradDiffConfig(output_dir=str(tmp_path), forget_coeff=0.0, retain_loss_type="none"),
            forget_dataset=bench["forget"],
            processing_class=chat_tokenizer,
        )
