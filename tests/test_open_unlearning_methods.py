"""UNDIAL, WGA, SatImp, CE-U and PDU: each loss against an independent formula on full logits, the parity flags
against open-unlearning's conventions, exact accumulation with their own normalisers, and PDU's dual variable
(updates, automatic constraint level, resume). Tiny LlamaConfig models, offline."""

import math

import pytest
import torch
import torch.nn.functional as F

from hf_unlearn import build_fictitious_authors
from hf_unlearn.data import IGNORE_INDEX
from hf_unlearn.registry import METHODS
from hf_unlearn.trainers import (
    CEUConfig,
    CEUTrainer,
    GradDiffConfig,
    GradDiffTrainer,
    PDUConfig,
    PDUTrainer,
    SatImpConfig,
    SatImpTrainer,
    UNDIALConfig,
    UNDIALTrainer,
    WGAConfig,
    WGATrainer,
)

from .conftest import StopAtStep, first_batch, make_tiny_llama, one_step_args


@pytest.fixture(scope="module")
def bench():
    return build_fictitious_authors(num_authors=10, qa_per_author=3, seed=1)


def _args(cfg, tmp_path, **kw):
    return one_step_args(cfg, tmp_path, **kw)


def _trainer(cls, cfg, tok, bench, tmp_path, *, model=None, retain=False, ref_model=None, **kw):
    return cls(
        model if model is not None else make_tiny_llama(tok),
        args=_args(cfg, tmp_path, **kw),
        forget_dataset=bench["forget"],
        retain_dataset=bench["retain"] if retain else None,
        processing_class=tok,
        ref_model=ref_model,
    )


def _shifted(model, batch, group="forget"):
    """Independent reference: full logits of the positions predicting each token, the shifted labels, their mask."""
    ids, mask, labels = (batch[f"{group}_{k}"] for k in ("input_ids", "attention_mask", "labels"))
    logits = model(input_ids=ids, attention_mask=mask).logits.float()[:, :-1]
    target = labels[:, 1:]
    return logits, target, target != IGNORE_INDEX


def _retain_nll(model, batch):
    logits, target, m = _shifted(model, batch, "retain")
    return F.cross_entropy(logits[m], target[m])


