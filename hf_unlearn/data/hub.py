"""Loaders that map public unlearning benchmarks onto hf_unlearn's schemas.

* ``locuslab/TOFU`` - QA (``forget01/05/10``, ``retain90/95/99``, ``*_perturbed``, ``real_authors``, ``world_facts``,
  ``holdout01/05/10``, ``full``);
* ``muse-bench/MUSE-News`` and ``muse-bench/MUSE-Books`` - ``verbmem`` (completion: prompt -> gt), ``knowmem`` (QA),
  ``privleak``/``raw``/``scal``/``sust`` (completion with an empty prompt);
* ``cais/wmdp`` - MCQ (``wmdp-bio``, ``wmdp-chem``, ``wmdp-cyber``);
* R-TOFU (reasoning traces; from a clone of its code repository, where its data is published) - QA with ``cot``.

Each loader reads the Hub (``revision=`` pins a commit) or, with ``data_dir=``, a local copy in the repository's file
layout (``<config>.json`` / ``<config>/<split>.parquet`` ...), which is also how the mapping is tested offline.
Offline without a cached copy the loaders fail at once and point to the built-in ``fictitious-authors`` benchmark.

Contents of some of these datasets changed over time (WMDP's question counts shrank; TOFU gained ``holdout*``). The
WMDP loader recognises the two known releases by their row counts and warns on anything else, so results say which
release they were computed on; pass ``revision=`` to pin a commit.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "MUSE_CONFIGS",
    "TOFU_CONFIGS",
    "WMDP_CONFIGS",
    "HubDatasetUnavailableError",
    "load_muse",
    "load_rtofu",
    "load_tofu",
    "load_wmdp",
    "map_muse_row",
    "map_rtofu_row",
    "map_tofu_row",
    "map_wmdp_row",
]

logger = logging.getLogger(__name__)

TOFU_REPO = "locuslab/TOFU"
MUSE_REPOS = {"news": "muse-bench/MUSE-News", "books": "muse-bench/MUSE-Books"}
WMDP_REPO = "cais/wmdp"

TOFU_CONFIGS = (
    "full",
    *(f"forget{p}" for p in ("01", "05", "10")),
    *(f"forget{p}_perturbed" for p in ("01", "05", "10")),
    *(f"retain{p}" for p in ("90", "95", "99")),
    "retain_perturbed",
    "real_authors",
    "real_authors_perturbed",
    "world_facts",
    "world_facts_perturbed",
    *(f"holdout{p}" for p in ("01", "05", "10")),
)
MUSE_CONFIGS: dict[str, tuple[str, ...]] = {
    "raw": ("forget", "retain1", "retain2", "holdout"),
    "verbmem": ("forget",),
    "knowmem": ("forget_qa", "retain_qa", "forget_qa_icl", "retain_qa_icl"),
    "privleak": ("forget", "retain", "holdout"),
    "scal": ("forget_1", "forget_2", "forget_3", "forget_4"),
    "sust": ("forget_1", "forget_2", "forget_3", "forget_4"),
}
WMDP_CONFIGS = ("wmdp-bio", "wmdp-chem", "wmdp-cyber")
# Row counts of the known WMDP releases; counts changed between them, so results must say which one they used.
WMDP_RELEASES = {
    "current": {"wmdp-bio": 1273, "wmdp-chem": 408, "wmdp-cyber": 1987},
    "initial": {"wmdp-bio": 1520, "wmdp-chem": 412, "wmdp-cyber": 2225},
}

_OFFLINE_HINT = (
    "The Hugging Face Hub is not reachable (or HF_HUB_OFFLINE=1) and no cached copy was found. Use the built-in "
    "offline benchmark fictitious-authors instead: hf_unlearn.build_fictitious_authors() (CLI: `hf-unlearn data "
    "export DIR`), or pass "
    "data_dir= pointing to a local copy of the dataset files."
)


class HubDatasetUnavailableError(RuntimeError):
    """The dataset could not be read from the Hub or the local cache."""


# --------------------------------------------------------------------------------------------------------- mapping


def map_tofu_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """TOFU row -> QA schema. Keeps the TOFU fields hf_unlearn evaluates; drops ``option1..4`` duplicates."""
    if "question" not in row or "answer" not in row:
        raise ValueError(f"Not a TOFU QA row (columns {sorted(row)}); expected at least question and answer.")
    out: dict[str, Any] = {"question": row["question"], "answer": row["answer"]}
    for key in ("paraphrased_question", "paraphrased_answer"):
        if row.get(key) is not None:
            out[key] = row[key]
    if row.get("perturbed_answer") is not None:
        pert = row["perturbed_answer"]
        out["perturbed_answer"] = [pert] if isinstance(pert, str) else list(pert)
    return out


def map_muse_row(row: Mapping[str, Any], config: str) -> dict[str, Any]:
    """MUSE row -> completion schema (``verbmem``: prompt -> gt; corpora: empty prompt) or QA (``knowmem``)."""
    if config == "knowmem":
        return {"question": row["question"], "answer": row["answer"]}
    if config == "verbmem":
        return {"prompt": row["prompt"], "text": row["gt"]}
    if config in MUSE_CONFIGS:
        return {"prompt": "", "text": row["text"]}
    raise ValueError(f"Unknown MUSE config {config!r}; choose from {', '.join(MUSE_CONFIGS)}.")


def map_wmdp_row(row: Mapping[str, Any], subject: str) -> dict[str, Any]:
    """WMDP row -> MCQ schema (``question``, ``choices``, ``answer`` index) plus ``subject``."""
    choices = list(row["choices"])
    answer = int(row["answer"])
    if not 0 <= answer < len(choices):
        raise ValueError(f"WMDP row has answer index {answer} but {len(choices)} choices.")
    return {"question": row["question"], "choices": choices, "answer": answer, "subject": subject}


# --------------------------------------------------------------------------------------------------------- reading


def _read_local(data_dir: str | os.PathLike[str], stem: str):
    """Read ``<data_dir>/<stem>.{parquet,jsonl,json}`` or sharded ``<stem>-*.parquet`` as a Dataset."""
    from datasets import load_dataset

    base = Path(data_dir)
    for ext, builder in ((".parquet", "parquet"), (".jsonl", "json"), (".json", "json")):
        path = base / f"{stem}{ext}"
        if path.is_file():
            return load_dataset(builder, data_files=str(path), split="train")
    shards = sorted(base.glob(f"{stem}-*.parquet"))
    if shards:
        return load_dataset("parquet", data_files=[str(s) for s in shards], split="train")
    raise FileNotFoundError(
        f"No file for {stem!r} in {base} (looked for {stem}.parquet, {stem}.jsonl, {stem}.json, {stem}-*.parquet)."
    )


def _read_hub(repo: str, config: str, split: str, revision: str | None):
    from datasets import load_dataset

    try:
        return load_dataset(repo, config, split=split, revision=revision)
    except Exception as err:  # datasets raises many types for "no network / not cached"
        offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
        text = f"{type(err).__name__}: {err}"
        network = offline or any(
            s in text for s in ("Offline", "offline", "Connection", "resolve", "Max retries", "Couldn't reach")
        )
        if network:
            raise HubDatasetUnavailableError(f"Cannot load {repo} ({config}/{split}). {_OFFLINE_HINT}") from err
        raise


def _mapped(dataset: Iterable[Mapping[str, Any]], fn: Callable[[Mapping[str, Any]], dict[str, Any]]):
    from datasets import Dataset

    return Dataset.from_list([fn(row) for row in dataset])


def load_tofu(
    config: str = "forget10_perturbed",
    *,
    revision: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
):
    """Load one TOFU config as a QA ``datasets.Dataset``.

    Args:
        config: e.g. ``forget10``, ``forget10_perturbed``, ``retain90``, ``retain_perturbed``,
            ``real_authors_perturbed``, ``world_facts_perturbed``, ``holdout10``.
        revision: Hub commit to pin (TOFU gained ``holdout*`` configs after release).
        data_dir: local folder with ``<config>.json`` (JSON lines, the repository's layout) or ``.parquet`` files.
    """
    if config not in TOFU_CONFIGS:
        raise ValueError(f"Unknown TOFU config {config!r}; choose from {', '.join(TOFU_CONFIGS)}.")
    raw = _read_local(data_dir, config) if data_dir else _read_hub(TOFU_REPO, config, "train", revision)
    return _mapped(raw, map_tofu_row)


def load_muse(
    corpus: str = "news",
    config: str = "verbmem",
    split: str = "forget",
    *,
    revision: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
):
    """Load one MUSE split (``corpus`` = ``news`` or ``books``) mapped onto completion or QA rows.

    ``data_dir`` is a local folder with ``<config>/<split>.parquet`` (or ``.jsonl``/``.json``/sharded parquet).
    """
    corpus = corpus.lower().removeprefix("muse-")
    if corpus not in MUSE_REPOS:
        raise ValueError(f"Unknown MUSE corpus {corpus!r}; choose 'news' or 'books'.")
    if config not in MUSE_CONFIGS:
        raise ValueError(f"Unknown MUSE config {config!r}; choose from {', '.join(MUSE_CONFIGS)}.")
    if split not in MUSE_CONFIGS[config]:
        raise ValueError(f"MUSE {config} has splits {', '.join(MUSE_CONFIGS[config])}, not {split!r}.")
    if corpus == "books" and config in ("scal", "sust"):
        raise ValueError("MUSE-Books has no scal/sust configs; the scalability and sustainability sets are News only.")
    if data_dir:
        raw = _read_local(Path(data_dir) / config, split)
    else:
        raw = _read_hub(MUSE_REPOS[corpus], config, split, revision)
    return _mapped(raw, lambda row: map_muse_row(row, config))


def load_wmdp(
    subset: str = "wmdp-bio",
    *,
    revision: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
):
    """Load a WMDP subset (``wmdp-bio``, ``wmdp-chem``, ``wmdp-cyber``; ``bio`` etc. accepted) as MCQ rows.

    The row count is checked against the known releases; an unknown count warns, because WMDP accuracies are only
    comparable on the same release. ``data_dir`` holds ``<subset>/test.parquet`` (or ``test-*.parquet`` shards).
    """
    subset = subset if subset.startswith("wmdp-") else f"wmdp-{subset}"
    if subset not in WMDP_CONFIGS:
        raise ValueError(f"Unknown WMDP subset {subset!r}; choose from {', '.join(WMDP_CONFIGS)}.")
    raw = _read_local(Path(data_dir) / subset, "test") if data_dir else _read_hub(WMDP_REPO, subset, "test", revision)
    ds = _mapped(raw, lambda row: map_wmdp_row(row, subset.removeprefix("wmdp-")))
    release = next((name for name, sizes in WMDP_RELEASES.items() if sizes[subset] == len(ds)), None)
    if release is None:
        warnings.warn(
            f"{subset} has {len(ds)} rows, matching no known WMDP release "
            f"({', '.join(f'{n}: {s[subset]}' for n, s in WMDP_RELEASES.items())}); report the revision you used.",
            UserWarning,
            stacklevel=2,
        )
    else:
        logger.info("Loaded %s: %d rows (WMDP %s release).", subset, len(ds), release)
    return ds


RTOFU_REPO = "https://github.com/AI-ISL/R-TOFU"  # its data is published in the code repository, not on the Hub
_IDKCOT_FILES = ("idkcot.jsonl", "forget_idkcot.jsonl")


def map_rtofu_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """R-TOFU row -> QA schema with its reasoning trace (``cot``) and ``task_id`` (sequential-unlearning tasks)."""
    if "question" not in row or "answer" not in row or not row.get("cot"):
        raise ValueError(f"Not an R-TOFU row (columns {sorted(row)}); expected question, answer and a non-empty cot.")
    out: dict[str, Any] = {"question": row["question"], "answer": row["answer"], "cot": row["cot"]}
    if row.get("task_id") is not None:
        out["task_id"] = str(row["task_id"])
    return out


def load_rtofu(split: str = "forget10", *, data_dir: str | os.PathLike[str] | None = None):
    """Load one R-TOFU split ("R-TOFU: Unlearning in Large Reasoning Models", arXiv:2505.15214) as QA rows with
    ``cot``.

    R-TOFU publishes its data in its code repository (``data/tofu/<split>.json``, JSON lines), not on the Hub:
    ``data_dir`` is a clone of that repository (or its ``data/tofu`` folder). The Reasoned-IDK traces
    (``data/idkcot.jsonl``, one JSON string per line) are aligned with the forget rows by index, so they are attached
    as ``idk_cot`` only when a traces file has exactly as many lines as the split has rows.
    """
    import json

    if data_dir is None:
        raise ValueError(
            f"R-TOFU's data is published in its code repository, not on the Hub: clone {RTOFU_REPO} and pass "
            "data_dir=<the clone>. Offline, the built-in benchmark has traces too: build_fictitious_authors() rows "
            "carry cot and idk_cot."
        )
    root = Path(data_dir)
    folder = root / "data" / "tofu" if (root / "data" / "tofu").is_dir() else root
    rows = [map_rtofu_row(row) for row in _read_local(folder, split)]
    for candidate in [folder / name for name in _IDKCOT_FILES] + [folder.parent / name for name in _IDKCOT_FILES]:
        if not candidate.is_file():
            continue
        lines = [line for line in candidate.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(lines) == len(rows):
            for row, line in zip(rows, lines, strict=True):
                trace = json.loads(line)
                row["idk_cot"] = trace if isinstance(trace, str) else str(trace.get("idk_cot") or trace.get("cot"))
            break
    from datasets import Dataset

    return Dataset.from_list(rows)
