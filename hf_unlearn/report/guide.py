"""How to read each metric: which way is better and against which level.

Unlearning is judged against the model that never saw the forget set (the retain model, or unseen "holdout" data
when there is none), not against zero: a forget set pushed far below that level is as recognisable to a membership
attack as one that was never unlearned ("MUSE: Machine Unlearning Six-Way Evaluation for Language Models",
arXiv:2407.06460; "TOFU: A Task of Fictitious Unlearning for LLMs", arXiv:2401.06121).
"""

from __future__ import annotations

__all__ = ["MetricGuide", "guide"]

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricGuide:
    """``arrow``: ``"↑"`` higher is better, ``"↓"`` lower is better, ``"→"`` closest to ``level`` is best;
    ``level``: the value a perfect unlearning reaches, in words (``"retain"`` = the retain model's value)."""

    arrow: str
    level: str
    note: str = ""


_EXACT = {
    "forget_quality": MetricGuide("↑", "1 (retain)", "KS-test p-value of forget truth ratios against the retain model"),
    "model_utility": MetricGuide("↑", "target", "harmonic mean of retain and general-knowledge scores"),
    "privleak": MetricGuide("→", "0", "relative MIA AUC gap to the retain model (or holdout): 0 = looks never seen"),
    "extraction_strength": MetricGuide("→", "retain", "share of the answer the model completes from a prefix"),
    "exact_memorization": MetricGuide("→", "retain", "share of answer tokens predicted exactly"),
    "forget_verbmem_rouge_l_f1": MetricGuide("→", "holdout", "verbatim continuation ROUGE-L on the forget text"),
    "general_knowledge_accuracy": MetricGuide("↑", "target", "multiple-choice accuracy on general facts"),
}


def guide(key: str) -> MetricGuide:
    """The :class:`MetricGuide` of a metric name (``condition/metric`` names of robustness results included)."""
    name = key.rsplit("/", 1)[-1]
    if name in _EXACT:
        return _EXACT[name]
    if name.startswith("mia_") and name.endswith("_auc"):
        return MetricGuide("→", "0.5", "forget vs never-seen AUC: 0.5 = indistinguishable, 1 = still a member")
    if name.endswith("_rate"):
        kind = name.removesuffix("_rate")
        better = {"leak": "↓", "degenerate": "↓"}.get(kind, "")
        return MetricGuide(better or "·", "0" if better else "", f"share of forget answers classed '{kind}'")
    if name.startswith("forget_"):
        return MetricGuide("→", "retain", "the forget set should look as it does to a model that never saw it")
    if name.startswith("holdout_"):
        return MetricGuide("·", "", "data of the same kind the model never saw: the level to reach")
    if name.endswith("_nll") or name.endswith("_perplexity"):
        return MetricGuide("↓", "target", "kept data: should not rise")
    if name.startswith(("retain_", "world_facts_", "general", "utility")):
        return MetricGuide("↑", "target", "kept knowledge: should not drop")
    return MetricGuide("·", "")
