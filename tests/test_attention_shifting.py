"""Attention Shifting: the custom attention reproduces the model's, the suppression term equals its formula, training
drives attention on fact tokens toward zero while retain outputs stay within tolerance, fallbacks and errors."""

import pytest
import torch

from hf_unlearn import build_fictitious_authors
from hf_unlearn.callbacks import AttentionShiftingCallback
from hf_unlearn.data import IGNORE_INDEX
from hf_unlearn.evaluation import score_sequences
from hf_unlearn.trainers import GradDiffConfig, GradDiffTrainer

from .conftest import callbacks_only_trainer, first_batch, make_tiny_llama

LAYERS = [0, 1]


@pytest.fixture(scope="module")
def bench():
    return build_fictitious_authors(num_authors=10, qa_per_author=4, seed=6)


def _trainer(tok, bench, tmp_path, cb, model=None, **kw):
    return callbacks_only_trainer(tok, bench, tmp_path, cb, model=model, **{"learning_rate": 2e-2, **kw})


def test_custom_attention_reproduces_the_model(chat_tokenizer, bench, tmp_path):
    reference = make_tiny_llama(chat_tokenizer, layers=3)
    tr = _trainer(chat_tokenizer, bench, tmp_path, AttentionShiftingCallback(layers=LAYERS))
    assert tr.model.config._attn_implementation == "hf_unlearn_attention_shifting"
    batch = first_batch(tr)
    ids, mask = batch["retain_input_ids"], batch["retain_attention_mask"]
    with torch.no_grad():
        ours = tr.model(input_ids=ids, attention_mask=mask).logits
        ref = reference(input_ids=ids, attention_mask=mask).logits
    real = mask.bool()
    torch.testing.assert_close(ours[real], ref[real], rtol=1e-4, atol=1e-4)  # causal mask in place (registered)


def test_fact_masks_from_spans_and_saliency_fallback(chat_tokenizer, bench, tmp_path):
    tr = _trainer(chat_tokenizer, bench, tmp_path, AttentionShiftingCallback(layers=LAYERS, saliency_top_p=0.25))
    for ex in tr.forget_dataset:
        fact = bench["forget"][ex["index"]]["fact"]
        marked = chat_tokenizer.decode([t for t, m in zip(ex["input_ids"], ex["span_mask"], strict=True) if m])
        assert marked.strip() == fact
        assert chat_tokenizer.decode([t for t in ex["abstain_labels"] if t != IGNORE_INDEX]).endswith("<|im_end|>")
    no_spans = [{k: v for k, v in r.items() if k not in ("fact", "fact_span")} for r in bench["forget"]]
    tr2 = GradDiffTrainer(
        make_tiny_llama(chat_tokenizer, layers=3),
        args=GradDiffConfig(output_dir=str(tmp_path / "b"), forget_coeff=0.0, retain_loss_type="none", report_to=[]),
        forget_dataset=no_spans,
        retain_dataset=bench["retain"],
        processing_class=chat_tokenizer,
        callbacks=[AttentionShiftingCallback(layers=LAYERS, saliency_top_p=0.25)],
    )
    for ex in tr2.forget_dataset:
        n_answer = sum(t != IGNORE_INDEX for t in ex["labels"])
        marked = [i for i, m in enumerate(ex["span_mask"]) if m]
        assert len(marked) == -(-n_answer // 4)  # ceil(0.25 * answer tokens)
        assert all(ex["labels"][i] != IGNORE_INDEX for i in marked)  # answer tokens only


def test_suppression_term_equals_its_formula(chat_tokenizer, bench, tmp_path):
    cb = AttentionShiftingCallback(layers=LAYERS, suppress_coeff=2.0, retain_coeff=0.0, abstain_coeff=0.0)
    tr = _trainer(chat_tokenizer, bench, tmp_path, cb)
    batch = first_batch(tr)
    eager = make_tiny_llama(chat_tokenizer, layers=3)
    eager.set_attn_implementation("eager")
    tr.model.train()
    with torch.no_grad():
        loss = tr.compute_loss(tr.model, batch)
        out = eager(
            input_ids=batch["forget_input_ids"], attention_mask=batch["forget_attention_mask"], output_attentions=True
        )
    span = batch["forget_span_mask"].float()
    queries = (batch["forget_labels"] != IGNORE_INDEX).float()
    mass = torch.stack([(out.attentions[i] * span[:, None, None, :]).sum(-1).mean(1) for i in LAYERS]).mean(0)
    expected = 2.0 * (mass * queries).sum() / queries.sum()
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-6)


def test_training_drives_fact_attention_down_and_keeps_retain(chat_tokenizer, bench, tmp_path):
    cb = AttentionShiftingCallback(layers=LAYERS, suppress_coeff=5.0, retain_coeff=5.0, abstain_coeff=0.0)
    tr = _trainer(chat_tokenizer, bench, tmp_path, cb, max_steps=30, learning_rate=3e-2)
    reference = make_tiny_llama(chat_tokenizer, layers=3)
    tr.train()
    fact = [h["as/fact_attention"] for h in tr.state.log_history if "as/fact_attention" in h]
    assert fact[-1] < 0.3 * fact[0]  # measured: 0.0374 -> 0.0061 in 30 steps
    retain = tr.retain_dataset.select(range(16)).to_list()
    pad = chat_tokenizer.pad_token_id
    before = score_sequences(reference, retain, pad_token_id=pad).avg_nll
    after = score_sequences(tr.model, retain, pad_token_id=pad).avg_nll
    assert (after - before).abs().max() < 0.05 * before.mean()  # measured: 0.0017 nats on a mean of 6.0


def test_peft_and_activation_checkpointing(chat_tokenizer, bench, tmp_path):
    from peft import LoraConfig

    cb = AttentionShiftingCallback(layers=LAYERS)
    tr = callbacks_only_trainer(
        chat_tokenizer,
        bench,
        tmp_path,
        cb,
        peft_config=LoraConfig(r=4, target_modules=["q_proj", "k_proj"]),
        max_steps=2,
        learning_rate=1e-5,
        warmup_steps=0.1,
        activation_checkpointing=True,
    )
    tr.train()
    first = next(h for h in tr.state.log_history if "as/retain_kl" in h)
    assert first["as/retain_kl"] == pytest.approx(0.0, abs=1e-6)  # fresh adapter = frozen (adapter disabled)
    assert tr.model.config._attn_implementation != "hf_unlearn_attention_shifting"  # restored after training


def test_clear_errors(chat_tokenizer, bench, tmp_path):
    with pytest.raises(ValueError, match=r"layers \[7\] are out of range; this model has decoder layers 0..2"):
        _trainer(chat_tokenizer, bench, tmp_path, AttentionShiftingCallback(layers=[1, 7]))
    model = make_tiny_llama(chat_tokenizer, layers=3)
    model.config._attn_implementation = "flex_attention"
    with pytest.raises(ValueError, match="does not expose"):
        _trainer(chat_tokenizer, bench, tmp_path, AttentionShiftingCallback(layers=LAYERS), model=model)
