"""Membership-inference attacks on any member / non-member sets (loss, zlib, Min-K% of arXiv 2310.16789,
Min-K%++ of arXiv 2404.02936).

Scores follow open-unlearning's convention, higher = "less likely a member": LOSS (average NLL), ZLib (average NLL /
zlib length of the target text), Min-K% and Min-K%++ (k = 0.4), Reference (NLL minus a reference model's NLL) and
GradNorm (mean over parameter tensors of the per-sample gradient p-norm). AUC = P(s(non-member) > s(member)). The
first four come from one scoring pass; Reference adds one pass of the reference model; GradNorm needs a backward per
sample (batch size 1) and is opt-in.

GradNorm here keeps the model in eval mode (deterministic, unlike the reference code's ``train()``) and restores any
gradients that were already accumulated, so it is safe to call between training steps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..data.tokenization import IGNORE_INDEX, tokenize_rows
from . import metrics as M
from .report import DEFINITIONS, EvalResult, items_fingerprint
from .scoring import score_sequences

__all__ = ["ATTACKS", "content_tokens", "evaluate_mia", "gradnorm_scores", "score_attacks"]

ATTACKS = ("loss", "zlib", "min_k", "min_k_plus_plus", "reference", "gradnorm")


def content_tokens(values: torch.Tensor, labels: Sequence[int], special: set[int]) -> torch.Tensor:
    """Per-token values of a target without its end-of-turn token (when the last label is a special token): MIA,
    extraction strength and exact memorisation score the content, not the template's closing token."""
    last_label = [t for t in labels if t != IGNORE_INDEX][-1]
    return values[:-1] if last_label in special and values.numel() > 1 else values


def score_attacks(
    avg_nll: float, token_logps: torch.Tensor, minkpp_z: torch.Tensor, text: str, k: float
) -> dict[str, float]:
    """Scores of the one-pass attacks for one item (higher = less likely a member): LOSS, ZLib, Min-K%, Min-K%++.
    ``token_logps``/``minkpp_z`` are the content tokens (see :func:`content_tokens`)."""
    return {
        "loss": avg_nll,
        "zlib": M.zlib_score(avg_nll, text),
        "min_k": M.min_k_score(token_logps, k),
        "min_k_plus_plus": M.min_k_score(minkpp_z, k),
    }


def _target_text(tokenizer: Any, ex: Mapping[str, Any], row: Mapping[str, Any]) -> str:
    """The text ZLib compresses: the row's own answer or text (as evaluate_tofu), else the decoded target."""
    for key in ("answer", "text"):
        if isinstance(row.get(key), str):
            return row[key]
    return tokenizer.decode([t for t in ex["labels"] if t != IGNORE_INDEX], skip_special_tokens=True)


def gradnorm_scores(model: torch.nn.Module, examples: Sequence[Mapping[str, Any]], p: float = 2.0) -> list[float]:
    """Per-sample mean of per-tensor gradient p-norms of the mean token NLL (batch size 1)."""
    params = [q for q in model.parameters() if q.requires_grad]
    if not params:
        raise ValueError("GradNorm needs parameters with requires_grad=True.")
    saved = [None if q.grad is None else q.grad.detach().clone() for q in params]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    try:
        for ex in examples:
            ids = torch.tensor([ex["input_ids"]], device=device)
            labels = torch.tensor([ex["labels"]], device=device)
            for q in params:
                q.grad = None
            logits = model(input_ids=ids).logits[:, :-1].float()
            loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels[:, 1:], ignore_index=IGNORE_INDEX)
            loss.backward()
            norms = [q.grad.detach().float().norm(p) for q in params if q.grad is not None]
            out.append(float(torch.stack(norms).mean()))
    finally:
        for q, g in zip(params, saved, strict=True):
            q.grad = g
        model.train(was_training)
    return out


