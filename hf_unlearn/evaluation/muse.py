"""MUSE-style evaluation (Shi et al. 2024): VerbMem, KnowMem (forget and retain) and PrivLeak.

* **VerbMem**: greedy continuation (128 new tokens) of each forget excerpt's prompt, ROUGE-L F1 against the true
  continuation. Raw text, no chat template, BOS as the tokenizer adds it. open-unlearning scores against the full
  reference; ``truncate_reference_tokens=128`` reproduces the original MUSE code, which cut it to 128 tokens.
* **KnowMem**: few-shot prompt built from every in-context row, ``"Question: {q}\\nAnswer: {a}\\n\\n"`` each, then
  ``"Question: {q}\\nAnswer: "``; greedy 32 tokens cut at ``"\\n\\n"``, ``"\\nQuestion"`` or ``"Question:"``;
  ROUGE-L F1.
  On the forget set lower is better (down to the retain model); on retain data it is MUSE's utility (C4).
* **PrivLeak**: Min-K% (k = 0.4) scores of forget vs holdout texts -> AUC (open-unlearning convention) -> PrivLeak
  against the retain model's AUC from its saved result. ``(r - a)/(1 - r) * 100`` equals MUSE's
  ``(AUC_M - AUC_M,retrain)/AUC_M,retrain * 100`` with ``AUC_M = 1 - AUC``: MUSE's sign convention (near 0 ideal,
  very negative = under-unlearning). MUSE's paper used hard-coded retrain AUCs; pass the retain model's result.

:func:`protocol_forget_sets` splits a forget set for the scalability (cumulative) and sustainability (disjoint,
sequential) protocols; with the Hub, ``load_muse("news", "scal"|"sust", "forget_k")`` gives the published folds.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..data.tokenization import encode_completion
from . import metrics as M
from .generation import generate_texts
from .report import DEFINITIONS, EvalResult, check_reference, items_fingerprint
from .scoring import score_sequences

__all__ = ["KNOWMEM_STOP", "builtin_muse_splits", "evaluate_muse", "knowmem_prompt", "protocol_forget_sets"]

KNOWMEM_STOP = ("\n\n", "\nQuestion", "Question:")


def knowmem_prompt(question: str, icl: Sequence[Mapping[str, Any]]) -> str:
    shots = "".join(f"Question: {r['question']}\nAnswer: {r['answer']}\n\n" for r in icl)
    return f"{shots}Question: {question}\nAnswer: "


def builtin_muse_splits(bench: Any, *, icl: int = 3) -> dict[str, list[dict]]:
    """MUSE-shaped sets from the built-in benchmark: biographies for VerbMem and PrivLeak, author QA for KnowMem.

    In-context examples come from holdout authors (never trained on), so they reveal nothing about either set.
    """
    forget_qa = bench["forget"]
    retain = bench["retain"]
    retain_qa = [retain[int(i * len(retain) / len(forget_qa))] for i in range(len(forget_qa))]
    shots = bench["holdout"][:icl]
    as_text = [{"prompt": "", "text": b["prompt"] + b["text"]} for b in bench["forget_bio"]]
    holdout_text = [{"prompt": "", "text": b["prompt"] + b["text"]} for b in bench["holdout_bio"]]
    return {
        "verbmem": bench["forget_bio"],
        "knowmem_forget": forget_qa,
        "knowmem_retain": retain_qa,
        "knowmem_forget_icl": shots,
        "knowmem_retain_icl": shots,
        "privleak_forget": as_text,
        "privleak_holdout": holdout_text,
    }


def protocol_forget_sets(
    rows: Sequence[Mapping[str, Any]], n_folds: int = 4, protocol: str = "scalability"
) -> list[list[Mapping[str, Any]]]:
    """Forget sets for MUSE's protocols: ``scalability`` = cumulative folds 1..k (growing forget sets unlearned from
    the target), ``sustainability`` = disjoint folds unlearned one after another. Rows with an ``author`` field are
    split by author so no author straddles two folds."""
    if protocol not in ("scalability", "sustainability"):
        raise ValueError("protocol must be 'scalability' or 'sustainability'.")
    groups: dict[Any, list] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r.get("author", i), []).append(r)
    keys = list(groups)
    if len(keys) < n_folds:
        raise ValueError(f"{len(keys)} groups cannot make {n_folds} folds.")
    folds = [
        [r for k in keys[f * len(keys) // n_folds : (f + 1) * len(keys) // n_folds] for r in groups[k]]
        for f in range(n_folds)
    ]
    if protocol == "sustainability":
        return folds
    return [[r for fold in folds[: f + 1] for r in fold] for f in range(n_folds)]


def evaluate_muse(
    model: torch.nn.Module,
    tokenizer: Any,
    *,
    verbmem: Sequence[Mapping[str, Any]] | None = None,
    knowmem_forget: Sequence[Mapping[str, Any]] | None = None,
    knowmem_retain: Sequence[Mapping[str, Any]] | None = None,
    knowmem_forget_icl: Sequence[Mapping[str, Any]] = (),
    knowmem_retain_icl: Sequence[Mapping[str, Any]] = (),
    privleak_forget: Sequence[Mapping[str, Any]] | None = None,
    privleak_holdout: Sequence[Mapping[str, Any]] | None = None,
    reference: EvalResult | str | None = None,
    verbmem_max_new_tokens: int = 128,
    knowmem_max_new_tokens: int = 32,
    truncate_reference_tokens: int | None = None,
    k: float = 0.4,
    batch_size: int = 16,
    max_length: int = 2048,
    strict_reference: bool = True,
    drop_last_token: bool = False,
    progress: bool = False,
) -> EvalResult:
    """Evaluate the MUSE criteria that are given (each argument is optional); see the module docstring.

    ``progress`` shows a labelled progress bar for each criterion.

    ``drop_last_token=True`` drops the last token of every PrivLeak text from Min-K% (open-unlearning's convention,
    for parity). By default every token of the raw text counts: it is content, not an end-of-turn marker.
    """
    if isinstance(reference, str | bytes) or hasattr(reference, "__fspath__"):
        reference = EvalResult.load(reference)
    result = EvalResult("muse")
    m, per = result.metrics, result.per_item
    items = {}
    if verbmem:
        gens = generate_texts(
            model,
            tokenizer,
            [r["prompt"] for r in verbmem],
            max_new_tokens=verbmem_max_new_tokens,
            batch_size=batch_size,
            progress="VerbMem: generating" if progress else False,
        )
        refs = [r["text"] for r in verbmem]
        if truncate_reference_tokens:
            refs = [
                tokenizer.decode(tokenizer(t, add_special_tokens=False)["input_ids"][:truncate_reference_tokens])
                for t in refs
            ]
        per["verbmem_rouge_f1"] = {i: M.rouge_l(g, t)["f1"] for i, (g, t) in enumerate(zip(gens, refs, strict=True))}
        per["verbmem_generation"] = dict(enumerate(gens))
        m["verbmem_forget_rouge_f1"] = M.mean(per["verbmem_rouge_f1"])
        items["verbmem"] = items_fingerprint(verbmem, ("prompt", "text"))
    for name, rows, icl in (
        ("forget", knowmem_forget, knowmem_forget_icl),
        ("retain", knowmem_retain, knowmem_retain_icl),
    ):
        if not rows:
            continue
        prompts = [knowmem_prompt(r["question"], icl) for r in rows]
        gens = generate_texts(
            model,
            tokenizer,
            prompts,
            max_new_tokens=knowmem_max_new_tokens,
            batch_size=batch_size,
            stop_strings=KNOWMEM_STOP,
            progress=f"KnowMem {name}: generating" if progress else False,
        )
        per[f"knowmem_{name}_rouge_f1"] = {
            i: M.rouge_l(g, r["answer"])["f1"] for i, (g, r) in enumerate(zip(gens, rows, strict=True))
        }
        per[f"knowmem_{name}_generation"] = dict(enumerate(gens))
        m[f"knowmem_{name}_rouge_f1"] = M.mean(per[f"knowmem_{name}_rouge_f1"])
        items[f"knowmem_{name}"] = items_fingerprint(rows)
    if privleak_forget and privleak_holdout:
        scores = {}
        for name, rows in (("forget", privleak_forget), ("holdout", privleak_holdout)):
            enc = [
                encode_completion(tokenizer, r.get("prompt", ""), r["text"], max_length=max_length).to_dict()
                for r in rows
            ]
            keep = [i for i, e in enumerate(enc) if any(t != -100 for t in e["labels"])]
            s = score_sequences(
                model,
                [enc[i] for i in keep],
                pad_token_id=tokenizer.pad_token_id,
                batch_size=batch_size,
                token_stats=True,
                progress=f"PrivLeak {name}: scoring" if progress else False,
            )
            scores[name] = {
                i: M.min_k_score(_drop_last(s.token_logps[j]) if drop_last_token else s.token_logps[j], k)
                for j, i in enumerate(keep)
            }
            per[f"privleak_min_k_{name}"] = scores[name]
            items[f"privleak_{name}"] = items_fingerprint(rows, ("prompt", "text"))
        m["privleak_min_k_auc"] = M.auc(list(scores["forget"].values()), list(scores["holdout"].values()))
    result.meta = {
        "definitions": DEFINITIONS,
        "prompt": "raw text (no chat template)",
        "dtype": str(next(model.parameters()).dtype),
        "items": items,
        "k": k,
        "drop_last_token": drop_last_token,
        "verbmem": {"max_new_tokens": verbmem_max_new_tokens, "reference_tokens": truncate_reference_tokens},
        "knowmem": {"max_new_tokens": knowmem_max_new_tokens, "icl": len(knowmem_forget_icl)},
    }
    m["privleak"] = None
    if reference is not None and m.get("privleak_min_k_auc") is not None:
        check_reference(result.meta, reference, splits=["privleak_forget", "privleak_holdout"], strict=strict_reference)
        r = reference.metrics["privleak_min_k_auc"]
        m["privleak"], reason = M.privleak_or_reason(m["privleak_min_k_auc"], r)
        result.details["privleak"] = {"attack": "min_k", "k": k, "auc": m["privleak_min_k_auc"], "reference_auc": r}
        if reason:
            result.details["privleak"]["skipped"] = reason
            warnings.warn(f"PrivLeak not computed: {reason}", UserWarning, stacklevel=2)
    return result


def _drop_last(values: torch.Tensor) -> torch.Tensor:
    return values[:-1] if values.numel() > 1 else values
