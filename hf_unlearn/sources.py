"""Dataset names to splits, in one place: what the recipe trains on and what ``hf-unlearn eval`` scores, for the
built-in benchmark, the public Hub datasets (TOFU, MUSE, WMDP) and the user's own data (a Hub dataset id, a local
file or a folder, read with ``datasets.load_dataset``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TRAINING_DATASETS", "TrainingData", "carve_holdout", "evaluation_splits", "training_data"]

TRAINING_DATASETS = ("fictitious-authors", "tofu", "muse-news", "muse-books", "files")
# The Hub repositories behind the named datasets (a card's `datasets:`); built-in and local data have none.
HUB_DATASETS = {"tofu": "locuslab/TOFU", "muse-news": "muse-bench/MUSE-News", "muse-books": "muse-bench/MUSE-Books"}
EVAL_SUITES = ("tofu", "muse", "mcq", "robustness", "reasoning", "documents")


@dataclass
class TrainingData:
    """Forget and retain rows to unlearn with, and what evaluates the result: the TOFU-style splits of a built-in
    benchmark (``eval_sets``), or for the user's own data a ``holdout`` (``holdout_kind``: ``"unseen"`` text, or
    ``"carved"`` from the forget data). ``name`` is how the card and results name the data (a Hub id, or a local
    file's name without its path); ``hub_ids`` the Hub datasets it came from (the card's ``datasets:``)."""

    forget: list[dict]
    retain: list[dict] | None
    eval_sets: dict[str, list[dict]] | None
    holdout: list[dict] | None = None
    holdout_kind: str | None = None
    name: str = ""
    hub_ids: list[str] = field(default_factory=list)

    @property
    def user_data(self) -> bool:
        """Whether the rows are the user's own (evaluated with the ``documents`` suite)."""
        return self.name not in TRAINING_DATASETS


def _read_jsonl(path: str) -> list[dict]:
    from .data.loading import load_rows

    return load_rows(path)


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
    holdout_path: str | None = None,
    dataset_config: str | None = None,
    forget_split: str = "train",
    retain_split: str | None = None,
    holdout_split: str | None = None,
    holdout_from_forget: float = 0.0,
    seed: int = 0,
    eval_retain_size: int = 200,
) -> TrainingData:
    """The rows of ``dataset``: a built-in name (:data:`TRAINING_DATASETS`), or the user's own data - a Hub dataset
    id, a local file (``.jsonl``, ``.json``, ``.csv``, ``.parquet``, ``.arrow``, ``.txt``) or a folder, read with
    ``datasets.load_dataset`` (``dataset_config``, ``forget_split``, ``retain_split``, ``holdout_split``, as TRL's
    scripts name them) - or ``"files"``: ``forget_path`` (and ``retain_path``) alone. ``holdout_path`` adds a holdout
    to either form of user data.

    Args:
        benchmark: keyword arguments of :func:`~hf_unlearn.build_fictitious_authors` (``dataset="fictitious-authors"``).
        tofu_split: TOFU forget split (``forget01``/``05``/``10``); the retain split is its complement.
        holdout_from_forget: with user data and no holdout, hold out this share of the forget rows (seeded by
            ``seed``, at least one) from unlearning, as the evaluation's holdout. They are text the model saw, so the
            evaluation then measures how far unlearning moved the rest, not privacy leakage (``holdout_kind``).
        eval_retain_size: retain items in the built-in benchmark's evaluation splits.
    """
    from .data import build_fictitious_authors, load_muse, load_tofu
    from .data.loading import load_rows, source_name

    if dataset == "tofu":
        forget = load_tofu(f"{tofu_split}_perturbed")
        return TrainingData(
            forget, load_tofu(f"retain{100 - int(tofu_split[-2:])}"), None, name="tofu", hub_ids=[HUB_DATASETS["tofu"]]
        )
    if dataset == "fictitious-authors":
        from .evaluation import builtin_tofu_splits

        bench = build_fictitious_authors(**(benchmark or {}))
        splits = builtin_tofu_splits(bench, retain_size=min(eval_retain_size, len(bench["retain"])))
        return TrainingData(bench["forget"], bench["retain"], splits, name=dataset)
    if dataset in ("muse-news", "muse-books"):
        corpus = dataset.removeprefix("muse-")
        rows = load_muse(corpus, "raw", "forget"), load_muse(corpus, "raw", "retain1")
        return TrainingData(*rows, None, name=dataset, hub_ids=[HUB_DATASETS[dataset]])
    if dataset == "files":
        if not forget_path:
            raise ValueError("dataset=files needs forget_path (a file; retain_path for a retain set).")
        source, splits = None, {}
    else:
        source, splits = dataset, {"forget": forget_split, "retain": retain_split, "holdout": holdout_split}
    paths = {"forget": forget_path, "retain": retain_path, "holdout": holdout_path}
    rows: dict[str, list[dict] | None] = {}
    for part in ("forget", "retain", "holdout"):
        if paths[part]:
            rows[part] = load_rows(paths[part])
        elif source is not None and splits[part]:
            rows[part] = load_rows(source, config=dataset_config, split=splits[part])
        else:
            rows[part] = None
    if rows["forget"] is None:
        raise ValueError(f"{dataset}: no forget rows; give --forget_split or --forget_path.")
    holdout, kind = rows["holdout"], "unseen" if rows["holdout"] else None
    forget = rows["forget"]
    if holdout is None and holdout_from_forget:
        forget, holdout = carve_holdout(forget, holdout_from_forget, seed)
        kind = "carved"
    origin = source or forget_path
    name = source_name(origin) + (f" ({dataset_config})" if dataset_config else "")
    hub = [origin] if source is not None and not _is_local(origin) else []
    return TrainingData(forget, rows["retain"], None, holdout=holdout, holdout_kind=kind, name=name, hub_ids=hub)


def carve_holdout(rows: list[dict], fraction: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """``(kept, held_out)``: ``round(fraction * len(rows))`` rows (at least one, seeded) held back from ``rows``."""
    import random

    if not 0 < fraction < 1:
        raise ValueError(f"holdout_from_forget must be in (0, 1), got {fraction}.")
    if len(rows) < 2:
        raise ValueError("holdout_from_forget needs at least 2 forget rows: one to unlearn, one to hold out.")
    n = min(len(rows) - 1, max(1, round(fraction * len(rows))))
    chosen = set(random.Random(seed).sample(range(len(rows)), n))
    return [r for i, r in enumerate(rows) if i not in chosen], [r for i, r in enumerate(rows) if i in chosen]


def _is_local(source: str) -> bool:
    from pathlib import Path

    return Path(source).expanduser().exists()


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

        if suite == "documents":
            raise ValueError(
                "The documents suite evaluates your own data: pass --forget and --holdout (files, folders or Hub "
                "dataset ids), or use --dataset builtin for the built-in biographies."
            )
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
    if suite == "documents":  # the biographies as documents, the retain QA as retain rows
        muse = builtin_muse_splits(benchmark)
        tofu = builtin_tofu_splits(benchmark, retain_size=retain_size)
        return {"forget": muse["privleak_forget"], "holdout": muse["privleak_holdout"], "retain": tofu["retain"]}
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
