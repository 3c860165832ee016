"""Model cards for unlearned models: ``model-index`` metadata from evaluation results, readable tables, citation.

TRL's generated card does not fit unlearned checkpoints : it links ``huggingface.co/None`` for
local bases, writes ``library_name: transformers`` over PEFT's ``peft`` and cannot carry evaluation results. This card
names the real base model, says ``library_name: peft`` for adapters, records the method and its hyperparameters in an
``unlearning:`` block, and puts every aggregate metric in ``model-index`` via ``huggingface_hub.EvalResult``. It names
the forget and retain sets and their sizes - never their content.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..models import BUNDLED_HUB_ID

__all__ = ["BUNDLED_HUB_ID", "build_model_card"]

TEMPLATE = Path(__file__).parent / "model_cards" / "unlearned_model.md"


# Readable names for the Hub's evaluation widget (it shows `metric_name`); unknown keys are spelled out.
METRIC_NAMES = {
    "forget_prob": "Forget answer probability",
    "forget_truth_ratio": "Forget truth ratio",
    "forget_rouge": "Forget ROUGE-L recall",
    "retain_prob": "Retain answer probability",
    "retain_truth_ratio": "Retain truth ratio",
    "retain_rouge": "Retain ROUGE-L recall",
    "world_facts_prob": "World facts probability",
    "world_facts_accuracy": "World facts accuracy",
    "world_facts_truth_ratio": "World facts truth ratio",
    "world_facts_rouge": "World facts ROUGE-L recall",
    "model_utility": "Model utility",
    "forget_quality": "Forget quality (KS p-value)",
    "privleak": "PrivLeak (%)",
    "extraction_strength": "Extraction strength",
    "exact_memorization": "Exact memorization",
    "mia_loss_auc": "MIA AUC (loss)",
    "mia_zlib_auc": "MIA AUC (zlib)",
    "mia_min_k_auc": "MIA AUC (Min-K%)",
    "mia_min_k_plus_plus_auc": "MIA AUC (Min-K%++)",
}
EVALUATION_DOCS = "https://github.com/hf-unlearn/hf_unlearn#evaluation"


def metric_name(key: str) -> str:
    """The readable name of a metric key (``forget_prob`` -> ``Forget answer probability``)."""
    return METRIC_NAMES.get(key) or key.replace("_", " ").capitalize()


def _eval_results(metrics: Mapping[str, Any], dataset: str, model_name: str) -> list:
    from huggingface_hub import EvalResult

    out = []
    for name, value in metrics.items():
        if value is None or isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            continue
        out.append(
            EvalResult(
                task_type="text-generation",
                task_name="LLM unlearning",
                dataset_type=dataset,
                dataset_name=dataset,
                metric_type=name,
                metric_name=metric_name(name),
                metric_value=float(value),
                metric_config="hf_unlearn",
            )
        )
    return out


def build_model_card(
    *,
    repo_id: str,
    base_model: str,
    method: str,
    is_adapter: bool,
    forget_name: str,
    forget_size: int,
    retain_name: str = "-",
    retain_size: int = 0,
    hyperparameters: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    eval_dataset: str = "fictitious-authors",
    citation: str = "",
    plot: str | None = None,
    license: str | None = None,
    robustness: Any = None,
):
    """Return a ``huggingface_hub.ModelCard`` for an unlearned model or adapter (see the module docstring).

    ``robustness`` (an :func:`~hf_unlearn.evaluation.evaluate_robustness` result or its path) adds a "Robustness"
    section: the forget metrics under each attack and the answer classes - aggregates only.
    """
    from huggingface_hub import ModelCard, ModelCardData

    model_name = repo_id.split("/")[-1]
    hyper = {k: v for k, v in (hyperparameters or {}).items() if isinstance(v, str | int | float | bool)}
    shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in (metrics or {}).items() if v is not None}
    data = ModelCardData(
        model_name=model_name,
        base_model=base_model,
        library_name="peft" if is_adapter else "transformers",
        license=license,
        tags=["hf_unlearn", "unlearning", method.lower(), *(["lora"] if is_adapter else [])],
        eval_results=_eval_results(metrics or {}, eval_dataset, model_name) or None,
        unlearning={
            "method": method,
            "forget_set": {"name": forget_name, "size": forget_size},
            "retain_set": {"name": retain_name, "size": retain_size},
            "hyperparameters": hyper,
        },
    )
    return ModelCard.from_template(
        data,
        template_path=str(TEMPLATE),
        model_name=model_name,
        repo_id=repo_id,
        base_model=base_model,
        method=method,
        is_adapter=is_adapter,
        forget_name=forget_name,
        forget_size=forget_size,
        retain_name=retain_name,
        retain_size=retain_size,
        hyperparameters=hyper,
        metrics=shown,
        evaluation_intro=(
            f"Measured with hf_unlearn on {eval_dataset}; the metrics are defined in "
            f"[hf_unlearn's evaluation docs]({EVALUATION_DOCS})."
        ),
        plot=plot,
        robustness=_robustness_section(robustness),
        citation=citation or "-",
    )


def _robustness_section(robustness: Any) -> str | None:
    if robustness is None:
        return None
    from ..evaluation.report import EvalResult
    from ..evaluation.robustness import robustness_table

    if not isinstance(robustness, EvalResult):
        robustness = EvalResult.load(robustness)
    if robustness.suite != "robustness":
        raise ValueError(f"robustness= takes a robustness result, got a {robustness.suite!r} result.")
    return robustness_table(robustness)
