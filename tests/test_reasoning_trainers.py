"""Reasoning-model objectives (R-TOFU, arXiv:2505.15214): forget_target selects what GradAscent/GradDiff/NPO/SimNPO
train in the think format, and Reasoned-IDK's two forms equal their formulas."""

import pytest
import torch
import torch.nn.functional as F

from hf_unlearn import build_fictitious_authors
from hf_unlearn.data.tokenization import IGNORE_INDEX
from hf_unlearn.trainers import (
    GradDiffConfig,
    GradDiffTrainer,
    NPOConfig,
    NPOTrainer,
    ReasonedIDKConfig,
    ReasonedIDKTrainer,
    SimNPOConfig,
    SimNPOTrainer,
)

from .conftest import first_batch, make_tiny_llama, one_step_args
from .test_reasoning_data import STRIPS_THINK
from .test_trainers import _group, _trainer


@pytest.fixture(scope="module")
def bench():
    return build_fictitious_authors(num_authors=10, qa_per_author=3, seed=2)


def _labelled(tok, ids, labels) -> str:
    return tok.decode([t for t, label in zip(ids.tolist(), labels.tolist(), strict=True) if label != IGNORE_INDEX])


@pytest.mark.parametrize(
    "cls,cfg", [(GradDiffTrainer, GradDiffConfig), (NPOTrainer, NPOConfig), (SimNPOTrainer, SimNPOConfig)]
)
def test_forget_target_selects_what_the_forget_term_trains(chat_tokenizer, bench, tmp_path, cls, cfg):
    by_row = {r["question"]: r for r in bench["forget"]}
    seen = {}
    for target in ("both", "answer", "cot"):
        tr = _trainer(cls, cfg, chat_tokenizer, bench, tmp_path / target, forget_target=target)
        batch = first_batch(tr)
        text = chat_tokenizer.decode(batch["forget_input_ids"][0].tolist())
        row = next(r for q, r in by_row.items() if q in text)
        labelled = _labelled(chat_tokenizer, batch["forget_input_ids"][0], batch["forget_labels"][0])
        seen[target] = labelled
        assert row["cot"] in text and row["answer"] in text  # the input always holds trace and answer
        if target == "both":
            assert row["cot"] in labelled and row["answer"] in labelled and "</think>" in labelled
        elif target == "answer":
            assert labelled.strip() == row["answer"] + "<|im_end|>"
        else:
            assert labelled.strip() == row["cot"]
        retain = _labelled(chat_tokenizer, batch["retain_input_ids"][0], batch["retain_labels"][0])
        assert "</think>" in retain  # retain rows train the whole reasoning format
        with torch.no_grad():
            assert torch.isfinite(tr.compute_loss(tr.model, batch))
    assert len(set(seen.values())) == 3


def test_reasoned_idk_dpo_and_nll_equal_their_formulas(chat_tokenizer, bench, tmp_path):
    nll = _trainer(ReasonedIDKTrainer, ReasonedIDKConfig, chat_tokenizer, bench, tmp_path / "nll", loss_type="nll")
    batch = first_batch(nll)
    text = chat_tokenizer.decode(batch["forget_idk_input_ids"][0].tolist())
    row = next(r for r in bench["forget"] if r["question"] in text)
    chosen = _labelled(chat_tokenizer, batch["forget_idk_input_ids"][0], batch["forget_idk_labels"][0])
    assert chosen.startswith(row["idk_cot"]) and "</think>" in chosen and row["fact"] not in chosen
    rejected = _labelled(chat_tokenizer, batch["forget_input_ids"][0], batch["forget_labels"][0])
    assert rejected.startswith(row["cot"]) and rejected.strip().endswith(row["answer"] + "<|im_end|>")
    with torch.no_grad():
        f, fn = _group(nll.model, batch, "forget_idk")
        r, rn = _group(nll.model, batch, "retain")
        torch.testing.assert_close(
            nll.compute_loss(nll.model, batch), -f.sum() / fn.sum() - r.sum() / rn.sum(), rtol=1e-5, atol=1e-5
        )
    assert nll.ref_model is None and "forget_ref_logps" not in batch  # no reference for the NLL form

    dpo = _trainer(ReasonedIDKTrainer, ReasonedIDKConfig, chat_tokenizer, bench, tmp_path / "dpo", beta=0.2)
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

    direct = _trainer(
        ReasonedIDKTrainer, ReasonedIDKConfig, chat_tokenizer, bench, tmp_path / "direct", idk_variant="direct"
    )
    b = first_batch(direct)
    chosen = _labelled(chat_tokenizer, b["forget_idk_input_ids"][0], b["forget_idk_labels"][0])
    idk, answer = chosen.split("</think>")
    assert idk.strip() == answer.strip().removesuffix("<|im_end|>")  # Direct IDK: the refusal as trace and answer


