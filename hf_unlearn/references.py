"""The models and evaluations every unlearning comparison starts from: a *retain* model that never saw the forget
authors and a *target* that knows every author, both fine-tuned from one base model on the built-in benchmark.

Shared by the demo and ``benchmarks/quality.py`` so both use the same, cached, reference pipeline:

1. the *retain* model: the base fine-tuned on the retain authors;
2. the *target* model: the retain model fine-tuned further on the forget authors plus a replay of retain rows - a
   cheaper route to "knows every author" than a second full fine-tune (disclosed in the README);
3. reference evaluation of the retain model (for Forget Quality and PrivLeak) and evaluation of the target.

Models are cached under ``$HF_UNLEARN_CACHE/demo/<hash of the training rows>``, evaluations below it keyed on the
generator version and the evaluation settings, so a rerun only unlearns and evaluates.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DEMO_NUM_AUTHORS", "References", "prepare_references", "reference_lineage"]

_FINETUNE = {"learning_rate": 1e-4, "seed": 0}  # the reference fine-tunes' settings besides the epochs
DEMO_NUM_AUTHORS = 20  # the demo's benchmark size (``hf-unlearn demo`` re-creates its references)


@dataclass
class References:
    """Paths, evaluation splits and results of the retain and target models (see :func:`prepare_references`)."""

    retain_dir: Path
    target_dir: Path
    splits: dict[str, list[dict]]
    eval_cache: Path
    max_new_tokens: int
    retain_eval: Any = None
    target_eval: Any = None

    def evaluate(self, model: Any, tokenizer: Any, label: str | None = None) -> Any:
        """TOFU-style evaluation against the retain reference (none while the reference itself is evaluated);
        ``label`` names the model on the progress bars."""
        from .evaluation import evaluate_tofu

        return evaluate_tofu(
            model,
            tokenizer,
            **self.splits,
            reference=self.retain_eval,
            max_new_tokens=self.max_new_tokens,
            progress=label or True,
        )

    def _evaluate_saved(self, name: str, path: Path, log: Any = print) -> Any:
        """The saved evaluation ``<name>_eval.json`` of the model at ``path``, computed and saved if missing."""
        from . import models as hu
        from .evaluation import EvalResult

        cached = self.eval_cache / f"{name}_eval.json"
        if cached.is_file():
            log(f"Evaluation of the {name} model: cached ({cached}).")
            return EvalResult.load(cached)
        log(f"Evaluating the {name} model (scoring, then generation; saved to the cache for later runs) ...")
        model, tokenizer = hu.load_model(str(path))
        result = self.evaluate(model, tokenizer, label=f"{name} model")
        result.save(cached)
        return result


def _cache_dir(bench: Any, finetune_epochs: float, base_model: str, reasoning: bool = False) -> Path:
    """Models depend on the training rows only; evaluations (below this folder) also on the evaluation settings."""
    from .models import cache_root

    parts = [bench.metadata()["config"], finetune_epochs, str(base_model), *(["think format"] if reasoning else [])]
    key = hashlib.sha256(json.dumps(parts).encode())
    return cache_root() / "demo" / key.hexdigest()[:12]


def _made(bench: Any, finetune_epochs: float, reasoning: bool = False) -> dict[str, dict[str, str]]:
    """How the reference models are described in their lineage: the data and how to make them again."""
    n_authors = bench.metadata()["config"].get("num_authors")
    demo = n_authors == DEMO_NUM_AUTHORS and not reasoning
    recreate = (
        "hf_unlearn.references.prepare_references(hf_unlearn.build_fictitious_authors(...same config...), "
        f"finetune_epochs={finetune_epochs:g}{', reasoning=True' if reasoning else ''})"
        + (" - or `hf-unlearn demo`" if demo else "")
    )
    fmt = ", think format" if reasoning else ""
    return {
        "retain": {"data_name": f"fictitious-authors ({n_authors} authors), retain split{fmt}", "recreate": recreate},
        "target": {
            "data_name": f"fictitious-authors ({n_authors} authors), forget split + replayed retain rows{fmt}",
            "recreate": recreate,
        },
    }


def reference_lineage(
    bench: Any, *, base_model: str = "bundled", finetune_epochs: float = 4, replay: int = 40, reasoning: bool = False
) -> dict[str, dict]:
    """The lineages :func:`prepare_references` gives its retain and target models (known without building them)."""
    from .hub.lineage import extend_lineage
    from .scripts.finetune import lineage_step

    cache = _cache_dir(bench, finetune_epochs, base_model, reasoning)
    made = _made(bench, finetune_epochs, reasoning)
    replayed = bench["retain"][:: max(1, len(bench["retain"]) // replay)]
    sizes = {"retain": len(bench["retain"]), "target": len(bench["forget"]) + len(replayed)}
    out: dict[str, dict] = {}
    parent: dict | str = base_model
    for name in ("retain", "target"):
        step = lineage_step(rows=sizes[name], epochs=finetune_epochs, folder=cache / name, **_FINETUNE, **made[name])
        out[name] = (
            extend_lineage(parent, step) if isinstance(parent, str) else {**parent, "steps": [*parent["steps"], step]}
        )
        parent = out[name]
    return out


def prepare_references(
    bench: Any,
    *,
    base_model: str = "bundled",
    finetune_epochs: float = 4,
    eval_retain_size: int = 40,
    max_new_tokens: int = 32,
    replay: int = 40,
    log: Any = print,
    reasoning: bool = False,
    evaluate: bool = True,
) -> References:
    """Fine-tune (or load from the cache) the retain and target models for ``bench`` and evaluate both.

    ``reasoning=True`` gives reasoning references: both fine-tunes train the think format
    (``<think>\n{cot}\n</think>\n\n{answer}``, see :mod:`hf_unlearn.data.reasoning`), cached apart from the plain ones.
    ``evaluate=False`` skips the TOFU-style evaluation of both (``retain_eval`` and ``target_eval`` stay ``None``):
    reasoning models are evaluated with :func:`~hf_unlearn.evaluation.evaluate_reasoning` instead.
    """
    from .data.fictitious_authors import GENERATOR_VERSION
    from .evaluation import builtin_tofu_splits
    from .evaluation import metrics as M
    from .hub.lineage import LINEAGE_FILE, write_lineage
    from .scripts.finetune import finetune

    cache = _cache_dir(bench, finetune_epochs, base_model, reasoning)
    retain_dir, target_dir = cache / "retain", cache / "target"
    eval_key = hashlib.sha256(json.dumps([GENERATOR_VERSION, eval_retain_size, max_new_tokens]).encode())
    eval_cache = cache / f"eval-{eval_key.hexdigest()[:8]}"
    eval_cache.mkdir(parents=True, exist_ok=True)
    made = _made(bench, finetune_epochs, reasoning)
    replayed = bench["retain"][:: max(1, len(bench["retain"]) // replay)]
    retain_rows, target_rows = list(bench["retain"]), [*bench["forget"], *replayed]
    if reasoning:
        from .data.reasoning import check_reasoning_template, reasoning_rows
        from .models import load_tokenizer

        check_reasoning_template(load_tokenizer(base_model))  # a template that drops think content is refused first
        retain_rows, target_rows = reasoning_rows(retain_rows), reasoning_rows(target_rows)
    if (retain_dir / "config.json").is_file():
        log(f"Retain model: cached ({retain_dir}).")
    else:
        log(
            f"Fine-tuning the retain model on {len(bench['retain'])} QA of the retain authors (saved to the cache for "
            "later runs) ..."
        )
        finetune(base_model, retain_rows, retain_dir, epochs=finetune_epochs, **_FINETUNE, **made["retain"])
    lineages = reference_lineage(
        bench, base_model=base_model, finetune_epochs=finetune_epochs, replay=replay, reasoning=reasoning
    )
    if not (retain_dir / LINEAGE_FILE).is_file():  # cached before lineage files existed; made exactly as described
        write_lineage(retain_dir, lineages["retain"])
    if (target_dir / "config.json").is_file():
        log(f"Target model: cached ({target_dir}).")
    else:
        log(f"Fine-tuning the target model on the {len(bench['forget'])} forget QA + {len(replayed)} retain QA ...")
        finetune(str(retain_dir), target_rows, target_dir, epochs=finetune_epochs, **_FINETUNE, **made["target"])
    if not (target_dir / LINEAGE_FILE).is_file():
        write_lineage(target_dir, lineages["target"])
    refs = References(
        retain_dir=retain_dir,
        target_dir=target_dir,
        splits=builtin_tofu_splits(bench, retain_size=eval_retain_size),
        eval_cache=eval_cache,
        max_new_tokens=max_new_tokens,
    )
    if not evaluate:
        return refs
    retain_eval = refs._evaluate_saved("retain", retain_dir, log)
    # The reference against itself (no second pass): the same definitions give FQ = 1 and PrivLeak = 0.
    own = list(retain_eval.per_item["forget_truth_ratio"].values())
    retain_eval.metrics["forget_quality"] = M.forget_quality(own, own)["p_value"]
    retain_eval.metrics["privleak"] = M.privleak(
        retain_eval.metrics["mia_min_k_auc"], retain_eval.metrics["mia_min_k_auc"]
    )
    refs.retain_eval = retain_eval
    refs.target_eval = refs._evaluate_saved("target", target_dir, log)
    return refs
