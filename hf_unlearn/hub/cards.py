"""Model cards for unlearned models: ``model-index`` metadata from evaluation results, readable tables, citation.

TRL's generated card does not fit unlearned checkpoints : it links ``huggingface.co/None`` for
local bases, writes ``library_name: transformers`` over PEFT's ``peft`` and cannot carry evaluation results. This card
names the real base model, says ``library_name: peft`` for adapters, records the method and its hyperparameters in an
``unlearning:`` block, and puts every aggregate metric in ``model-index`` via ``huggingface_hub.EvalResult``. It names
the forget and retain sets and their sizes - never their content.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..models import BUNDLED_HUB_ID

__all__ = [
    "BUNDLED_HUB_ID",
    "base_license",
    "build_model_card",
    "card_for_push",
    "framework_versions",
    "kind_section",
    "load_section",
    "replace_section",
]

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
    "forget_nll": "Forget per-token NLL",
    "forget_perplexity": "Forget perplexity",
    "holdout_nll": "Holdout per-token NLL",
    "holdout_perplexity": "Holdout perplexity",
    "retain_nll": "Retain per-token NLL",
    "retain_perplexity": "Retain perplexity",
    "forget_verbmem_rouge_l_f1": "Forget verbatim memorisation (ROUGE-L F1)",
    "holdout_verbmem_rouge_l_f1": "Holdout verbatim memorisation (ROUGE-L F1)",
    "general_knowledge_accuracy": "General knowledge accuracy",
}
EVALUATION_DOCS = "https://github.com/hf-unlearn/hf_unlearn#evaluation"


def metric_name(key: str) -> str:
    """The readable name of a metric key (``forget_prob`` -> ``Forget answer probability``)."""
    return METRIC_NAMES.get(key) or key.replace("_", " ").capitalize()


def is_reported_metric(name: str, value: Any) -> bool:
    """Whether a metric belongs in ``model-index``: a finite number that measures the model (a chance level such as
    ``wmdp_bio_chance`` is a property of the questions, not a result)."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False
    return not name.endswith("_chance")


def _eval_results(metrics: Mapping[str, Any], dataset: str, dataset_name: str | None = None) -> list:
    from huggingface_hub import EvalResult

    return [
        EvalResult(
            task_type="text-generation",
            task_name="LLM unlearning",
            dataset_type=dataset,
            dataset_name=dataset_name or dataset,
            metric_type=name,
            metric_name=metric_name(name),
            metric_value=float(value),
        )
        for name, value in metrics.items()
        if is_reported_metric(name, value)
    ]


def framework_versions(*, is_adapter: bool, versions: Mapping[str, str] | None = None) -> list[str]:
    """The card's "Framework versions" lines in PEFT's format (``- PEFT 0.21.2``, so PEFT does not add its own):
    ``versions`` (shown name -> version) when given - e.g. the versions a benchmark recorded with its results - else
    the installed hf_unlearn, PEFT (adapters), TRL, Transformers, PyTorch and Datasets."""
    if versions is not None:
        return [f"- {name} {value}" for name, value in versions.items()]
    from importlib.metadata import PackageNotFoundError, version

    names = [("hf_unlearn", "hf-unlearn"), *([("PEFT", "peft")] if is_adapter else []), ("TRL", "trl")]
    names += [("Transformers", "transformers"), ("Pytorch", "torch"), ("Datasets", "datasets")]
    lines = []
    for shown, package in names:
        try:
            lines.append(f"- {shown} {version(package)}")
        except PackageNotFoundError:
            continue
    return lines


def base_license(name_or_path: str | None, lineage: Mapping[str, Any] | None = None) -> str | None:
    """The base model's license where this machine knows it, without a network call: the bundled model's GGUF
    metadata, a local folder's card, or a Hub model's card in the local Hub cache; for a local fine-tune, the license
    of its lineage's Hub root. ``None`` when unknown (the card then names none)."""
    from ..models import bundled_model_license, is_bundled_model
    from .lineage import is_local_path

    candidates = [name_or_path, (lineage or {}).get("base")]
    for name in (str(c) for c in candidates if c and str(c) != "unknown"):
        if is_bundled_model(name):
            return bundled_model_license()
        card = Path(name).expanduser() / "README.md" if is_local_path(name) else _cached_card(name)
        if card is not None and card.is_file():
            found = _card_license(card)
            if found:
                return found
    return None


def _cached_card(repo_id: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "README.md")
    except Exception:  # an id the cache cannot hold (not owner/name): no cached card
        return None
    return Path(found) if isinstance(found, str) else None


