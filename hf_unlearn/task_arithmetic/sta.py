"""Selective Task Arithmetic: keep only the task-vector entries that matter for the forgotten task.

STA (Tian et al. 2024, "Beyond Task Vectors: Selective Task Arithmetic Based on Importance Metrics", arXiv
2411.16139) scores each entry of a task vector by a first-order Taylor estimate of how much the task loss changes
when the entry is removed, ``I = |g * tau|`` with ``g`` the gradient of the task (forget) loss at the fine-tuned
weights, and keeps the most important entries: forgetting is then ``theta - lambda * (m * tau)``. No public code
exists; this module is a reading of the paper. A diagonal-Fisher importance (``F * tau^2``, the second-order
estimate) and a forget-versus-retain contrast rule are offered as documented extensions, not as the paper's claims.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data.collators import DataCollatorForUnlearning
from ..data.tokenization import IGNORE_INDEX, tokenize_rows
from .vector import TaskVector

__all__ = ["ScaleChoice", "choose_scale", "contrast_masks", "sta_importance", "sta_masks", "sweep_negation"]

IMPORTANCE = ("taylor", "fisher")


def sta_importance(
    model: torch.nn.Module,
    tokenizer: Any,
    rows: Sequence[Mapping[str, Any]],
    tau: TaskVector,
    *,
    kind: str = "taylor",
    batches: int = 4,
    batch_size: int = 8,
    max_length: int = 512,
) -> dict[str, torch.Tensor]:
    """Per-entry importance of ``tau`` for the task of ``rows`` (float32, keyed like ``tau``).

    ``model`` is at the fine-tuned weights (for unlearning: the reinforced model). ``g`` is the gradient of the
    token-mean NLL of the rows' answers, averaged over the first ``batches`` batches. ``kind="taylor"`` (the paper):
    ``|g * tau|``; ``kind="fisher"``: ``mean_b(g_b^2) * tau^2``. The model's gradients are left as they were.
    """
    if kind not in IMPORTANCE:
        raise ValueError(f"kind must be one of {', '.join(IMPORTANCE)}, got {kind!r}.")
    params = dict(model.named_parameters())
    missing = [k for k in tau if k not in params]
    if missing:
        raise ValueError(f"The model has no parameter {missing[0]} of the task vector (another architecture?).")
    encoded = tokenize_rows(list(rows), tokenizer, max_length=max_length)
    if not encoded:
        raise ValueError("No row has an answer token after tokenisation: nothing to score the importance on.")
    collate = DataCollatorForUnlearning(pad_token_id=tokenizer.pad_token_id)
    device = next(model.parameters()).device
    saved = {k: p.grad for k, p in params.items()}
    flags = {k: p.requires_grad for k, p in params.items()}
    first = {k: torch.zeros_like(tau[k]) for k in tau}
    second = {k: torch.zeros_like(tau[k]) for k in tau} if kind == "fisher" else None
    was_training = model.training
    model.eval()
    n = 0
    try:
        for p in params.values():
            p.requires_grad_(False)
        for k in tau:
            params[k].requires_grad_(True)
        for start in range(0, min(len(encoded), batches * batch_size), batch_size):
            batch = collate(
                [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in encoded[start : start + batch_size]]
            )
            batch = {k: v.to(device) for k, v in batch.items()}
            for k in tau:
                params[k].grad = None
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
            target = batch["labels"][:, 1:]
            select = target != IGNORE_INDEX
            loss = torch.nn.functional.cross_entropy(logits[select].float(), target[select])
            loss.backward()
            for k in tau:
                g = params[k].grad.float()
                first[k] += g
                if second is not None:
                    second[k] += g.square()
            n += 1
    finally:
        for k, p in params.items():
            p.grad = saved[k]
            p.requires_grad_(flags[k])
        model.train(was_training)
    if kind == "taylor":
        return {k: (first[k] / n * tau[k]).abs() for k in tau}
    return {k: second[k] / n * tau[k].square() for k in tau}


def sta_masks(
    importance: Mapping[str, torch.Tensor], keep: float = 0.1, *, granularity: str = "tensor"
) -> dict[str, torch.Tensor]:
    """Boolean masks of the ``keep`` fraction of most important entries, per tensor (``granularity="tensor"``) or
    over the whole model (``"global"``). Exactly ``round(keep * n)`` entries are kept (ties broken by index)."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}.")
    if granularity not in ("tensor", "global"):
        raise ValueError(f"granularity must be 'tensor' or 'global', got {granularity!r}.")

    def top(values: torch.Tensor) -> torch.Tensor:
        flat = values.reshape(-1)
        k = max(1, round(keep * flat.numel()))
        mask = torch.zeros(flat.numel(), dtype=torch.bool)
        mask[flat.topk(k).indices] = True
        return mask

    if granularity == "tensor":
        return {k: top(v.float()).view(v.shape) for k, v in importance.items()}
    names = list(importance)
    sizes = [importance[k].numel() for k in names]
    mask = top(torch.cat([importance[k].float().reshape(-1) for k in names]))
    return {k: m.view(importance[k].shape) for k, m in zip(names, mask.split(sizes), strict=True)}


