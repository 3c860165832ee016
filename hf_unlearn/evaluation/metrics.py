"""Metric definitions of TOFU (arXiv 2401.06121) and MUSE (arXiv 2407.06460).

Pure functions on per-item numbers, so each can be checked by hand.

Conventions fixed here, in one place:

* **Truth Ratio** per item ``R = P_false / (P_true + 1e-10)`` with ``P_true`` the length-normalised probability of the
  true (paraphrased, for forget/retain) answer and ``P_false`` the *geometric* mean over perturbed answers of their
  length-normalised probabilities (open-unlearning; legacy TOFU's model utility used the arithmetic mean).
  Aggregators: ``closer_to_1`` = mean min(R, 1/R) (forget: higher = more forgotten), ``true_better`` =
  mean max(0, 1 - R) (retain/RA/WF: higher = better), ``prob_mean`` = mean P_true / (P_true + P_false).
* **Forget Quality**: two-sided two-sample KS p-value (``scipy.stats.ks_2samp``, default method) between the model's
  per-item forget Truth Ratios and a retain model's; n and the statistic are reported with it.
* **Model Utility**: harmonic mean of its components; 0 if any component is 0.
* **AUC** (MIA): labels forget = 0, holdout = 1, scores where higher means "less likely a member" (like a loss);
  ``AUC = P(s(holdout) > s(forget)) + P(tie) / 2`` - open-unlearning's convention, about 1 when the forget set is
  still memorised. MUSE reports ``1 - AUC``.
* **PrivLeak** ``= (r - a) / (1 - r) * 100`` with ``a`` the model's AUC and ``r`` the retain model's (both in the
  convention above). This equals MUSE's ``(AUC_M - AUC_M,ret) / AUC_M,ret * 100`` with ``AUC_M = 1 - AUC``: near 0
  is ideal, strongly negative means under-unlearning, positive means over-unlearning.
* **Extraction Strength** ``ES = 1 - k*/T`` with ``k*`` the start of the shortest suffix of teacher-forced argmax
  predictions that matches the target; the empty suffix always matches, so a sequence whose last token is missed
  scores 0 (open-unlearning's loop ends at ``k = T - 1`` and scores ``1/T`` there).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "auc",
    "exact_memorization",
    "extraction_strength",
    "forget_quality",
    "harmonic_mean",
    "mean",
    "min_k_score",
    "privleak",
    "rouge_l",
    "truth_ratio",
    "truth_ratio_aggregate",
    "zlib_score",
]


def mean(values: Mapping[Any, float | None] | Iterable[float | None]) -> float | None:
    """The mean of the values that are not ``None`` (of a mapping's values: per-item results keyed by index);
    ``None`` when there are none."""
    items = values.values() if isinstance(values, Mapping) else values
    kept = [v for v in items if v is not None]
    return sum(kept) / len(kept) if kept else None


def truth_ratio(true_avg_nll: float, false_avg_nlls: Sequence[float]) -> float:
    """Per-item ``R = P_false / (P_true + 1e-10)`` from average NLLs (geometric mean over the false answers)."""
    p_true = math.exp(-true_avg_nll)
    p_false = math.exp(-sum(false_avg_nlls) / len(false_avg_nlls))
    return p_false / (p_true + 1e-10)


def truth_ratio_aggregate(ratios: Sequence[float], aggregator: str) -> float:
    """Aggregate per-item truth ratios: ``closer_to_1``, ``true_better`` or ``prob_mean``."""
    r = np.asarray(ratios, dtype=np.float64)
    if aggregator == "closer_to_1":
        return float(np.mean(np.minimum(r, 1.0 / r)))
    if aggregator == "true_better":
        return float(np.mean(np.maximum(0.0, 1.0 - r)))
    if aggregator == "prob_mean":
        return float(np.mean(1.0 / (1.0 + r)))
    raise ValueError(f"Unknown truth-ratio aggregator {aggregator!r}; use closer_to_1, true_better or prob_mean.")


def forget_quality(model_ratios: Sequence[float], retain_ratios: Sequence[float]) -> dict[str, float]:
    """KS test of the model's forget truth ratios against the retain model's: p-value, statistic and sizes."""
    from scipy.stats import ks_2samp

    res = ks_2samp(np.asarray(model_ratios), np.asarray(retain_ratios))
    return {
        "p_value": float(res.pvalue),
        "statistic": float(res.statistic),
        "n": len(model_ratios),
        "n_reference": len(retain_ratios),
    }


def harmonic_mean(values: Sequence[float]) -> float:
    """Harmonic mean; 0 as soon as one value is 0 (how Model Utility collapses)."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("harmonic_mean of no values.")
    if any(v < 0 for v in vals):
        raise ValueError(f"harmonic_mean needs non-negative values, got {vals}.")
    if any(v == 0 for v in vals):
        return 0.0
    return len(vals) / sum(1.0 / v for v in vals)


_SCORER = None


def rouge_l(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-L recall (TOFU) and F1 (MUSE) of ``prediction`` against ``reference``, with the Porter stemmer."""
    global _SCORER
    if _SCORER is None:
        from rouge_score import rouge_scorer

        _SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    score = _SCORER.score(reference, prediction)["rougeL"]
    return {"recall": float(score.recall), "f1": float(score.fmeasure)}


def exact_memorization(is_argmax: torch.Tensor) -> float:
    """Share of target tokens that are the teacher-forced argmax."""
    return float(is_argmax.float().mean()) if is_argmax.numel() else 0.0


def extraction_strength(is_argmax: torch.Tensor) -> float:
    """``1 - k*/T``: the longest matching suffix of teacher-forced argmax predictions, as a share of the target."""
    hits = is_argmax.tolist()
    t = len(hits)
    if t == 0:
        return 0.0
    k = t
    while k > 0 and hits[k - 1]:
        k -= 1
    return 1.0 - k / t


def min_k_score(token_scores: torch.Tensor, k: float = 0.4) -> float:
    """``-mean`` of the ``max(1, floor(k*n))`` smallest per-token scores (log-probs for Min-K%, z for Min-K%++).

    Higher means "less likely a member". An empty target scores 0.
    """
    n = token_scores.numel()
    if n == 0:
        return 0.0
    n_k = max(1, math.floor(k * n))
    return float(-torch.topk(token_scores.float(), n_k, largest=False).values.mean())


def zlib_score(avg_nll: float, text: str) -> float:
    """ZLib attack: average NLL divided by the zlib-compressed length of the target text."""
    return avg_nll / max(len(zlib.compress(text.encode("utf-8"))), 1)


def auc(forget_scores: Sequence[float], holdout_scores: Sequence[float]) -> float:
    """``P(s(holdout) > s(forget)) + P(tie)/2`` (Mann-Whitney), open-unlearning's MIA convention."""
    from scipy.stats import rankdata

    f, h = np.asarray(forget_scores, dtype=np.float64), np.asarray(holdout_scores, dtype=np.float64)
    if len(f) == 0 or len(h) == 0:
        raise ValueError("AUC needs both forget and holdout scores.")
    ranks = rankdata(np.concatenate([f, h]))
    rank_sum_h = ranks[len(f) :].sum()
    return float((rank_sum_h - len(h) * (len(h) + 1) / 2) / (len(f) * len(h)))


def privleak_or_reason(model_auc: float, reference_auc: float) -> tuple[float | None, str | None]:
    """:func:`privleak`, or ``(None, reason)`` when it is undefined (a reference AUC of 1): an evaluation then
    reports why instead of failing or printing a meaningless number (open-unlearning divides by 1e-10)."""
    try:
        return privleak(model_auc, reference_auc), None
    except ValueError as err:
        return None, str(err)


def privleak(model_auc: float, reference_auc: float) -> float:
    """PrivLeak in percent, ``(r - a) / (1 - r) * 100`` (= MUSE's definition; 0 = like the retain model)."""
    if reference_auc >= 1.0:
        raise ValueError(f"Reference AUC {reference_auc} leaves PrivLeak undefined (division by 1 - r = 0).")
    return (reference_auc - model_auc) / (1.0 - reference_auc) * 100.0
