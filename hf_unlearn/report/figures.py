"""The report's figures: matplotlib (the ``plots`` extra), rendered once as inline SVG for the page and, for the
figures that hold no per-item data, also as a PNG file beside it that a model card may show."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["Figure", "available", "history_figures", "mia_figure", "robustness_figure", "search_figure"]

# Log-history keys grouped into one panel each; the first matching prefix decides, the rest go to "method state".
_PANELS = (
    ("loss", "Loss terms", ("loss",)),
    ("logps", "Mean answer log-probability", ("logps/", "nll/")),
    ("calibration", "Calibration: distance to the non-member level", ("calibration/distance",)),
    ("learning_rate", "Learning rate", ("learning_rate",)),
    ("grad_norm", "Gradient norm", ("grad_norm",)),
)
_SKIP = {
    "epoch",
    "step",
    "total_flos",
    "train_loss",
    "train_runtime",
    "train_samples_per_second",
    "train_steps_per_second",
}


class Figure:
    """One rendered figure: ``svg`` (inline markup) and ``png`` (file name in the output folder, or ``None``)."""

    def __init__(self, title: str, svg: str, png: str | None = None) -> None:
        self.title, self.svg, self.png = title, svg, png


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "hf_unlearn", "font.size": 9, "axes.titlesize": 10})
    return plt


def _render(fig: Any, title: str, folder: Path | None, png: str | None) -> Figure:
    """SVG markup of ``fig`` (without the XML prologue, deterministic ids); ``png`` also writes that file."""
    plt = _pyplot()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    svg = buffer.getvalue()
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg[svg.index("<svg") :], flags=re.DOTALL)
    written = None
    if png is not None and folder is not None:
        fig.savefig(folder / png, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
        written = png
    plt.close(fig)
    return Figure(title, svg, written)


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    points = [(h["step"], h[key]) for h in history if key in h and isinstance(h[key], int | float)]
    return [p[0] for p in points], [float(p[1]) for p in points]


def history_figures(
    history: Sequence[Mapping[str, Any]],
    *,
    stop_step: int | None = None,
    max_steps: int | None = None,
    marks: Mapping[str, int] | None = None,
    folder: Path | None = None,
) -> list[Figure]:
    """One figure of panels (loss terms, log-probs, calibration distance, learning rate, gradient norm, the
    method's own logged state) over training steps, with a line where training stopped and at ``marks``
    (label -> step, e.g. the restored step). Written as ``report_training.png`` too (no per-item data)."""
    keys = sorted({k for h in history for k, v in h.items() if k not in _SKIP and isinstance(v, int | float)})
    panels: dict[str, tuple[str, list[str]]] = {}
    for key in keys:
        for name, title, prefixes in _PANELS:
            if any(key == p or key.startswith(p) for p in prefixes):
                panels.setdefault(name, (title, []))[1].append(key)
                break
        else:
            if key.startswith("calibration/"):
                continue  # the distance's parts (AUC, probabilities) are in the calibration table
            panels.setdefault("state", ("The method's own logged state", []))[1].append(key)
    if not panels:
        return []
    plt = _pyplot()
    n = len(panels)
    cols = 2 if n > 1 else 1
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 2.7 * rows), squeeze=False)
    for ax, (name, (title, series)) in zip(axes.flat, panels.items(), strict=False):
        for key in series:
            xs, ys = _series(history, key)
            ax.plot(xs, ys, marker="o" if len(xs) < 12 else None, markersize=3, label=key)
        if name == "calibration":
            ax.axhspan(-0.1, 0.1, color="tab:green", alpha=0.12, label="target band")
            ax.axhline(0, color="tab:green", lw=0.8)
        if stop_step is not None:
            label = f"stopped (step {stop_step}" + (f" of {max_steps})" if max_steps else ")")
            ax.axvline(stop_step, color="black", ls="--", lw=0.8, label=label)
        for label, step in (marks or {}).items():
            ax.axvline(step, color="tab:red", ls=":", lw=1.0, label=f"{label} (step {step})")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    return [_render(fig, "Training curves", folder, "report_training.png")]


def roc_curve(forget: Sequence[float], holdout: Sequence[float]) -> tuple[list[float], list[float], float]:
    """ROC of the attack "member when the score is at most t" (forget rows are the members; scores are loss-like,
    lower = more familiar): false- and true-positive rates over every threshold, and the area, which equals
    P(holdout score > forget score), ties counting half - the convention of the evaluation's ``mia_*_auc``."""
    f, h = sorted(float(x) for x in forget), sorted(float(x) for x in holdout)
    thresholds = sorted(set(f) | set(h))
    fpr, tpr = [0.0], [0.0]
    for t in thresholds:
        tpr.append(sum(x <= t for x in f) / len(f))
        fpr.append(sum(x <= t for x in h) / len(h))
    auc = sum((fpr[i] - fpr[i - 1]) * (tpr[i] + tpr[i - 1]) / 2 for i in range(1, len(fpr)))
    return fpr, tpr, auc


def mia_figure(
    scores: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]], folder: Path | None = None
) -> Figure | None:
    """Per attack (rows): the forget and holdout score distributions of each model, and their ROC curves.
    ``scores``: attack -> model -> (forget scores, holdout scores). Written as ``report_mia.png`` too: scores
    only, no item."""
    if not scores:
        return None
    plt = _pyplot()
    attacks = list(scores)
    fig, axes = plt.subplots(len(attacks), 2, figsize=(10, 2.6 * len(attacks)), squeeze=False)
    for (hist_ax, roc_ax), attack in zip(axes, attacks, strict=True):
        for i, (model, (forget, holdout)) in enumerate(scores[attack].items()):
            color = f"C{i}"
            hist_ax.hist(forget, bins=20, alpha=0.45, color=color, label=f"{model}: forget")
            hist_ax.hist(holdout, bins=20, histtype="step", lw=1.4, color=color, label=f"{model}: holdout")
            fpr, tpr, auc = roc_curve(forget, holdout)
            roc_ax.plot(fpr, tpr, color=color, label=f"{model} (AUC {auc:.2f})")
        hist_ax.set_title(f"{attack}: score distributions (lower = more familiar)")
        hist_ax.legend(fontsize=7)
        roc_ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8, label="never seen (AUC 0.5)")
        roc_ax.set_title(f"{attack}: ROC, forget = members")
        roc_ax.set_xlabel("false-positive rate (holdout called member)")
        roc_ax.set_ylabel("true-positive rate")
        roc_ax.legend(fontsize=7, loc="lower right")
        roc_ax.set_aspect("equal")
    fig.tight_layout()
    return _render(fig, "Membership inference", folder, "report_mia.png")


