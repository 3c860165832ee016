"""One self-contained HTML page per run: what was forgotten, what was kept, and how sure we are.

The page inlines its figures as SVG and its styles, loads nothing from the network and runs no script, so it opens
from a disk, an e-mail or an air-gapped machine. It holds forget-set text (questions, answers, generations) for the
person who ran the unlearning: ``hf-unlearn push`` never uploads it (only allow-listed files go up), and it says so
at the top. The figures without per-item content are also written as PNG files beside it, for the model card.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..evaluation.answers import ANSWER_CLASSES, classify_answer, value_pools
from ..evaluation.metrics import auc
from . import figures as F
from .guide import guide
from .load import RunRecord, as_result, load_run

__all__ = ["write_report"]

_ORDER = ("base", "target", "retain", "unlearned")
_ROBUSTNESS_KEYS = ("leak_rate", "forget_rouge", "forget_prob", "mia_min_k_auc")
_TOP_METRICS = ("forget_quality", "model_utility", "privleak", "forget_rouge", "forget_prob", "forget_truth_ratio")


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e4):
        return f"{value:.2e}"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _ordered(names: Sequence[str]) -> list[str]:
    known = [n for n in _ORDER if n in names]
    return known + [n for n in names if n not in known]


def _headline(results: Mapping[str, Any]) -> dict[str, Any]:
    """Rows of the headline table: every numeric metric of any model, the top ones first."""
    names = _ordered(list(results))
    keys: list[str] = []
    for name in names:
        for key, value in results[name].metrics.items():
            if key not in keys and (value is None or isinstance(value, int | float)):
                keys.append(key)
    keys = [k for k in _TOP_METRICS if k in keys] + [k for k in keys if k not in _TOP_METRICS]
    rows = []
    for key in keys:
        g = guide(key)
        rows.append(
            {
                "key": key,
                "arrow": g.arrow,
                "level": g.level,
                "note": g.note,
                "values": [_fmt(results[n].metrics.get(key)) for n in names],
            }
        )
    return {"names": names, "rows": rows}


def _mia_scores(results: Mapping[str, Any]) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """attack -> model -> (forget scores, holdout scores), from each result's per-item MIA scores."""
    out: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for name in _ordered(list(results)):
        per = results[name].per_item
        for key in per:
            for members, nonmembers in (("_forget", "_holdout"), ("_members", "_nonmembers")):
                if key.startswith("mia_") and key.endswith(members):
                    attack = key[4 : -len(members)]
                    other = f"mia_{attack}{nonmembers}"
                    if other in per and per[key] and per[other]:
                        out.setdefault(attack, {})[name] = (list(per[key].values()), list(per[other].values()))
    return out


def _items(results: Mapping[str, Any], rows: Sequence[Mapping[str, Any]] | None) -> dict[str, Any] | None:
    """The per-item forget table: answer probability before (target or base) and after, the retain model's where
    known, the generated answer and, with the rows, the question, the reference answer and the answer's class."""
    after = results.get("unlearned")
    if after is None:
        return None
    per = after.per_item
    probs, gens = per.get("forget_prob", {}), per.get("forget_generation", {})
    index = sorted(set(probs) | set(gens))
    if not index:
        return None
    before_name = next((n for n in ("target", "base") if n in results and results[n].per_item.get("forget_prob")), None)
    before = results[before_name].per_item["forget_prob"] if before_name else {}
    retain = results["retain"].per_item.get("forget_prob", {}) if "retain" in results else {}
    usable = rows is not None and len(rows) > index[-1]
    pools = value_pools(rows) if usable else {}
    items, counts = [], dict.fromkeys(ANSWER_CLASSES, 0)
    for i in index:
        row = rows[i] if usable else {}
        generation = gens.get(i)
        kind = classify_answer(generation, row, pools) if usable and generation is not None else None
        if kind:
            counts[kind] += 1
        items.append(
            {
                "index": i,
                "question": row.get("question", ""),
                "answer": row.get("answer", ""),
                "before": _fmt(before.get(i)),
                "after": _fmt(probs.get(i)),
                "retain": _fmt(retain.get(i)),
                "generation": generation or "",
                "kind": kind or "",
            }
        )
    return {
        "rows": items,
        "before_name": before_name,
        "has_retain": bool(retain),
        "has_rows": usable,
        "counts": counts if usable else None,
        "rows_missing": rows is not None and not usable,
    }


def _calibration(history: Sequence[Mapping[str, Any]], summary: Mapping[str, Any] | None) -> dict[str, Any] | None:
    checks = [
        {k.removeprefix("calibration/"): v for k, v in h.items() if k.startswith("calibration/")} | {"step": h["step"]}
        for h in history
        if any(k.startswith("calibration/") for k in h)
    ]
    if not checks and not summary:
        return None
    columns = sorted({k for c in checks for k in c if k != "step"})
    return {
        "summary": {k: v for k, v in (summary or {}).items() if k != "history" and not isinstance(v, list | dict)},
        "columns": columns,
        "checks": [{"step": c["step"], "values": [_fmt(c.get(k)) for k in columns]} for c in checks],
    }


def _robustness(robustness: Mapping[str, Any]) -> dict[str, Any] | None:
    if not robustness:
        return None
    metrics = {name: r.metrics for name, r in robustness.items()}
    conditions = sorted({k.split("/", 1)[0] for m in metrics.values() for k in m if "/" in k})
    keys = [k for k in _ROBUSTNESS_KEYS if any(f"{c}/{k}" in m for m in metrics.values() for c in conditions)]
    table = []
    for condition in conditions:
        for name, m in metrics.items():
            table.append(
                {"condition": condition, "model": name, "values": [_fmt(m.get(f"{condition}/{k}")) for k in keys]}
            )
    return {"keys": keys, "rows": table, "metrics": metrics}


