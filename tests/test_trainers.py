"""Output-level trainers: each loss against its spec formula computed independently here, reference modes, exact
gradient accumulation, resume, safety. Tiny LlamaConfig models, offline."""

import math

import pytest
import torch
import torch.nn.functional as F

from hf_unlearn import build_fictitious_authors
from hf_unlearn.data import IGNORE_INDEX
from hf_unlearn.trainers import (
    GradAscentConfig,
    GradAscentTrainer,
    GradDiffConfig,
    GradDiffTrainer,
    IdkDPOConfig,
    IdkDPOTrainer,
    IdkSFTConfig,
    IdkSFTTrainer,
    NonFiniteLossError,
    NPOConfig,
    NPOTrainer,
    SimNPOConfig,
    SimNPOTrainer,
)

from .conftest import StopAtStep, first_batch, make_tiny_llama, one_step_args


@pytest.fixture(scope="module")
def bench():
    return build_fictitious_authors(num_authors=10, qa_per_author=3, seed=1)


def _args(cls, tmp_path, **kw):
    return one_step_args(cls, tmp_path, **kw)


def _trainer(cls, cfg, tok, bench, tmp_path, *, model=None, retain=True, **kw):
    model = model if model is not None else make_tiny_llama(tok)
    return cls(
        model,
        args=_args(cfg, tmp_path, **kw),
        forget_dataset=bench["forget"],
        retain_dataset=bench["retain"] if retain else None,
        processing_class=tok,
    )


def _seq_stats(model, ids, mask, labels):
    """Independent reference: per-row summed log-prob and label count from full logits."""
    logits = model(input_ids=ids, attention_mask=mask).logits.float()
    logp = logits[:, :-1].log_softmax(-1)
    t = labels[:, 1:]
    m = t != IGNORE_INDEX
    tok_logp = logp.gather(-1, t.clamp(min=0)[..., None]).squeeze(-1) * m
    return tok_logp.sum(1), m.sum(1)


def _group(model, batch, g):
    return _seq_stats(model, batch[f"{g}_input_ids"], batch[f"{g}_attention_mask"], batch[f"{g}_labels"])


def test_configs_work_on_cpu_without_flags(tmp_path):
    for cfg in (NPOConfig, SimNPOConfig, GradAscentConfig, GradDiffConfig, IdkSFTConfig, IdkDPOConfig):
        args = cfg(output_dir=str(tmp_path))
        assert args.bf16 is False and args.learning_rate == 1e-5 and args.num_train_epochs == 10
        assert args.save_strategy == "no"  # no full checkpoints unless asked
    assert NPOConfig(output_dir=str(tmp_path)).precompute_ref_log_probs is True
    assert SimNPOConfig(output_dir=str(tmp_path)).beta == 4.5
    with pytest.raises(ValueError, match="retain_loss_type"):
        NPOConfig(output_dir=str(tmp_path), retain_loss_type="mse")
    with pytest.raises(ValueError, match="GradDiffConfig"):
        GradAscentConfig(output_dir=str(tmp_path), retain_loss_type="nll")


def test_npo_loss_matches_formula_and_is_2_over_beta_ln2_at_init(chat_tokenizer, bench, tmp_path):
    tr = _trainer(NPOTrainer, NPOConfig, chat_tokenizer, bench, tmp_path, beta=0.25)
    batch = first_batch(tr)
    model = tr.model
    with torch.no_grad():
        loss = tr.compute_loss(model, batch)
        logps, _ = _group(model, batch, "forget")
        r_logps, r_n = _group(model, batch, "retain")
    ref = batch["forget_ref_logps"]
    torch.testing.assert_close(ref, logps, rtol=1e-5, atol=1e-4)  # precomputed = model at init
    npo = (-(2 / 0.25) * F.logsigmoid(0.25 * (ref - logps))).mean()
    assert math.isclose(float(npo), (2 / 0.25) * math.log(2), rel_tol=1e-5)
    expected = npo + (-r_logps.sum() / r_n.sum())
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    # After the model moves, the formula still holds with the precomputed reference.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
        loss = tr.compute_loss(model, batch)
        logps, _ = _group(model, batch, "forget")
        r_logps, r_n = _group(model, batch, "retain")
    expected = (-(2 / 0.25) * F.logsigmoid(0.25 * (ref - logps))).mean() - r_logps.sum() / r_n.sum()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    scaled = _trainer(
        NPOTrainer,
        NPOConfig,
        chat_tokenizer,
        bench,
        tmp_path,
        beta=0.25,
        loss_scale=1.0,
        retain_loss_type="none",
        model=make_tiny_llama(chat_tokenizer),
        retain=False,
    )
    with torch.no_grad():
        assert math.isclose(float(scaled.compute_loss(scaled.model, first_batch(scaled))), math.log(2), rel_tol=1e-5)