def _card_license(card: Path) -> str | None:
    from huggingface_hub import ModelCard

    try:
        value = ModelCard.load(card).data.license
    except Exception:  # a card without valid metadata names no license
        return None
    return str(value) if value else None


def build_model_card(
    *,
    repo_id: str,
    base_model: str,
    method: str,
    is_adapter: bool,
    forget_name: str,
    forget_size: int,
    forget_documents: int | None = None,
    retain_name: str = "-",
    retain_size: int = 0,
    hyperparameters: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    eval_dataset: str = "fictitious-authors",
    eval_dataset_name: str | None = None,
    datasets: Sequence[str] | None = None,
    versions: Mapping[str, str] | None = None,
    citation: str = "",
    plot: str | None = None,
    plot_title: str | None = None,
    license: str | None = None,
    robustness: Any = None,
    lineage: Mapping[str, Any] | None = None,
):
    """Return a ``huggingface_hub.ModelCard`` for an unlearned model or adapter (see the module docstring).

    ``robustness`` (an :func:`~hf_unlearn.evaluation.evaluate_robustness` result or its path) adds a "Robustness"
    section: the forget metrics under each attack and the answer classes - aggregates only.

    ``lineage`` (see :mod:`hf_unlearn.hub.lineage`) is shown as one line. When ``base_model`` is a local folder, the
    card's ``base_model`` metadata names the lineage's Hub root instead (a path is not a valid Hub reference), and
    the card says how to publish what the adapter needs; :func:`~hf_unlearn.hub.push_unlearned` rewrites it then.

    ``forget_documents`` (when the forget set is documents split into ``forget_size`` blocks) is shown beside the
    blocks. ``datasets`` lists the Hub ids of the data the model was unlearned on (never a local file: it would name
    a path and say nothing to a reader). ``license`` defaults to the base model's where known (:func:`base_license`).
    ``eval_dataset`` is the ``model-index`` dataset type (a Hub id or a built-in name), ``eval_dataset_name`` its
    readable name. ``versions`` (shown name -> version) replaces the installed framework versions on the card.
    """
    from huggingface_hub import ModelCard, ModelCardData

    from .lineage import describe_lineage, is_local_path

    model_name = repo_id.split("/")[-1]
    local = is_local_path(base_model) and base_model != "unknown"
    root = (lineage or {}).get("base")
    if local:
        shown_base = f"a fine-tune of {root}" if root else f"a local model (`{Path(base_model).name}`)"
    else:
        shown_base = base_model
    hyper = {k: v for k, v in (hyperparameters or {}).items() if isinstance(v, str | int | float | bool)}
    shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in (metrics or {}).items() if v is not None}
    hub_base = None if local or base_model == "unknown" else base_model
    data = ModelCardData(
        model_name=model_name,
        base_model=(root if local else hub_base) or None,
        base_model_relation=("finetune" if local and root else None),
        library_name="peft" if is_adapter else "transformers",
        pipeline_tag="text-generation",
        license=license or base_license(base_model, lineage),
        datasets=list(datasets) if datasets else None,
        tags=card_tags(method, is_adapter=is_adapter, hub_base=hub_base),
        eval_results=_eval_results(metrics or {}, eval_dataset, eval_dataset_name) or None,
        unlearning={
            "method": method,
            "forget_set": {
                "name": forget_name,
                "size": forget_size,
                **({"documents": forget_documents} if forget_documents else {}),
            },
            "retain_set": {"name": retain_name, "size": retain_size},
            "hyperparameters": hyper,
        },
    )
    return ModelCard.from_template(
        data,
        template_path=str(TEMPLATE),
        model_name=model_name,
        repo_id=repo_id,
        base_shown=shown_base,
        method=method,
        kind_section=kind_section(is_adapter=is_adapter, local_base=local),
        lineage=describe_lineage(lineage) if lineage and lineage.get("steps") else None,
        load_section=load_section(repo_id=repo_id, base_model=base_model, is_adapter=is_adapter, local_base=local),
        forget_name=forget_name,
        forget_size=(
            f"{forget_documents} documents in {forget_size} blocks"
            if forget_documents and forget_documents != forget_size
            else f"{forget_size} items"
        ),
        retain_name=retain_name,
        retain_size=retain_size,
        hyperparameters=hyper,
        metrics=shown,
        evaluation_intro=(
            f"Measured with hf_unlearn on {eval_dataset}; the metrics are defined in "
            f"[hf_unlearn's evaluation docs]({EVALUATION_DOCS})."
        ),
        plot=plot,
        plot_title=plot_title,
        robustness=_robustness_section(robustness),
        citation=citation or "-",
        framework_versions="\n".join(framework_versions(is_adapter=is_adapter, versions=versions)),
    )