def _perturb(model, scale=0.02, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def test_label_logits_match_the_full_forward(chat_tokenizer, bench, tmp_path):
    tr = _trainer(CEUTrainer, CEUConfig, chat_tokenizer, bench, tmp_path, ignore_first_n_answer_tokens=0)
    batch = first_batch(tr)
    with torch.no_grad():
        out = tr.sequence_logps(tr.model, batch, ["forget"], label_logits_for=["forget"])["forget"]
        logits, target, m = _shifted(tr.model, batch)
    assert out.label_logits.shape == (int(m.sum()), logits.shape[-1])
    torch.testing.assert_close(out.label_logits, logits[m], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.label_mask, m)
    picked = logits.log_softmax(-1).gather(-1, target.clamp(min=0)[..., None]).squeeze(-1) * m
    torch.testing.assert_close(out.token_logps, picked, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------------- UNDIAL


def _undial_formula(student, teacher, target, mask, beta):
    """Answer positions only: CE(student, softmax(teacher - beta * onehot(label))), token mean."""
    adjusted = teacher[mask].clone()
    adjusted[torch.arange(adjusted.shape[0]), target[mask]] -= beta
    q = adjusted.softmax(-1)
    return -(q * student[mask].log_softmax(-1)).sum(-1).mean()


def test_undial_exact_teacher_matches_formula(chat_tokenizer, bench, tmp_path):
    assert UNDIALConfig(output_dir=str(tmp_path)).beta == 10.0  # (configs first: they reset accelerate's state)
    teacher_model = make_tiny_llama(chat_tokenizer, seed=5)
    tr = _trainer(
        UNDIALTrainer,
        UNDIALConfig,
        chat_tokenizer,
        bench,
        tmp_path,
        teacher_top_k=None,
        beta=3.0,
        ref_model=teacher_model,
    )
    batch = first_batch(tr)
    with torch.no_grad():
        loss = tr.compute_loss(tr.model, batch)
        student, target, m = _shifted(tr.model, batch)
        teacher, _, _ = _shifted(teacher_model, batch)
    torch.testing.assert_close(loss, _undial_formula(student, teacher, target, m, 3.0), rtol=1e-5, atol=1e-5)


def test_undial_precomputed_top_k_equals_exact_teacher_at_full_vocabulary(chat_tokenizer, bench, tmp_path):
    vocab = len(chat_tokenizer)
    full = _trainer(UNDIALTrainer, UNDIALConfig, chat_tokenizer, bench, tmp_path, teacher_top_k=vocab)
    assert full.ref_model is None  # the teacher lives in the forget table, no second model
    batch = first_batch(full)
    assert batch["forget_undial_teacher_logits"].dtype == torch.float32
    with torch.no_grad():
        teacher, target, m = _shifted(full.model, batch)  # the teacher is the model at initialisation
        _perturb(full.model)
        student, _, _ = _shifted(full.model, batch)
        torch.testing.assert_close(
            full.compute_loss(full.model, batch),
            _undial_formula(student, teacher, target, m, 10.0),
            rtol=1e-5,
            atol=1e-5,
        )
    assert full.objectives[0].teacher_tail_mass == pytest.approx(0.0, abs=1e-6)
    # A small k renormalises the target over the teacher's k largest adjusted logits and reports the mass left out.
    small = _trainer(UNDIALTrainer, UNDIALConfig, chat_tokenizer, bench, tmp_path, teacher_top_k=8)
    batch = first_batch(small)
    with torch.no_grad():
        teacher, target, m = _shifted(small.model, batch)
        adjusted = teacher[m].clone()
        adjusted[torch.arange(adjusted.shape[0]), target[m]] -= 10.0
        top = adjusted.topk(8, -1)
        logp = teacher[m].log_softmax(-1).gather(-1, top.indices)
        expected = -(top.values.softmax(-1) * logp).sum(-1).mean()
        torch.testing.assert_close(small.compute_loss(small.model, batch), expected, rtol=1e-5, atol=1e-5)
    tail = small.objectives[0].teacher_tail_mass
    assert 0.0 < tail < 1.0


def test_undial_parity_flag_reproduces_all_positions_and_wrapped_one_hot(chat_tokenizer, bench, tmp_path):
    teacher_model = make_tiny_llama(chat_tokenizer, seed=5)
    _perturb(teacher_model, 0.5)  # peaked distributions, so that positions differ
    tr = _trainer(
        UNDIALTrainer,
        UNDIALConfig,
        chat_tokenizer,
        bench,
        tmp_path,
        undial_all_positions=True,
        beta=3.0,
        ref_model=teacher_model,
    )
    batch = first_batch(tr)
    _perturb(tr.model, 0.5, seed=1)
    with torch.no_grad():
        loss = tr.compute_loss(tr.model, batch)
        student, target, m = _shifted(tr.model, batch)
        teacher, _, _ = _shifted(teacher_model, batch)
    # open-unlearning: a one-hot written at index -100 for unlabelled positions (vocabulary id V - 100), the
    # cross-entropy averaged over every position of the padded batch.
    onehot = torch.zeros_like(teacher)
    b, t = torch.meshgrid(torch.arange(target.shape[0]), torch.arange(target.shape[1]), indexing="ij")
    onehot[b, t, target] = 1.0
    q = (teacher - 3.0 * onehot).softmax(-1)
    expected = -(q * student.log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    fixed = _undial_formula(student, teacher, target, m, 3.0)
    assert abs(float(loss - fixed)) > 0.05  # the two conventions differ on this batch
    with pytest.raises(ValueError, match="retain_dataset would be ignored"):  # retain weight 0 by default
        _trainer(UNDIALTrainer, UNDIALConfig, chat_tokenizer, bench, tmp_path, retain=True)


# ---------------------------------------------------------------------------------------------- WGA, SatImp


@pytest.mark.parametrize(
    "cls,cfg,kw,weight",
    [
        (WGATrainer, WGAConfig, {"beta": 0.7}, lambda p: p**0.7),
        (SatImpTrainer, SatImpConfig, {"beta1": 2.0, "beta2": 0.5}, lambda p: p**2.0 * (1 - p) ** 0.5),
    ],
)
def test_reweighted_ascent_matches_formula(chat_tokenizer, bench, tmp_path, cls, cfg, kw, weight):
    forget_coeff = cfg(output_dir=str(tmp_path)).forget_coeff
    tr = _trainer(cls, cfg, chat_tokenizer, bench, tmp_path, retain=True, **kw)
    batch = first_batch(tr)
    with torch.no_grad():
        _perturb(tr.model, 0.3)  # move probabilities away from uniform so the weights vary
        loss = tr.compute_loss(tr.model, batch)
        logits, target, m = _shifted(tr.model, batch)
        nll = F.cross_entropy(logits[m], target[m], reduction="none")
        p = (-nll).exp()
        forget = -(weight(p) * nll).mean()  # open-unlearning's form: -(w * nll) over label tokens, mean
        expected = forget_coeff * forget + _retain_nll(tr.model, batch)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    # The weight is detached: the gradient is the weighted ascent gradient, not that of w * nll.
    tr.model.zero_grad()
    tr.compute_loss(tr.model, batch).backward()
    got = [q.grad.clone() for q in tr.model.parameters()]
    tr.model.zero_grad()
    logits, target, m = _shifted(tr.model, batch)
    nll = F.cross_entropy(logits[m], target[m], reduction="none")
    (forget_coeff * -(weight((-nll).exp()).detach() * nll).mean() + _retain_nll(tr.model, batch)).backward()
    for a, b in zip(got, (q.grad for q in tr.model.parameters()), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_satimp_defaults_and_wga_at_beta_0_is_grad_diff(chat_tokenizer, bench, tmp_path):
    s = SatImpConfig(output_dir=str(tmp_path))
    assert (s.beta1, s.beta2, s.forget_coeff, s.retain_coeff, s.learning_rate, s.num_train_epochs) == (
        5.0,
        1.0,
        0.1,
        1.0,
        1e-5,
        5.0,
    )
    wga = _trainer(WGATrainer, WGAConfig, chat_tokenizer, bench, tmp_path, retain=True, beta=0.0, seed=4)
    gd = _trainer(GradDiffTrainer, GradDiffConfig, chat_tokenizer, bench, tmp_path, retain=True, seed=4)
    batch = first_batch(wga)
    with torch.no_grad():
        torch.testing.assert_close(wga.compute_loss(wga.model, batch), gd.compute_loss(wga.model, batch))


# ------------------------------------------------------------------------------------------------------ CE-U


def test_ceu_matches_formula_skips_first_tokens_and_its_gradient_is_p_minus_q(chat_tokenizer, bench, tmp_path):
    assert CEUConfig(output_dir=str(tmp_path)).retain_loss_type == "none"
    tr = _trainer(CEUTrainer, CEUConfig, chat_tokenizer, bench, tmp_path, ignore_first_n_answer_tokens=2)
    batch = first_batch(tr)
    with torch.no_grad():
        loss = tr.compute_loss(tr.model, batch)
        logits, target, m = _shifted(tr.model, batch)
    keep = m & (m.cumsum(-1) > 2)  # the first two answer tokens of every row are left out
    assert keep.sum() == m.sum() - 2 * m.shape[0]
    z = logits[keep]
    q = z.scatter(-1, target[keep][:, None], float("-inf")).softmax(-1)
    expected = -(q * z.log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    # d loss / d z = (p - q) / n at every kept position: the true token's probability is pushed down.
    z = z.clone().requires_grad_(True)
    from hf_unlearn.trainers.losses import ceu_loss

    ceu_loss(z, target[keep]).sum().backward()
    torch.testing.assert_close(z.grad, z.detach().softmax(-1) - q, rtol=1e-5, atol=1e-6)


def test_ceu_batch_without_kept_tokens_is_zero_not_nan(chat_tokenizer, bench, tmp_path):
    tr = _trainer(CEUTrainer, CEUConfig, chat_tokenizer, bench, tmp_path, ignore_first_n_answer_tokens=10_000)
    batch = first_batch(tr)
    with torch.no_grad():
        assert float(tr.compute_loss(tr.model, batch)) == 0.0  # open-unlearning's mean over nothing is NaN


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize(
    "cls,cfg,kw",
    [
        (CEUTrainer, CEUConfig, {"ignore_first_n_answer_tokens": 1}),
        (UNDIALTrainer, UNDIALConfig, {"teacher_top_k": 16}),
        (PDUTrainer, PDUConfig, {"retain_loss_eps": 1.0, "primal_dual": False}),
    ],
)
def test_gradient_accumulation_is_exact_with_method_counts(chat_tokenizer, bench, tmp_path, cls, cfg, kw):
    results = []
    retain = cls is PDUTrainer
    for bs, ga in ((4, 1), (2, 2)):
        tr = _trainer(
            cls,
            cfg,
            chat_tokenizer,
            bench,
            tmp_path / f"{bs}",
            retain=retain,
            per_device_train_batch_size=bs,
            gradient_accumulation_steps=ga,
            optim="sgd",
            learning_rate=0.5,
            weight_decay=0.0,
            seed=3,
            **kw,
        )
        before = _params(tr.model)
        tr.train()
        results.append(_params(tr.model))
    assert any(not torch.equal(before[n], results[0][n]) for n in before)
    for name in results[0]:
        torch.testing.assert_close(results[0][name], results[1][name], rtol=1e-5, atol=1e-6, msg=name)


# ------------------------------------------------------------------------------------------------------- PDU


def _pdu(tok, bench, tmp_path, **kw):
    return _trainer(PDUTrainer, PDUConfig, tok, bench, tmp_path, retain=True, **kw)


def _margin(z):
    return (z.max(-1).values - z.mean(-1)) ** 2


def test_pdu_loss_matches_formula_and_parity_mask(chat_tokenizer, bench, tmp_path):
    for unshifted in (False, True):
        tr = _pdu(
            chat_tokenizer,
            bench,
            tmp_path,
            retain_coeff=4.0,
            retain_loss_eps=0.5,
            forget_coeff=2.0,
            pdu_unshifted_mask=unshifted,
        )
        batch = first_batch(tr)
        with torch.no_grad():
            loss = tr.compute_loss(tr.model, batch)
            if unshifted:  # open-unlearning: unshifted logits masked with the unshifted labels
                ids, mask = batch["forget_input_ids"], batch["forget_attention_mask"]
                z = tr.model(input_ids=ids, attention_mask=mask).logits.float()
                forget = _margin(z[batch["forget_labels"] != IGNORE_INDEX]).mean()
            else:
                z, _, m = _shifted(tr.model, batch)
                forget = _margin(z[m]).mean()
            expected = 2.0 * forget + 4.0 * (_retain_nll(tr.model, batch) - 0.5)
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)


def test_pdu_dual_ascent_per_step_and_automatic_eps(chat_tokenizer, bench, tmp_path):
    tr = _pdu(
        chat_tokenizer,
        bench,
        tmp_path,
        retain_coeff=1.0,
        retain_loss_eps_factor=0.5,
        dual_step_size=0.3,
        dual_warmup_epochs=0,
        max_steps=3,
    )
    # eps = factor x the retain NLL of the model before training (its first 256 retain rows: all 24 here).
    with torch.no_grad():
        total = n = 0.0
        for b in tr._table_batches(tr.retain_dataset, 8):
            logits, target, m = _shifted(tr.model, {f"retain_{k}": v for k, v in b.items()}, "retain")
            total += float(F.cross_entropy(logits[m], target[m], reduction="sum"))
            n += float(m.sum())
    assert tr.dual.eps == pytest.approx(0.5 * total / n, rel=1e-5)
    seen: list[tuple[float, float]] = []  # (lambda used by a step, that step's retain NLL)
    original = tr.compute_loss

    def spy(model, inputs, *a, **k):
        with torch.no_grad():
            seen.append((tr.dual.value, float(_retain_nll(model, inputs))))
        return original(model, inputs, *a, **k)

    tr.compute_loss = spy
    tr.train()
    lam = 1.0
    assert len(seen) == 3
    for used, nll in seen:
        assert used == pytest.approx(lam, rel=1e-5)
        lam = max(0.0, lam + 0.3 * (nll - tr.dual.eps))
    assert tr.dual.value == pytest.approx(lam, rel=1e-4) and tr.dual.value > 1.0  # the constraint is violated
    logged = [h["pdu/dual"] for h in tr.state.log_history if "pdu/dual" in h]
    assert logged[0] == pytest.approx(1.0)


def test_pdu_warmup_and_epoch_updates(chat_tokenizer, bench, tmp_path):
    # 3 forget rows, batch 3: one step per epoch. Warm-up 1 epoch: lambda fixed in epoch 1, updated from its end.
    tr = _pdu(
        chat_tokenizer,
        bench,
        tmp_path,
        retain_loss_eps=0.0,
        dual_warmup_epochs=1,
        dual_update_upon="epoch",
        per_device_train_batch_size=3,
        max_steps=2,
        dual_step_size=0.1,
    )
    epoch_nll = {}
    original = tr.paired_retain_nll

    def spy(epoch):
        epoch_nll[epoch] = original(epoch)
        return epoch_nll[epoch]

    tr.paired_retain_nll = spy
    tr.train()
    assert sorted(epoch_nll) == [0, 1]  # after epoch 1 (warm-up over) and epoch 2
    assert tr.dual.value == pytest.approx(1.0 + 0.1 * (epoch_nll[0] + epoch_nll[1]), rel=1e-6)


def test_pdu_resume_restores_the_dual_variable(chat_tokenizer, bench, tmp_path):
    common = dict(
        retain=True,
        per_device_train_batch_size=1,
        max_steps=4,
        seed=7,
        learning_rate=5e-3,
        save_strategy="steps",
        save_steps=1,
        retain_loss_eps=0.0,
        dual_warmup_epochs=0,
        dual_step_size=0.2,
    )
    full = _trainer(PDUTrainer, PDUConfig, chat_tokenizer, bench, tmp_path / "a", **common)
    full.train()
    partial = _trainer(PDUTrainer, PDUConfig, chat_tokenizer, bench, tmp_path / "b", **common)
    partial.add_callback(StopAtStep(2))
    partial.train()
    from safetensors.torch import load_file

    state = load_file(tmp_path / "b" / "out" / "checkpoint-2" / "hf_unlearn_state.safetensors")
    (key,) = state  # one stateful objective: the retain term that owns the dual variable
    assert key.endswith("PDURetainObjective/dual")
    assert state[key].tolist()[:2] == [pytest.approx(partial.dual.value), 1.0]  # lambda and "may update"
    resumed = _trainer(PDUTrainer, PDUConfig, chat_tokenizer, bench, tmp_path / "b", **common)
    resumed.train(resume_from_checkpoint=str(tmp_path / "b" / "out" / "checkpoint-2"))
    assert resumed.dual.value == pytest.approx(full.dual.value, rel=1e-6) and full.dual.value > 1.0
    a, b = _params(full.model), _params(resumed.model)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)


def test_pdu_needs_a_retain_set_and_an_nll_constraint(chat_tokenizer, bench, tmp_path):
    with pytest.raises(ValueError, match="retain_dataset"):
        _trainer(PDUTrainer, PDUConfig, chat_tokenizer, bench, tmp_path)
    with pytest.raises(ValueError, match="retain_loss_type must be 'nll'"):
        PDUConfig(output_dir=str(tmp_path), retain_loss_type="kl")
    with pytest.raises(ValueError, match="dual_update_upon"):
        PDUConfig(output_dir=str(tmp_path), dual_update_upon="batch")


def test_every_registered_method_has_a_recipe_and_paper(tmp_path):
    import yaml

    for name in ("undial", "wga", "satimp", "ceu", "pdu"):
        spec = METHODS[name]
        recipe = yaml.safe_load(spec.recipe_path.read_text())
        assert recipe["method"] == name
        cls = spec.trainer_class
        assert cls._paper["id"] and "arXiv" not in cls._paper["title"]
        keys = {k for k in recipe if hasattr(spec.config_class, k) or k in spec.config_class.__dataclass_fields__}
        extra = set(recipe) - keys - {"method", "dataset_name", "tofu_split", "model_name_or_path"}
        assert not extra, (name, extra)
    assert math.isclose(UNDIALConfig(output_dir=str(tmp_path)).learning_rate, 1e-4)