def test_npo_reference_modes_agree(chat_tokenizer, bench, tmp_path):
    from peft import LoraConfig

    batch_src = _trainer(NPOTrainer, NPOConfig, chat_tokenizer, bench, tmp_path)
    batch = first_batch(batch_src)
    with torch.no_grad():
        pre = float(batch_src.compute_loss(batch_src.model, batch))
    live_batch = {k: v for k, v in batch.items() if k != "forget_ref_logps"}
    explicit = NPOTrainer(
        make_tiny_llama(chat_tokenizer),
        args=_args(NPOConfig, tmp_path, precompute_ref_log_probs=False),
        ref_model=make_tiny_llama(chat_tokenizer),
        forget_dataset=bench["forget"],
        retain_dataset=bench["retain"],
        processing_class=chat_tokenizer,
    )
    assert explicit.ref_model is not None
    peft = NPOTrainer(
        make_tiny_llama(chat_tokenizer),
        args=_args(NPOConfig, tmp_path, precompute_ref_log_probs=False),
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
        forget_dataset=bench["forget"],
        retain_dataset=bench["retain"],
        processing_class=chat_tokenizer,
    )
    assert peft.ref_model is None
    with torch.no_grad():
        exp = float(explicit.compute_loss(explicit.model, live_batch))
        # A non-zero adapter: the model differs from its base, the reference (adapter disabled) does not.
        base_logps = explicit.reference_logps(
            explicit.model, batch["forget_input_ids"], batch["forget_attention_mask"], batch["forget_labels"]
        )
        peft_ref = peft.reference_logps(
            peft.model, batch["forget_input_ids"], batch["forget_attention_mask"], batch["forget_labels"]
        )
    assert math.isclose(pre, exp, rel_tol=1e-5)
    torch.testing.assert_close(peft_ref, base_logps, rtol=1e-5, atol=1e-4)
    # A fresh (zero-initialised) adapter: the policy equals its base, so the PEFT-reference loss equals the others.
    fresh = NPOTrainer(
        make_tiny_llama(chat_tokenizer),
        args=_args(NPOConfig, tmp_path, precompute_ref_log_probs=False),
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
        forget_dataset=bench["forget"],
        retain_dataset=bench["retain"],
        processing_class=chat_tokenizer,
    )
    with torch.no_grad():
        assert math.isclose(float(fresh.compute_loss(fresh.model, live_batch)), pre, rel_tol=1e-5)
    assert batch_src.ref_model is None  # full fine-tuning with precompute keeps no second model


def test_simnpo_paper_form_and_parity_flag(chat_tokenizer, bench, tmp_path):
    for parity in (False, True):
        tr = _trainer(
            SimNPOTrainer,
            SimNPOConfig,
            chat_tokenizer,
            bench,
            tmp_path,
            beta=0.5,
            gamma=2.0,
            forget_coeff=1.0,
            margin_scaled_by_beta=parity,
        )
        assert tr.ref_model is None
        batch = first_batch(tr)
        with torch.no_grad():
            loss = tr.compute_loss(tr.model, batch)
            logps, n = _group(tr.model, batch, "forget")
            r_logps, r_n = _group(tr.model, batch, "retain")
        z = 0.5 * (-logps / n) - (0.5 * 2.0 if parity else 2.0)
        expected = (-(2 / 0.5) * F.logsigmoid(z)).mean() - r_logps.sum() / r_n.sum()
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)