def card_tags(method: str, *, is_adapter: bool, hub_base: str | None) -> list[str]:
    """hf_unlearn's tags plus PEFT's for an adapter (``transformers``, ``lora``, ``base_model:adapter:<base>``)."""
    tags = ["hf_unlearn", "unlearning", method.lower()]
    if is_adapter:
        tags += ["transformers", "lora", *([f"base_model:adapter:{hub_base}"] if hub_base else [])]
    return tags


def kind_section(*, is_adapter: bool, local_base: bool) -> str:
    """The card's sentence saying what the repository holds (replaced by a push that merges or publishes the base)."""
    if not is_adapter:
        return "It is a full set of weights."
    if not local_base:
        return "It is a PEFT (LoRA) adapter: load it on top of the base model."
    return (
        "It is a PEFT (LoRA) adapter on a local model that is not on the Hub (see the lineage). Publish it with "
        "`hf-unlearn push --output_dir <folder> --hub_model_id <repo> --merge` (merged full weights) or `--base_repo "
        "<repo>` (the base model as a "
        "repository of its own); either rewrites this card."
    )


def load_section(*, repo_id: str, base_model: str, is_adapter: bool, local_base: bool = False) -> str:
    """The card's "How to load it" code (replaced by a push that changes the repository or the base)."""
    if is_adapter and not local_base:
        head = (
            "from transformers import AutoModelForCausalLM\nfrom peft import PeftModel\n\n"
            f'base = AutoModelForCausalLM.from_pretrained("{base_model}")\n'
            f'model = PeftModel.from_pretrained(base, "{repo_id}")\n'
        )
    elif is_adapter:
        head = "# The base model is a local folder: load the adapter where that folder exists.\n"
    else:
        head = (
            "from transformers import AutoModelForCausalLM\n\n"
            f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")\n'
        )
    return (
        f"```python\n{head}# or, resolving the base model from this card:\nfrom hf_unlearn import load_unlearned\n"
        f'model, tokenizer = load_unlearned("{repo_id}")\n```'
    )


def replace_section(text: str, name: str, content: str) -> str:
    """``text`` with the block between ``<!-- hf_unlearn:name -->`` markers replaced; unchanged without them."""
    start, end = f"<!-- hf_unlearn:{name} -->\n", f"\n<!-- /hf_unlearn:{name} -->"
    i = text.find(start)
    j = text.find(end, i + len(start)) if i >= 0 else -1
    if i < 0 or j < 0:
        return text
    return text[: i + len(start)] + content + text[j:]


def card_for_push(text: str, repo_id: str, base_model: str | None, *, is_adapter: bool) -> str:
    """A card (as written by :func:`build_model_card`) rewritten for what a push uploads to ``repo_id``: the
    ``base_model`` metadata (a Hub id, never a local path; ``None`` keeps the card's own Hub base), library and tags,
    and the blocks saying what the repository holds and how to load it."""
    from huggingface_hub import ModelCard

    from .lineage import is_local_path

    card = ModelCard(text)
    data = card.data
    if not base_model and data.base_model and not is_local_path(str(data.base_model)):
        base_model = str(data.base_model)
    data.base_model = base_model or None
    data.base_model_relation = "adapter" if is_adapter else ("finetune" if base_model else None)
    data.library_name = "peft" if is_adapter else "transformers"
    data.pipeline_tag = data.pipeline_tag or "text-generation"
    peft_tags = {"transformers", "lora"}
    tags = [t for t in (data.tags or []) if t not in peft_tags and not t.startswith("base_model:adapter:")]
    if is_adapter:
        tags += ["transformers", "lora", *([f"base_model:adapter:{base_model}"] if base_model else [])]
    data.tags = tags
    body = replace_section(card.text, "kind", kind_section(is_adapter=is_adapter, local_base=False))
    body = replace_section(
        body, "load", load_section(repo_id=repo_id, base_model=base_model or "", is_adapter=is_adapter)
    )
    if not is_adapter:  # merged or full weights: PEFT is not needed to load them
        body = "\n".join(line for line in body.split("\n") if not line.startswith("- PEFT "))
    return f"---\n{data.to_yaml()}\n---\n{body}"


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