def contrast_masks(
    forget_importance: Mapping[str, torch.Tensor],
    retain_importance: Mapping[str, torch.Tensor],
    kappa: float = 1.0,
    eps: float = 1e-12,
) -> dict[str, torch.Tensor]:
    """Entries more important to the forget task than to the retained one: ``I_f > kappa * (I_r + eps)``.

    An extension in the spirit of STA (it is not the paper's rule): it spares entries that the retain data needs as
    much as the forget data does.
    """
    return {k: forget_importance[k] > kappa * (retain_importance[k] + eps) for k in forget_importance}


@dataclass
class ScaleChoice:
    """The chosen scale, every ``(scale, utility)`` evaluated and (from :func:`sweep_negation`) the unedited model's
    utility."""

    scale: float
    curve: list[tuple[float, float]] = field(default_factory=list)
    baseline: float | None = None


def choose_scale(
    evaluate: Callable[[float], float], scales: Sequence[float], *, baseline: float, tolerance: float = 0.02
) -> ScaleChoice:
    """The largest scale whose utility stays within ``tolerance`` of ``baseline`` (Ilharco et al. 2023 choose the
    negation coefficient this way: as much forgetting as the control task allows).

    ``evaluate(scale)`` returns the utility (e.g. general-knowledge accuracy) of the model edited with ``scale``.
    Scales are tried from the smallest up, stopping at the first that breaks the tolerance.
    """
    curve: list[tuple[float, float]] = []
    best = None
    for scale in sorted(scales):
        utility = float(evaluate(scale))
        curve.append((scale, utility))
        if utility < baseline - tolerance:
            break
        best = scale
    if best is None:
        raise ValueError(
            f"Even the smallest scale {min(scales)} loses more than {tolerance} of utility "
            f"({curve[0][1]:.4g} vs {baseline:.4g}); try smaller scales."
        )
    return ScaleChoice(best, curve)


@torch.no_grad()
def sweep_negation(
    model: torch.nn.Module,
    tau: TaskVector,
    utility: Callable[[torch.nn.Module], float],
    scales: Sequence[float],
    *,
    tolerance: float = 0.02,
) -> ScaleChoice:
    """:func:`choose_scale` for ``model - scale * tau``, in memory: ``utility(model)`` is measured on the unedited
    model (the baseline) and after each negation. The model's weights are restored before each trial and at the
    end; apply the chosen scale with ``tau.apply_to(model, scale=-choice.scale)``."""
    original = {k: v.detach().clone() for k, v in model.named_parameters()}

    def restore() -> None:
        for k, v in model.named_parameters():
            v.copy_(original[k])

    def trial(scale: float) -> float:
        restore()
        tau.apply_to(model, scale=-scale)
        return utility(model)

    baseline = float(utility(model))
    try:
        choice = choose_scale(trial, scales, baseline=baseline, tolerance=tolerance)
    finally:
        restore()
    choice.baseline = baseline
    return choice