def test_reasoning_objectives_refuse_bad_input(chat_tokenizer, bench, tmp_path):
    import copy

    plain = [{"question": r["question"], "answer": r["answer"]} for r in bench["forget"]]
    with pytest.raises(ValueError, match="have no 'cot'"):
        NPOTrainer(
            make_tiny_llama(chat_tokenizer),
            args=one_step_args(NPOConfig, tmp_path, forget_target="cot"),
            forget_dataset=plain,
            retain_dataset=bench["retain"],
            processing_class=chat_tokenizer,
        )
    strips = copy.deepcopy(chat_tokenizer)
    strips.chat_template = STRIPS_THINK
    with pytest.raises(ValueError, match="drops the <think> content"):
        _trainer(NPOTrainer, NPOConfig, strips, bench, tmp_path, forget_target="both")
    with pytest.raises(ValueError, match="loss_type must be 'dpo' or 'nll'"):
        ReasonedIDKConfig(output_dir=str(tmp_path), loss_type="sigmoid")
    with pytest.raises(ValueError, match="set forget_target"):
        ReasonedIDKConfig(output_dir=str(tmp_path), forget_target=None)


def test_reasoning_references_are_fine_tuned_apart_in_the_think_format(tiny_model_dir, tmp_path, monkeypatch):
    import hashlib
    import json

    from hf_unlearn.hub.lineage import read_lineage
    from hf_unlearn.references import _cache_dir, prepare_references, reference_lineage

    monkeypatch.setenv("HF_UNLEARN_CACHE", str(tmp_path / "cache"))
    small = build_fictitious_authors(num_authors=10, qa_per_author=2)
    plain = _cache_dir(small, 1, str(tiny_model_dir))
    legacy = hashlib.sha256(json.dumps([small.metadata()["config"], 1, str(tiny_model_dir)]).encode()).hexdigest()
    assert plain.name == legacy[:12]  # plain caches made before reasoning references keep their key
    refs = prepare_references(
        small,
        base_model=str(tiny_model_dir),
        finetune_epochs=1,
        eval_retain_size=4,
        max_new_tokens=2,
        reasoning=True,
        log=lambda *a: None,
    )
    assert refs.target_dir.parent != plain and refs.target_dir.is_dir() and refs.target_eval is not None
    logs: list[str] = []
    again = prepare_references(
        small, base_model=str(tiny_model_dir), finetune_epochs=1, reasoning=True, evaluate=False, log=logs.append
    )
    assert again.target_dir == refs.target_dir and again.target_eval is None and again.retain_eval is None
    assert sum("cached" in line for line in logs) == 2  # both from the cache, nothing evaluated
    lineage = read_lineage(refs.target_dir)
    assert (
        lineage == reference_lineage(small, base_model=str(tiny_model_dir), finetune_epochs=1, reasoning=True)["target"]
    )
    assert (
        all("think format" in s["data"] for s in lineage["steps"])
        and "reasoning=True" in lineage["steps"][-1]["recreate"]
    )
