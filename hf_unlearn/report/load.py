"""What a report shows, read from a run's output folder: the evaluation results, the trainer's log history, the
robustness and search results - whichever exist."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..evaluation.report import EvalResult

__all__ = ["RunRecord", "as_result", "load_run"]


@dataclass
class RunRecord:
    """A run's evidence: ``results`` (model name -> evaluation), ``history`` (the trainer's ``log_history``),
    ``state`` (the rest of ``trainer_state.json``: ``global_step``, ``max_steps``), ``robustness`` (model name ->
    robustness result), ``search`` (a settings search's record) and ``title``."""

    title: str
    results: dict[str, EvalResult] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    robustness: dict[str, EvalResult] = field(default_factory=dict)
    search: dict[str, Any] | None = None


def as_result(value: Any, suite: str = "metrics") -> EvalResult:
    """An :class:`EvalResult` from itself, a path to a saved one, or a mapping (a saved result's dict, or plain
    ``{"metrics": {...}}`` / ``{metric: value}``)."""
    if isinstance(value, EvalResult):
        return value
    if isinstance(value, str | os.PathLike):
        return EvalResult.load(value)
    if isinstance(value, Mapping):
        if "metrics" in value:
            return EvalResult.from_dict({**value, "metrics": dict(value["metrics"])}, suite)
        return EvalResult(suite, {k: v for k, v in value.items() if isinstance(v, int | float) or v is None})
    raise TypeError(f"Cannot read an evaluation result from {type(value).__name__}; pass an EvalResult or a path.")


def _results_file(path: Path) -> dict[str, EvalResult]:
    """``results.json`` of a run: one result (the recipe's), or several by model name (the demo's)."""
    data = json.loads(path.read_text())
    if isinstance(data, dict) and "suite" in data:
        return {"unlearned": as_result(data)}
    if isinstance(data, dict) and data and all(isinstance(v, dict) and "metrics" in v for v in data.values()):
        return {name: as_result(v) for name, v in data.items()}
    raise ValueError(f"{path} is not an hf_unlearn results file (no 'suite' and 'metrics').")


def load_run(folder: str | os.PathLike[str], name: str | None = None) -> RunRecord:
    """Read whatever ``folder`` holds: ``results.json``, ``trainer_state.json`` (or the last checkpoint's),
    ``robustness.json`` and ``search.json``. A folder with none of them is refused with what a run writes."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; pass the output_dir of a run (hf-unlearn train/demo).")
    record = RunRecord(title=name or folder.resolve().name)
    if (folder / "results.json").is_file():
        record.results = _results_file(folder / "results.json")
    state_file = folder / "trainer_state.json"
    if not state_file.is_file():
        checkpoints = sorted(folder.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name[11:]))
        state_file = checkpoints[-1] if checkpoints else state_file
    if state_file.is_file():
        state = json.loads(state_file.read_text())
        record.history = list(state.pop("log_history", []))
        record.state = state
    if (folder / "robustness.json").is_file():
        record.robustness = {"unlearned": EvalResult.load(folder / "robustness.json")}
    if (folder / "search.json").is_file():
        record.search = json.loads((folder / "search.json").read_text())
    if not (record.results or record.history or record.robustness or record.search):
        raise FileNotFoundError(
            f"{folder} has no results.json, trainer_state.json, robustness.json or search.json: nothing to report. "
            "Point at the output_dir of a finished run (the recipe and the demo write them)."
        )
    return record