def robustness_figure(
    metrics: Mapping[str, Mapping[str, float]], keys: Sequence[str], folder: Path | None = None
) -> Figure | None:
    """Bars of ``keys`` (e.g. leak rate, forget ROUGE) under each attack condition, one group per condition, one
    colour per model. ``metrics``: model -> ``{"condition/metric": value}``. Written as ``report_robustness.png``."""
    conditions = sorted({k.split("/", 1)[0] for m in metrics.values() for k in m if "/" in k})
    conditions = [c for c in conditions if c != "worst"]
    keys = [k for k in keys if any(f"{c}/{k}" in m for m in metrics.values() for c in conditions)]
    if not conditions or not keys:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(len(keys), 1, figsize=(10, 2.5 * len(keys)), squeeze=False)
    width = 0.8 / max(len(metrics), 1)
    for ax, key in zip(axes[:, 0], keys, strict=True):
        for i, (model, values) in enumerate(metrics.items()):
            ys = [values.get(f"{c}/{key}") for c in conditions]
            xs = [j + i * width for j, y in enumerate(ys) if y is not None]
            ax.bar(xs, [y for y in ys if y is not None], width=width, label=model, color=f"C{i}")
        ax.set_xticks([j + width * (len(metrics) - 1) / 2 for j in range(len(conditions))])
        ax.set_xticklabels(conditions, rotation=20, ha="right", fontsize=7)
        ax.set_title(key)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _render(fig, "Robustness", folder, "report_robustness.png")


def search_figure(trials: Sequence[Mapping[str, Any]], folder: Path | None = None) -> Figure | None:
    """The settings search: each trial's objective J (complete trials; pruned ones marked at the bottom)."""
    if not trials:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 2.6))
    done = [(t["trial"], t["value"]) for t in trials if t.get("state") == "complete" and t.get("value") is not None]
    other = [t["trial"] for t in trials if t.get("state") != "complete"]
    if done:
        ax.plot([d[0] for d in done], [d[1] for d in done], "o", label="complete: J")
        best = min(done, key=lambda d: d[1])
        ax.plot([best[0]], [best[1]], "*", markersize=12, color="tab:red", label=f"chosen (trial {best[0]})")
    if other:
        ax.plot(other, [0] * len(other), "x", color="grey", label="pruned or failed")
    ax.set_xlabel("trial")
    ax.set_ylabel("J (lower is better)")
    ax.set_title("Settings search")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _render(fig, "Settings search", folder, "report_search.png")
