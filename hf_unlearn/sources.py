"""Dataset names to splits, in one place: what the recipe trains on and what ``hf-unlearn eval`` scores, for the
built-in benchmark, the public Hub datasets (TOFU, MUSE, WMDP) and local JSON-lines files."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["TRAINING_DATASETS", "TrainingData", "evaluation_splits", "hub_dataset_ids", "training_data"]

TRAINING_DATASETS = ("fictitious-authors", "tofu", "muse-news", "muse-books", "files")
# The Hub repositories behind the named datasets (a card's `datasets:`); built-in and local data have none.
HUB_DATASETS = {"tofu": "locuslab/TOFU", "muse-news": "muse-bench/MUSE-News", "muse-books": "muse-bench/MUSE-Books"}
EVAL_SUITES = ("tofu", "muse", "mcq", "robustness", "reasoning")


@dataclass
class TrainingData:
    """Forget and retain rows to unlearn with, and the TOFU-style evaluation splits when the source has them."""

    forget: list[dict]
    retain: list[dict] | None
    eval_sets: dict[str, list[dict]] | None


def hub_dataset_ids(dataset: str) -> list[str]:
    """The Hub ids a model trained on ``dataset`` names in its card's ``datasets:`` (none for built-in or local
    data: a local path would say nothing to a reader and may name private folders)."""
    return [HUB_DATASETS[dataset]] if dataset in HUB_DATASETS else []


def _read_jsonl(path: str) -> list[dict]:
    rows = []
    with open(path) as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as err:
                raise ValueError(f"{path}, line {number}: not valid JSON ({err}); one JSON object per line.") from None
    return rows


def calibration_nonmembers(
    dataset: str, *, benchmark: Mapping[str, Any] | None = None, nonmember_path: str | None = None
) -> list[dict]:
    """Non-member rows for :class:`~hf_unlearn.callbacks.ForgetTargetCallback`: ``nonmember_path`` (JSON lines of
    the forget set's kind that the model never trained on) or, for the built-in benchmark, the forget-split questions
    of authors generated with another seed (disjoint from every author of ``benchmark``, so the evaluation's holdout
    authors stay untouched for PrivLeak)."""
    from .data import build_fictitious_authors

    if nonmember_path:
        return _read_jsonl(nonmember_path)
    if dataset != "fictitious-authors":
        raise ValueError(
            f"Calibrated stopping on dataset={dataset} needs non-member rows: pass nonmember_path (JSON lines of the "
            "forget set's kind that the model never trained on, e.g. TOFU's holdout split)."
        )
    config = dict(benchmark or {})
    return unseen_author_rows(build_fictitious_authors(**config), config)


def unseen_author_rows(bench: Any, config: Mapping[str, Any]) -> list[dict]:
    """Forget-split QA of the built-in benchmark generated with ``config`` and its seed + 1234, without the authors
    of ``bench``: questions of the forget set's kind about people no model trained on ``bench`` has seen."""
    from .data import build_fictitious_authors

    known = {r["author"] for split in ("forget", "retain", "holdout") for r in bench[split]}
    other = build_fictitious_authors(**{**config, "seed": int(config.get("seed", 0)) + 1234})
    return [r for r in other["forget"] if r["author"] not in known]


def training_data(
    dataset: str,
    *,
    benchmark: Mapping[str, Any] | None = None,
    tofu_split: str = "forget10",
    forget_path: str | None = None,
    retain_path: str | None = None,
    eval_retain_size: int = 200,
) -> TrainingData:
    """The rows of ``dataset`` (one of :data:`TRAINING_DATASETS`).

    Args:
        benchmark: keyword arguments of :func:`~hf_unlearn.build_fictitious_authors` (``dataset="fictitious-authors"``).
        tofu_split: TOFU forget split (``forget01``/``05``/``10``); the retain split is its complement.
        forget_path, retain_path: JSON-lines files in any data-layer schema (``dataset="files"``).
        eval_retain_size: retain items in the built-in benchmark's evaluation splits.
    """
    from .data import build_fictitious_authors, load_muse, load_tofu

    if dataset == "tofu":
        forget = load_tofu(f"{tofu_split}_perturbed")
        return TrainingData(forget, load_tofu(f"retain{100 - int(tofu_split[-2:])}"), None)
    if dataset == "fictitious-authors":
        from .evaluation import builtin_tofu_splits

        bench = build_fictitious_authors(**(benchmark or {}))
        splits = builtin_tofu_splits(bench, retain_size=min(eval_retain_size, len(bench["retain"])))
        return TrainingData(bench["forget"], bench["retain"], splits)
    if dataset in ("muse-news", "muse-books"):
        corpus = dataset.removeprefix("muse-")
        return TrainingData(load_muse(corpus, "raw", "forget"), load_muse(corpus, "raw", "retain1"), None)
    if dataset == "files":
        if not forget_path:
            raise ValueError("dataset=files needs forget_path (JSON lines; retain_path for a retain set).")
        return TrainingData(_read_jsonl(forget_path), _read_jsonl(retain_path) if retain_path else None, None)
    raise ValueError(f"Unknown dataset {dataset!r}; use {', '.join(TRAINING_DATASETS)}.")


def evaluation_splits(
    suite: str,
    source: str = "builtin",
    *,
    benchmark: Any = None,
    retain_size: int | None = 200,
    tofu_forget: str = "10",
    muse_corpus: str = "news",
) -> dict[str, list[dict]]:
    """The evaluation sets of ``suite`` (tofu, muse, mcq, robustness, reasoning) from the built-in ``benchmark`` or
    the Hub (``source="hub"``; the MCQ suite is then WMDP; reasoning data is not on the Hub)."""
    if suite not in EVAL_SUITES:
        raise ValueError(f"Unknown suite {suite!r}; use {', '.join(EVAL_SUITES)}.")
    if source == "hub":
        from .data import load_muse, load_tofu, load_wmdp

        if suite == "reasoning":
            raise ValueError(
                "R-TOFU's reasoning data is not on the Hub: load it from a clone of its repository with "
                "hf_unlearn.data.load_rtofu(split, data_dir=...) and call evaluate_reasoning, or use --dataset builtin."
            )

        if suite == "robustness":  # TOFU has no fact types or MCQ: no hallucination class, no MCQ condition
            return {
                "forget": load_tofu(f"forget{tofu_forget}_perturbed"),
                "holdout": load_tofu(f"holdout{tofu_forget}"),
                "retain": load_tofu("retain_perturbed"),
            }
        if suite == "tofu":
            f = tofu_forget
            return {
                "forget": load_tofu(f"forget{f}_perturbed"),
                "retain": load_tofu("retain_perturbed"),
                "real_authors": load_tofu("real_authors_perturbed"),
                "world_facts": load_tofu("world_facts_perturbed"),
                "holdout": load_tofu(f"holdout{f}"),
            }
        if suite == "muse":
            c = muse_corpus
            return {
                "verbmem": load_muse(c, "verbmem", "forget"),
                "knowmem_forget": load_muse(c, "knowmem", "forget_qa"),
                "knowmem_retain": load_muse(c, "knowmem", "retain_qa"),
                "knowmem_forget_icl": load_muse(c, "knowmem", "forget_qa_icl"),
                "knowmem_retain_icl": load_muse(c, "knowmem", "retain_qa_icl"),
                "privleak_forget": load_muse(c, "privleak", "forget"),
                "privleak_holdout": load_muse(c, "privleak", "holdout"),
            }
        return {f"wmdp_{s}": load_wmdp(s) for s in ("bio", "chem", "cyber")}
    if source != "builtin":
        raise ValueError(f"Unknown source {source!r}; use builtin or hub.")
    from .evaluation import builtin_muse_splits, builtin_tofu_splits

    if suite == "tofu":
        return builtin_tofu_splits(benchmark, retain_size=retain_size)
    if suite == "muse":
        return builtin_muse_splits(benchmark)
    if suite == "reasoning":
        tofu = builtin_tofu_splits(benchmark, retain_size=retain_size)
        return {"forget": tofu["forget"], "retain": tofu["retain"]}
    if suite == "robustness":
        tofu = builtin_tofu_splits(benchmark, retain_size=retain_size)
        return {
            "forget": tofu["forget"],
            "holdout": tofu["holdout"],
            "retain": tofu["retain"],
            "forget_mcq": benchmark["forget_mcq"],
            "holdout_mcq": benchmark["holdout_mcq"],
        }
    return {name: benchmark[name] for name in ("general_knowledge_mcq", "forget_mcq", "retain_mcq", "holdout_mcq")}