def test_grad_ascent_and_grad_diff_token_means(chat_tokenizer, bench, tmp_path):
    ga = _trainer(GradAscentTrainer, GradAscentConfig, chat_tokenizer, bench, tmp_path, retain=False)
    batch = first_batch(ga)
    assert "retain_input_ids" not in batch and ga.ref_model is None
    with torch.no_grad():
        logps, n = _group(ga.model, batch, "forget")
        torch.testing.assert_close(ga.compute_loss(ga.model, batch), logps.sum() / n.sum(), rtol=1e-5, atol=1e-5)
    gd = _trainer(GradDiffTrainer, GradDiffConfig, chat_tokenizer, bench, tmp_path, forget_coeff=0.5, retain_coeff=2.0)
    batch = first_batch(gd)
    with torch.no_grad():
        f, fn = _group(gd.model, batch, "forget")
        r, rn = _group(gd.model, batch, "retain")
        expected = 0.5 * f.sum() / fn.sum() + 2.0 * (-r.sum() / rn.sum())
        torch.testing.assert_close(gd.compute_loss(gd.model, batch), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="no retain term"):
        _trainer(GradAscentTrainer, GradAscentConfig, chat_tokenizer, bench, tmp_path)


def test_kl_retain_masked_and_parity(chat_tokenizer, bench, tmp_path):
    with pytest.raises(ValueError, match="cannot be precomputed"):
        _trainer(
            GradDiffTrainer,
            GradDiffConfig,
            chat_tokenizer,
            bench,
            tmp_path,
            retain_loss_type="kl",
            precompute_ref_log_probs=True,
        )
    with pytest.raises(ValueError, match="built in memory"):
        _trainer(GradDiffTrainer, GradDiffConfig, chat_tokenizer, bench, tmp_path, retain_loss_type="kl")
    for all_positions in (False, True):
        ref = make_tiny_llama(chat_tokenizer, seed=5)
        tr = GradDiffTrainer(
            make_tiny_llama(chat_tokenizer),
            args=_args(
                GradDiffConfig,
                tmp_path,
                retain_loss_type="kl",
                kl_all_positions=all_positions,
                per_device_train_batch_size=3,
            ),
            ref_model=ref,
            forget_dataset=bench["forget"],
            retain_dataset=bench["retain"],
            processing_class=chat_tokenizer,
        )
        batch = first_batch(tr)
        with torch.no_grad():
            f, fn = _group(tr.model, batch, "forget")
            ids, mask = batch["retain_input_ids"], batch["retain_attention_mask"]
            p = tr.model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
            q = ref(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
            kl = (q.exp() * (q - p)).sum(-1)
            retain = kl.mean() if all_positions else (kl * mask).sum() / mask.sum()
            assert (mask == 0).any()  # padding present, so the two forms differ
            torch.testing.assert_close(
                tr.compute_loss(tr.model, batch), f.sum() / fn.sum() + retain, rtol=1e-5, atol=1e-5
            )


def test_idk_objectives(chat_tokenizer, bench, tmp_path):
    sft = _trainer(IdkSFTTrainer, IdkSFTConfig, chat_tokenizer, bench, tmp_path, idk_responses=["I don't know."])
    batch = first_batch(sft)
    labels = [t for t in batch["forget_idk_labels"][0].tolist() if t != IGNORE_INDEX]
    assert chat_tokenizer.decode(labels) == "I don't know.<|im_end|>"  # the refusal is its own column group
    with torch.no_grad():
        f, fn = _group(sft.model, batch, "forget_idk")
        r, rn = _group(sft.model, batch, "retain")
        torch.testing.assert_close(
            sft.compute_loss(sft.model, batch), -f.sum() / fn.sum() - r.sum() / rn.sum(), rtol=1e-5, atol=1e-5
        )
    dpo = _trainer(IdkDPOTrainer, IdkDPOConfig, chat_tokenizer, bench, tmp_path, beta=0.2)
    batch = first_batch(dpo)
    with torch.no_grad():
        for p in dpo.model.parameters():  # move away from the (precomputed) reference
            p.add_(0.01 * torch.randn_like(p))
        loss = dpo.compute_loss(dpo.model, batch)
        w, _ = _group(dpo.model, batch, "forget_idk")
        l_, _ = _group(dpo.model, batch, "forget")
        r, rn = _group(dpo.model, batch, "retain")
    margin = (w - batch["forget_idk_ref_logps"]) - (l_ - batch["forget_ref_logps"])
    expected = (-(2 / 0.2) * F.logsigmoid(0.2 * margin)).mean() - r.sum() / rn.sum()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("cls,cfg", [(GradDiffTrainer, GradDiffConfig), (NPOTrainer, NPOConfig)])
def test_gradient_accumulation_is_exact(chat_tokenizer, bench, tmp_path, cls, cfg):
    results = []
    for bs, ga in ((4, 1), (2, 2)):
        tr = _trainer(
            cls,
            cfg,
            chat_tokenizer,
            bench,
            tmp_path / f"{bs}",
            per_device_train_batch_size=bs,
            gradient_accumulation_steps=ga,
            optim="sgd",
            learning_rate=0.5,
            weight_decay=0.0,
            seed=3,
        )
        before = _params(tr.model)
        tr.train()
        results.append(_params(tr.model))
    assert any(not torch.equal(before[n], results[0][n]) for n in before)
    for name in results[0]:
        torch.testing.assert_close(results[0][name], results[1][name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("stop", [1, 4, 7])  # inside epochs 0, 1 and 2 (3 forget rows, batch 1)
def test_resume_inside_any_epoch_matches_uninterrupted_run(chat_tokenizer, bench, tmp_path, stop):
    common = dict(
        per_device_train_batch_size=1,
        max_steps=8,
        seed=7,
        learning_rate=5e-3,
        save_strategy="steps",
        save_steps=1,
        save_only_model=False,
        retain_per_forget=2,
    )
    full = _trainer(GradDiffTrainer, GradDiffConfig, chat_tokenizer, bench, tmp_path / "a", **common)
    full.train()
    partial = _trainer(GradDiffTrainer, GradDiffConfig, chat_tokenizer, bench, tmp_path / "b", **common)
    partial.add_callback(StopAtStep(stop))
    partial.train()
    resumed = _trainer(GradDiffTrainer, GradDiffConfig, chat_tokenizer, bench, tmp_path / "b", **common)
    resumed.train(resume_from_checkpoint=str(tmp_path / "b" / "out" / f"checkpoint-{stop}"))
    assert resumed.state.global_step == 8
    a, b = _params(full.model), _params(resumed.model)
    for name in a:
        assert torch.equal(a[name], b[name]), name  # bit for bit


def test_resume_from_checkpoint_matches_uninterrupted_run(chat_tokenizer, bench, tmp_path):
    common = dict(
        per_device_train_batch_size=2,
        max_steps=4,
        seed=7,
        learning_rate=5e-3,
        save_strategy="steps",
        save_steps=2,
        retain_per_forget=2,
    )
    full = _trainer(NPOTrainer, NPOConfig, chat_tokenizer, bench, tmp_path / "a", **common)
    full.train()
    partial = _trainer(NPOTrainer, NPOConfig, chat_tokenizer, bench, tmp_path / "b", **common)
    partial.add_callback(StopAtStep(2))  # an interruption: same 4-step schedule, stopped after step 2's checkpoint
    partial.train()
    assert partial.state.global_step == 2
    resumed = _trainer(NPOTrainer, NPOConfig, chat_tokenizer, bench, tmp_path / "b", **common)
    resumed.train(resume_from_checkpoint=str(tmp_path / "b" / "out" / "checkpoint-2"))
    a, b = _params(full.model), _params(resumed.model)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)


def test_non_finite_loss_stops_with_step_and_term(chat_tokenizer, bench, tmp_path):
    tr = _trainer(GradDiffTrainer, GradDiffConfig, chat_tokenizer, bench, tmp_path, max_steps=3)
    before = _params(tr.model)
    calls = {"n": 0}
    original = tr.sequence_logps

    def poisoned(model, inputs, groups, **kw):
        out = original(model, inputs, groups, **kw)
        calls["n"] += 1
        if calls["n"] == 2:
            out["retain"].logps[0] = float("nan")
        return out

    tr.sequence_logps = poisoned
    with pytest.raises(NonFiniteLossError, match=r"optimizer step 2 \(forget=.*retain=nan"):
        tr.train()
    after = _params(tr.model)
    assert any(not torch.equal(before[n], after[n]) for n in before)  # step 1 happened, step 2 did not update


def test_non_finite_gradient_from_a_finite_loss_stops_before_the_update(chat_tokenizer, bench, tmp_path):
    tr = _trainer(GradDiffTrainer, GradDiffConfig, chat_tokenizer, bench, tmp_path, max_steps=3, max_grad_norm=0.0)
    calls = {"n": 0}
    snapshot = {}

    def poison(grad):  # the loss stays finite; one gradient entry of step 2 becomes infinite
        calls["n"] += 1
        if calls["n"] == 2:
            snapshot.update(_params(tr.model))
            return grad.index_fill(0, torch.tensor([0]), float("inf"))
        return grad

    tr.model.lm_head.weight.register_hook(poison)
    with pytest.raises(NonFiniteLossError, match=r"Non-finite gradient at optimizer step 2"):
        tr.train()
    after = _params(tr.model)
    assert all(torch.isfinite(p).all() for p in after.values())
    assert all(torch.equal(snapshot[n], after[n]) for n in after)  # step 2 was not applied
    with pytest.raises(ValueError, match="learning_rate must be a finite number"):
        GradDiffConfig(output_dir=str(tmp_path), learning_rate=float("inf"))


def test_ascent_guards(chat_tokenizer, bench, tmp_path):
    tr = _trainer(
        GradAscentTrainer,
        GradAscentConfig,
        chat_tokenizer,
        bench,
        tmp_path,
        retain=False,
        stop_at_forget_nll=0.0,
        max_steps=5,
    )
    tr.train()
    assert tr.state.global_step == 1  # the first batch's NLL is above 0: stop after that step
    capped = _trainer(
        GradAscentTrainer, GradAscentConfig, chat_tokenizer, bench, tmp_path, retain=False, forget_nll_ceiling=0.0
    )
    batch = first_batch(capped)
    loss = capped.compute_loss(capped.model, batch)
    assert float(loss.detach()) == 0.0  # every token's NLL is above the ceiling: the ascent term is flat
    loss.backward()
    assert all(p.grad is None or not p.grad.any() for p in capped.model.parameters())


def test_bad_inputs_are_clear(chat_tokenizer, bench, tmp_path):
    with pytest.raises(ValueError, match="needs retain_dataset"):
        _trainer(NPOTrainer, NPOConfig, chat_tokenizer, bench, tmp_path, retain=False)
    with pytest.raises(ValueError, match="uses no reference model"):
        SimNPOTrainer(
            make_tiny_llama(chat_tokenizer),
            args=_args(SimNPOConfig, tmp_path),
            ref_model=make_tiny_llama(chat_tokenizer),
            forget_dataset=bench["forget"],
            retain_dataset=bench["retain"],
            processing_class=chat_tokenizer,
        )
    with pytest.raises(ValueError, match="built in memory"):
        _trainer(NPOTrainer, NPOConfig, chat_tokenizer, bench, tmp_path, precompute_ref_log_probs=False)
    with pytest.raises(ValueError, match="forget_dataset is empty"):
        NPOTrainer(
            make_tiny_llama(chat_tokenizer),
            args=_args(NPOConfig, tmp_path),
            forget_dataset=[],
            retain_dataset=bench["retain"],
            processing_class=chat_tokenizer,
        )
    with pytest.raises(TypeError, match="takes a NPOConfig"):
        NPOTrainer(
            make_tiny_llama(chat_tokenizer),
            args=_args(GradDiffConfig, tmp_path),
            forget_dataset=bench["forget"],
            retain_dataset=bench["retain"],
            processing_class=chat_tokenizer,
        )
