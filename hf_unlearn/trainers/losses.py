"""Pure loss functions of the output-level unlearning objectives (GA, GradDiff, NPO, SimNPO, DPO-style IDK, UNDIAL,
WGA, SatImp, CE-U, PDU).

Conventions: ``logps`` are per-sequence *summed* log-probabilities ``log pi(y|x)`` over label tokens (the negated
summed NLL ``S`` of the papers), shape ``(B,)``. Every function returns *per-row* (or per-position) values; callers
reduce them, which lets the trainers normalise by whole gradient-accumulation windows and keep accumulation exact.

The ``2/beta`` factor of NPO, SimNPO and the reference DPO-unlearning code is exposed as ``scale`` (``None`` means
``2/beta``). TRL's DPO has no such factor; with ``beta=0.1`` the difference is 20x, which changes the balance against a
retain term (Adam normalises the absolute scale, not the ratio).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "ceu_loss",
    "dpo_loss",
    "forward_kl",
    "logit_margin_loss",
    "npo_loss",
    "npo_weights",
    "resolve_scale",
    "satimp_weights",
    "simnpo_loss",
    "soft_cross_entropy",
    "undial_teacher_logits",
    "wga_weights",
]


def resolve_scale(beta: float, scale: float | None) -> float:
    """``scale`` or, when ``None``, the reference implementations' ``2 / beta``."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}.")
    return 2.0 / beta if scale is None else float(scale)


def npo_loss(policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float, scale: float | None = None):
    """Per-row NPO loss ``-scale * logsigmoid(beta * (S_theta - S_ref))`` with ``S = -log pi(y|x)``.

    Equals ``(2/beta) * log(1 + (pi_theta / pi_ref)^beta)``; at initialisation (``pi_theta == pi_ref``) it is
    ``(2/beta) * ln 2`` for every row.
    """
    delta = ref_logps - policy_logps  # S_theta - S_ref
    return -resolve_scale(beta, scale) * F.logsigmoid(beta * delta)


def npo_weights(policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO's implicit per-sample gradient-ascent weight ``2 * sigmoid(beta * (log pi_theta - log pi_ref))``.

    1 at initialisation, in (0, 2), and decaying to 0 as a sample is forgotten (NPO's bounded-collapse argument).
    """
    return 2.0 * torch.sigmoid(beta * (policy_logps - ref_logps))


def simnpo_loss(
    policy_logps: torch.Tensor,
    num_tokens: torch.Tensor,
    beta: float,
    gamma: float = 0.0,
    *,
    margin_scaled_by_beta: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """Per-row SimNPO loss, reference-free and length-normalised.

    Paper form (default): ``-scale * logsigmoid(beta * S/|y| - gamma)``. The reference code (and open-unlearning)
    computes ``logsigmoid(beta * (S/|y| - gamma))``, i.e. the margin multiplied by ``beta``; set
    ``margin_scaled_by_beta=True`` for that parity form. Both agree when ``gamma == 0`` (the published default).
    Rows with ``num_tokens == 0`` must not reach this function (they divide by zero).
    """
    avg_nll = -policy_logps / num_tokens
    margin = beta * gamma if margin_scaled_by_beta else gamma
    return -resolve_scale(beta, scale) * F.logsigmoid(beta * avg_nll - margin)


def dpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    scale: float | None = None,
) -> torch.Tensor:
    """Per-row DPO loss with the unlearning convention ``-scale * logsigmoid(beta * (r_w - r_l))``.

    ``r = log pi_theta(y|x) - log pi_ref(y|x)``; for IdkDPO the chosen response is a refusal and the rejected one the
    original forget answer.
    """
    margin = (chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)
    return -resolve_scale(beta, scale) * F.logsigmoid(beta * margin)


def forward_kl(policy_logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """Per-position forward ``KL(p_ref || p_theta)`` summed over the vocabulary, computed in float32.

    Inputs are ``(..., V)`` logits at the positions to compare; the result has shape ``(...)``.
    """
    logp = torch.log_softmax(policy_logits.float(), dim=-1)
    logq = torch.log_softmax(ref_logits.float(), dim=-1)
    return (logq.exp() * (logq - logp)).sum(-1)


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor, ids: torch.Tensor | None = None):
    """Per-position cross-entropy ``-sum_v q_v log p_v`` of ``softmax(logits)`` against ``target_probs``.

    ``logits`` are ``(N, V)``; ``target_probs`` is ``(N, V)``, or ``(N, k)`` over the vocabulary ids ``ids``
    ``(N, k)`` (a sparse target such as a teacher's top-k). Computed in float32.
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    if ids is not None:
        logp = logp.gather(-1, ids)
    return -(target_probs * logp).sum(-1)


def undial_teacher_logits(teacher_logits: torch.Tensor, labels: torch.Tensor, beta: float) -> torch.Tensor:
    """UNDIAL's adjusted teacher logits ``z - beta * onehot(y)`` (Dong et al. 2024, arXiv 2402.10052).

    ``teacher_logits`` ``(..., V)`` at the positions predicting ``labels`` ``(...)``; the target of the student is
    ``softmax`` of the result: the teacher's distribution with the memorised token made ``e^beta`` times less likely.
    """
    adjusted = teacher_logits.float().clone()
    adjusted.scatter_add_(-1, labels[..., None], adjusted.new_full((*labels.shape, 1), -float(beta)))
    return adjusted


def wga_weights(token_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """WGA's per-token weights ``p(y_t)^beta`` (detached): ascent concentrates on tokens the model still predicts
    (Wang et al. 2025, arXiv 2502.19301)."""
    return (token_logps.detach() * beta).exp()


def satimp_weights(token_logps: torch.Tensor, beta1: float, beta2: float) -> torch.Tensor:
    """SatImp's per-token weights ``p^beta1 * (1 - p)^beta2`` (detached): saturation times importance
    (Yang et al. 2025, arXiv 2505.11953)."""
    p = token_logps.detach().exp()
    return p.pow(beta1) * (1.0 - p).clamp(min=0.0).pow(beta2)


def ceu_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-position CE-U loss (Yang 2025, arXiv 2503.01224): cross-entropy of the model against its own detached
    distribution with the true token's logit set to ``-inf``; its gradient is ``p - q``, which removes the true
    token's probability and keeps the ranking of the others."""
    target = logits.detach().float().scatter(-1, labels[:, None], float("-inf"))
    return soft_cross_entropy(logits, torch.softmax(target, dim=-1))


def logit_margin_loss(logits: torch.Tensor) -> torch.Tensor:
    """Per-position PDU forget loss ``(max_v z_v - mean_v z_v)^2`` (Entesari et al. 2025, arXiv 2506.05314): zero
    exactly when the logits are flat, i.e. the next-token distribution is uniform."""
    z = logits.float()
    return (z.max(-1).values - z.mean(-1)).square()