def evaluate_mia(
    model: torch.nn.Module,
    tokenizer: Any,
    members: Sequence[Mapping[str, Any]],
    nonmembers: Sequence[Mapping[str, Any]],
    *,
    attacks: Sequence[str] = ("loss", "zlib", "min_k", "min_k_plus_plus"),
    reference_model: torch.nn.Module | None = None,
    k: float = 0.4,
    max_length: int = 512,
    system_prompt: str | None = None,
    batch_size: int = 32,
    drop_last_token: bool = False,
) -> EvalResult:
    """AUC of each attack at telling ``members`` (e.g. the forget set) from ``nonmembers`` (e.g. holdout).

    Rows may be QA (question -> answer with the chat template) or completion rows (raw text). Rows without a target
    token are dropped and counted in ``meta["dropped_items"]``. Min-K% and Min-K%++ leave out a final end-of-turn
    (special) token; LOSS and ZLib score the whole target, as open-unlearning does. ZLib compresses the row's own
    target text (``answer`` or ``text``), as :func:`~hf_unlearn.evaluate_tofu` does. ``drop_last_token=True`` drops
    the last token of raw-text rows from Min-K% / Min-K%++ even when it is content (open-unlearning's convention,
    for parity).
    """
    unknown = set(attacks) - set(ATTACKS)
    if unknown:
        raise ValueError(f"Unknown attacks {sorted(unknown)}; choose from {', '.join(ATTACKS)}.")
    if "reference" in attacks and reference_model is None:
        raise ValueError("The reference attack needs reference_model= (e.g. the retain model).")
    import warnings

    sets, dropped = {}, {}
    source = {"members": list(members), "nonmembers": list(nonmembers)}
    for name, rows in source.items():
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            enc = tokenize_rows(rows, tokenizer, max_length=max_length, system_prompt=system_prompt)
        sets[name] = enc
        dropped[name] = len(rows) - len(enc)
    special = set(getattr(tokenizer, "all_special_ids", []) or []) | {tokenizer.eos_token_id}
    result = EvalResult("mia")
    scores: dict[str, dict[str, dict[int, float]]] = {a: {} for a in attacks}
    for name, enc in sets.items():
        s = score_sequences(model, enc, pad_token_id=tokenizer.pad_token_id, batch_size=batch_size, token_stats=True)
        ref = None
        if "reference" in attacks:
            ref = score_sequences(reference_model, enc, pad_token_id=tokenizer.pad_token_id, batch_size=batch_size)
        grad = gradnorm_scores(model, enc) if "gradnorm" in attacks else None
        for j, ex in enumerate(enc):
            i = ex["index"]
            row = source[name][i]
            tl = content_tokens(s.token_logps[j], ex["labels"], special)
            z = content_tokens(s.minkpp_z[j], ex["labels"], special)
            if drop_last_token and "text" in row and tl.numel() == s.token_logps[j].numel() and tl.numel() > 1:
                tl, z = tl[:-1], z[:-1]  # parity: the last raw-text token is dropped even though it is content
            nll = float(s.avg_nll[j])
            values = {
                **score_attacks(nll, tl, z, _target_text(tokenizer, ex, row), k),
                "reference": nll - float(ref.avg_nll[j]) if ref is not None else None,
                "gradnorm": grad[j] if grad is not None else None,
            }
            for a in attacks:
                scores[a].setdefault(name, {})[i] = values[a]
    for a in attacks:
        result.metrics[f"mia_{a}_auc"] = M.auc(
            list(scores[a]["members"].values()), list(scores[a]["nonmembers"].values())
        )
        result.per_item[f"mia_{a}_members"] = scores[a]["members"]
        result.per_item[f"mia_{a}_nonmembers"] = scores[a]["nonmembers"]
    result.meta = {
        "definitions": DEFINITIONS,
        "dtype": str(next(model.parameters()).dtype),
        "items": {
            "members": items_fingerprint(members, ("question", "answer", "prompt", "text")),
            "nonmembers": items_fingerprint(nonmembers, ("question", "answer", "prompt", "text")),
        },
        "n_items": {n: len(e) for n, e in sets.items()},
        "dropped_items": {n: d for n, d in dropped.items() if d},
        "k": k,
        "drop_last_token": drop_last_token,
    }
    return result