def _search(search: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not search:
        return None
    trials = search.get("trials", [])
    names = sorted({k for t in trials for k in t.get("params", {})})
    rows = [
        {
            "trial": t.get("trial"),
            "state": t.get("state", ""),
            "value": _fmt(t.get("value")),
            "steps": t.get("steps", ""),
            "params": [_fmt(t.get("params", {}).get(k)) for k in names],
            "best": t.get("trial") == search.get("best_trial"),
        }
        for t in trials
    ]
    summary = search.get("summary", {})
    return {"names": names, "rows": rows, "rule": summary.get("rule", search.get("rule", "")), "trials": trials}


def write_report(
    output_dir: str | os.PathLike[str],
    *,
    results: Mapping[str, Any] | None = None,
    log_history: Sequence[Mapping[str, Any]] | None = None,
    forget_rows: Sequence[Mapping[str, Any]] | None = None,
    robustness: Any = None,
    search: Any = None,
    calibration: Mapping[str, Any] | None = None,
    compare: Sequence[str | os.PathLike[str]] = (),
    settings: Mapping[str, Any] | None = None,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Path:
    """Write ``report.html`` (and the PNG files of its figures without per-item content) into ``output_dir``.

    Whatever is not given is read from ``output_dir`` (``results.json``, ``trainer_state.json``,
    ``robustness.json``, ``search.json``), so ``write_report("outputs/run")`` reports a finished recipe run.

    Args:
        output_dir: the run's folder; the page and the PNG files are written there.
        results: model name -> evaluation (an ``EvalResult``, its path or its dict); ``"unlearned"`` is the run,
            ``"target"``/``"base"`` give the "before" column, ``"retain"`` the level to reach.
        log_history: the trainer's ``state.log_history`` (loss terms, log-probs, calibration, learning rate).
        forget_rows: the evaluated forget rows, in the evaluation's order: the table shows their questions and
            reference answers and classes each answer (leak, refusal, hallucination, degenerate, other).
        robustness: a robustness result (or its path), or model name -> result.
        search: a settings search (its ``SearchResult`` or the dict it saves).
        calibration: :class:`~hf_unlearn.callbacks.ForgetTargetCallback`'s ``summary`` (the stop and restore).
        compare: other runs' folders: their evaluation and robustness results become further columns, named by
            the folder.
        settings: name -> value lines for the page's header (method, model, data ...).
        title: the page's title (default: the folder's name).
        path: where the page goes (default ``output_dir/report.html``).
    """
    folder = Path(output_dir)
    if all(x is None for x in (results, log_history, robustness, search)):
        record = load_run(folder)  # refuses a folder with nothing to report, saying what a run writes
    elif (folder / "results.json").is_file() or (folder / "trainer_state.json").is_file():
        record = load_run(folder)
    else:
        record = RunRecord(title=folder.resolve().name)
    if results is not None:
        record.results = {name: as_result(value) for name, value in results.items()}
    if log_history is not None:
        record.history = [dict(h) for h in log_history]
    if robustness is not None:
        if isinstance(robustness, Mapping) and robustness and "metrics" not in robustness:
            record.robustness = {name: as_result(value) for name, value in robustness.items()}
        else:
            record.robustness = {"unlearned": as_result(robustness)}
    if search is not None:
        record.search = search.to_dict() if hasattr(search, "to_dict") else dict(search)
    for other in compare:
        run = load_run(other)
        taken = set(record.results) | set(record.robustness)
        name = run.title if run.title not in taken else str(other)
        for key, value in run.results.items():
            record.results.setdefault(name if key == "unlearned" else f"{name}/{key}", value)
        for key, value in run.robustness.items():
            record.robustness.setdefault(name if key == "unlearned" else f"{name}/{key}", value)
    if not (record.results or record.history or record.robustness or record.search):
        raise ValueError(f"Nothing to report for {folder}: no results, training log, robustness or search.")

    folder.mkdir(parents=True, exist_ok=True)
    plots = F.available()
    state = record.state
    stop = state.get("global_step") or (record.history[-1].get("step") if record.history else None)
    marks = {}
    if calibration and calibration.get("restored_step") is not None:
        marks["best weights restored"] = int(calibration["restored_step"])
    mia, robust, searched = _mia_scores(record.results), _robustness(record.robustness), _search(record.search)
    figures: dict[str, Any] = {}
    if plots:
        if record.history:
            figures["curves"] = F.history_figures(
                record.history, stop_step=stop, max_steps=state.get("max_steps"), marks=marks, folder=folder
            )
        figures["mia"] = F.mia_figure(mia, folder)
        figures["robustness"] = F.robustness_figure(robust["metrics"], _ROBUSTNESS_KEYS, folder) if robust else None
        figures["search"] = F.search_figure(searched["trials"], folder) if searched else None
    context = {
        "title": title or record.title,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "settings": {k: _fmt(v) for k, v in (settings or {}).items()},
        "headline": _headline(record.results) if record.results else None,
        "history": bool(record.history),
        "stop": stop,
        "max_steps": state.get("max_steps"),
        "calibration": _calibration(record.history, calibration),
        "mia": {a: {m: _fmt(auc(f, h)) for m, (f, h) in models.items()} for a, models in mia.items()},
        "items": _items(record.results, forget_rows),
        "robustness": robust,
        "search": searched,
        "figures": figures,
        "plots": plots,
    }
    from .template import render

    target = Path(path) if path is not None else folder / "report.html"
    return atomic_write_text(target, render(context))
