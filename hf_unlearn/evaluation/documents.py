"""The ``documents`` suite: did unlearning work on the data *you* brought?

Everything it needs comes from the user's own rows (raw-text documents or QA pairs in any TRL format), split into
the blocks training used (:func:`~hf_unlearn.data.chunk_documents`), plus the built-in general-knowledge facts:

* **verbatim memorisation** (MUSE's VerbMem, "MUSE: Machine Unlearning Six-Way Evaluation for Language Models",
  arXiv:2407.06460): each block's first ``prefix_tokens`` content tokens are the prompt; the greedy continuation of
  ``continuation_tokens`` tokens is compared with the block's true next ``continuation_tokens`` tokens by ROUGE-L F1.
  On forget blocks lower is better, down to what the model does on holdout blocks (text it never saw);
* **per-token NLL and perplexity** of forget, holdout and retain text (token-weighted over the blocks);
* **membership inference**, forget against holdout: LOSS, zlib, Min-K% (arXiv:2310.16789) and Min-K%++
  (arXiv:2404.02936) AUC, open-unlearning's convention (0.5 = indistinguishable). With a reference (a retain
  model's saved result, or the model itself) the Min-K% AUC gives **PrivLeak** (MUSE's sign: 0 = like the
  reference, negative = the forget set still looks seen);
* for QA rows: answer probability and ROUGE-L recall of the greedy answer, as TOFU;
* **general knowledge**: the share of the built-in facts whose true answer the model ranks first, a utility check
  that needs no data from the user.

The holdout must be text the model never saw, of the forget set's kind, for MIA and PrivLeak to mean privacy. A
holdout carved from the forget data (documents the model saw, held back from unlearning) instead measures how far
unlearning moved the forget set away from text the model still knows; ``holdout_kind="carved"`` records that in the
result so no one reads it as PrivLeak.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..data.documents import chunk_documents
from ..data.general_knowledge import general_knowledge_rows
from ..data.schemas import Schema, detect_schema
from ..data.tokenization import IGNORE_INDEX, tokenize_rows
from . import metrics as M
from .generation import generate_answers, generate_from_ids
from .mia import evaluate_mia
from .ranking import rank_answers
from .report import DEFINITIONS, EvalResult, check_reference, items_fingerprint
from .scoring import score_sequences

__all__ = ["HOLDOUT_KINDS", "evaluate_documents"]

HOLDOUT_KINDS = ("unseen", "carved")
_MIN_CONTINUATION = 8  # a block needs this many tokens after its prefix to be scored for verbatim memorisation


def evaluate_documents(
    model: torch.nn.Module,
    tokenizer: Any,
    *,
    forget: Sequence[Mapping[str, Any]],
    holdout: Sequence[Mapping[str, Any]] | None = None,
    retain: Sequence[Mapping[str, Any]] | None = None,
    reference: EvalResult | str | None = None,
    reference_model: torch.nn.Module | None = None,
    holdout_kind: str = "unseen",
    max_length: int = 512,
    stride: int = 0,
    prefix_tokens: int = 32,
    continuation_tokens: int = 128,
    max_blocks: int | None = 100,
    answer_max_new_tokens: int = 64,
    general_knowledge: bool = True,
    attacks: Sequence[str] = ("loss", "zlib", "min_k", "min_k_plus_plus"),
    k: float = 0.4,
    system_prompt: str | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> EvalResult:
    """Evaluate ``model`` on the user's ``forget`` rows against ``holdout`` (and ``retain``); see the module docstring.

    Args:
        forget, holdout, retain: rows in any hf_unlearn / TRL format (documents are split into blocks of
            ``max_length`` tokens with ``stride``, as training split them). ``holdout`` enables MIA, PrivLeak and the
            holdout side of every metric.
        reference: a saved result of this suite for the reference model (e.g. a retain model), or
        reference_model: that model itself, scored here on the same blocks; either gives PrivLeak.
        holdout_kind: ``"unseen"`` (text the model never saw) or ``"carved"`` (held back from the forget data).
        prefix_tokens, continuation_tokens: the verbatim-memorisation protocol (MUSE: 32-token prompts, 128 tokens).
        max_blocks: at most this many blocks (spread evenly over the set) per set; ``None`` for all.
    """
    if holdout_kind not in HOLDOUT_KINDS:
        raise ValueError(f"holdout_kind must be one of {', '.join(HOLDOUT_KINDS)}, got {holdout_kind!r}.")
    if reference is not None and reference_model is not None:
        raise ValueError("Pass reference (a saved result) or reference_model (a model), not both.")
    if isinstance(reference, str | bytes) or hasattr(reference, "__fspath__"):
        reference = EvalResult.load(reference)
    result = EvalResult("documents")
    m, per = result.metrics, result.per_item
    counts: dict[str, dict[str, int]] = {}
    sets: dict[str, list[dict]] = {}
    for name, rows in (("forget", forget), ("holdout", holdout), ("retain", retain)):
        if not rows:
            continue
        blocks = chunk_documents(list(rows), tokenizer, max_length=max_length, stride=stride)
        chosen = _spread(blocks.rows, max_blocks)
        sets[name] = chosen
        counts[name] = {"rows": len(rows), "blocks": len(blocks.rows), "evaluated": len(chosen)}
    if "forget" not in sets:
        raise ValueError("evaluate_documents needs forget rows.")
    kinds = {name: detect_schema(rows[0]) for name, rows in sets.items()}
    encoded = {name: _encode(rows, tokenizer, max_length, system_prompt) for name, rows in sets.items()}

    for name, enc in encoded.items():  # per-token NLL and perplexity, token-weighted
        s = score_sequences(
            model, enc, pad_token_id=tokenizer.pad_token_id, batch_size=batch_size, progress=_bar(progress, name, "NLL")
        )
        nll = float(-s.sum_logprob.sum() / s.num_tokens.sum().clamp(min=1))
        m[f"{name}_nll"], m[f"{name}_perplexity"] = nll, math.exp(min(nll, 700.0))

    for name in ("forget", "holdout"):
        if name not in sets:
            continue
        if kinds[name] == Schema.COMPLETION:
            gens, scores = _verbatim(
                model, tokenizer, encoded[name], prefix_tokens, continuation_tokens, batch_size, progress, name
            )
            per[f"{name}_verbmem_rouge_l_f1"] = scores
            per[f"{name}_verbmem_generation"] = gens
            m[f"{name}_verbmem_rouge_l_f1"] = M.mean(scores)
        elif kinds[name] in (Schema.QA, Schema.MCQ):
            m.update(
                _qa(
                    model,
                    tokenizer,
                    sets[name],
                    encoded[name],
                    name,
                    system_prompt,
                    answer_max_new_tokens,
                    batch_size,
                    progress,
                    per,
                )
            )

    reference_auc = None
    if "holdout" in sets:
        mia = evaluate_mia(
            model,
            tokenizer,
            sets["forget"],
            sets["holdout"],
            attacks=attacks,
            k=k,
            max_length=max_length,
            system_prompt=system_prompt,
            batch_size=batch_size,
        )
        m.update(mia.metrics)
        per.update(mia.per_item)
        if reference_model is not None:
            ref = evaluate_mia(
                reference_model,
                tokenizer,
                sets["forget"],
                sets["holdout"],
                attacks=("min_k",),
                k=k,
                max_length=max_length,
                system_prompt=system_prompt,
                batch_size=batch_size,
            )
            reference_auc = ref.metrics["mia_min_k_auc"]
    if general_knowledge:
        ranking = rank_answers(
            model,
            tokenizer,
            general_knowledge_rows(),
            system_prompt=system_prompt,
            batch_size=batch_size * 2,
            progress=_bar(progress, "general knowledge", "ranking"),
        )
        m["general_knowledge_accuracy"] = ranking.accuracy
    result.meta = {
        "definitions": DEFINITIONS,
        "prompt": "documents: raw text, no chat template; QA: the chat template",
        "dtype": str(next(model.parameters()).dtype),
        "items": {
            f"{name}_blocks": items_fingerprint(rows, ("question", "answer", "prompt", "text"))
            for name, rows in sets.items()
        },
        "counts": counts,
        "holdout_kind": holdout_kind if "holdout" in sets else None,
        "protocol": {
            "max_length": max_length,
            "stride": stride,
            "prefix_tokens": prefix_tokens,
            "continuation_tokens": continuation_tokens,
            "max_blocks": max_blocks,
            "k": k,
        },
    }
    m["privleak"] = None
    if "holdout" in sets:
        if holdout_kind == "carved":
            result.details["privleak"] = {
                "skipped": "the holdout was carved from the forget data (seen text): the MIA AUCs measure how far "
                "unlearning moved the forget set from text the model still knows, not privacy leakage"
            }
        elif reference is not None or reference_auc is not None:
            if reference is not None:
                check_reference(result.meta, reference, splits=["forget_blocks", "holdout_blocks"])
                reference_auc = reference.metrics.get("mia_min_k_auc")
            m["privleak"], reason = M.privleak_or_reason(m["mia_min_k_auc"], reference_auc)
            result.details["privleak"] = {
                "attack": "min_k",
                "k": k,
                "auc": m["mia_min_k_auc"],
                "reference_auc": reference_auc,
            }
            if reason:
                result.details["privleak"]["skipped"] = reason
                warnings.warn(f"PrivLeak not computed: {reason}", UserWarning, stacklevel=2)
    return result


def _spread(rows: list[dict], limit: int | None) -> list[dict]:
    """At most ``limit`` rows, evenly spread over ``rows`` (every document keeps a share), in order."""
    if limit is None or len(rows) <= limit:
        return rows
    return [rows[int(i * len(rows) / limit)] for i in range(limit)]


def _encode(rows: list[dict], tokenizer: Any, max_length: int, system_prompt: str | None) -> list[dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # blocks fit by construction; a dropped empty row is not news here
        return tokenize_rows(rows, tokenizer, max_length=max_length, system_prompt=system_prompt)


def _bar(progress: bool, name: str, what: str) -> str | bool:
    return f"{name}: {what}" if progress else False


def _verbatim(model, tokenizer, encoded, prefix_tokens, continuation_tokens, batch_size, progress, name):
    """Greedy continuations of each block's first ``prefix_tokens`` scored tokens, and their ROUGE-L F1 against the
    block's true next tokens (keyed by block)."""
    prompts, references, keys = [], [], []
    for j, ex in enumerate(encoded):
        start = next(i for i, t in enumerate(ex["labels"]) if t != IGNORE_INDEX) - 1  # the last context token
        cut = start + 1 + prefix_tokens
        truth = ex["input_ids"][cut : cut + continuation_tokens]
        if len(truth) < _MIN_CONTINUATION:
            continue
        prompts.append(ex["input_ids"][:cut])
        references.append(tokenizer.decode(truth, skip_special_tokens=True))
        keys.append(j)
    if not prompts:
        return {}, {}
    gens = generate_from_ids(
        model,
        tokenizer,
        prompts,
        max_new_tokens=continuation_tokens,
        batch_size=batch_size,
        progress=_bar(progress, name, "verbatim continuations"),
    )
    scores = {j: M.rouge_l(g, r)["f1"] for j, g, r in zip(keys, gens, references, strict=True)}
    return dict(zip(keys, gens, strict=True)), scores


def _qa(model, tokenizer, rows, encoded, name, system_prompt, max_new_tokens, batch_size, progress, per) -> dict:
    """TOFU's answer probability and ROUGE-L recall of the greedy answer, for QA rows."""
    s = score_sequences(model, encoded, pad_token_id=tokenizer.pad_token_id, batch_size=batch_size)
    probs = dict(zip((ex["index"] for ex in encoded), s.normalized_prob.tolist(), strict=True))
    answers = generate_answers(
        model,
        tokenizer,
        [r["question"] for r in rows],
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        system_prompt=system_prompt,
        progress=_bar(progress, name, "answers"),
    )
    truth = [r["answer"] if isinstance(r["answer"], str) else r["choices"][r["answer"]] for r in rows]
    rouge = {i: M.rouge_l(a, t)["recall"] for i, (a, t) in enumerate(zip(answers, truth, strict=True))}
    per[f"{name}_answer_prob"], per[f"{name}_answer_rouge_l_recall"] = probs, rouge
    per[f"{name}_generation"] = dict(enumerate(answers))
    return {f"{name}_answer_prob": M.mean(probs), f"{name}_answer_rouge_l_recall": M.mean(rouge)}
