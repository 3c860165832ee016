"""Evaluation results: schema, JSON, readable tables, and the metadata that makes two results comparable.

Forget Quality and PrivLeak compare a model with a *retain* model's saved per-item results. They are only meaningful
when both were computed the same way: same metric definitions, same items, same prompt format (chat template and
system prompt) and the same dtype. Results carry that metadata; :func:`check_reference` refuses a mismatch and says
which field differs: silently mixing these is a common source of wrong Forget Quality numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DEFINITIONS",
    "EvalResult",
    "ReferenceMismatchError",
    "check_reference",
    "items_fingerprint",
    "plot_forget_vs_utility",
    "prompt_fingerprint",
]

# Bump when a metric definition changes: results with different definitions must not be compared.
DEFINITIONS = (
    "hf_unlearn-eval-1: tr=geometric(p_false)/p_true; fq=ks_2samp; mia_k=0.4; auc=P(holdout>forget); rouge=stemmer"
)


class ReferenceMismatchError(ValueError):
    """The reference (retain-model) results were computed differently from the ones being compared."""


def items_fingerprint(rows: Iterable[Mapping[str, Any]], keys: Sequence[str] = ("question", "answer")) -> str:
    """Hash of the ordered item contents (so results on different items, or in another order, never compare)."""
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps([row.get(k) for k in keys], ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def prompt_fingerprint(tokenizer: Any, system_prompt: str | None) -> str:
    """Hash of everything that shapes the prompt: chat template (or the fallback format) and system prompt."""
    template = getattr(tokenizer, "chat_template", None) or "<fallback: Question/Answer>"
    return hashlib.sha256(json.dumps([template, system_prompt]).encode()).hexdigest()[:16]


@dataclass
class EvalResult:
    """One evaluation: aggregate ``metrics``, structured ``details``, ``per_item`` values keyed by dataset index, and
    ``meta`` (definitions, item and prompt fingerprints, dtype, sizes, drops)."""

    suite: str
    metrics: dict[str, float | None] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    per_item: dict[str, dict[str, Any]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "metrics": self.metrics,
            "details": self.details,
            "per_item": {k: {str(i): v for i, v in d.items()} for k, d in self.per_item.items()},
            "meta": self.meta,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the full result (usable later as ``reference=``) as JSON; written atomically."""
        from ..atomic import atomic_write_text

        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EvalResult:
        try:
            data = json.loads(Path(path).read_text())
        except ValueError as err:
            raise ValueError(f"{path} is not valid JSON ({err}); pass a results.json written by hf_unlearn.") from None
        if not isinstance(data, dict) or "suite" not in data or "metrics" not in data:
            raise ValueError(f"{path} is not an hf_unlearn evaluation result (no 'suite' and 'metrics').")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any], suite: str = "metrics") -> EvalResult:
        """The inverse of :meth:`to_dict` (``suite`` names a dict without one); per-item keys become ints again."""
        per_item = {k: {int(i): v for i, v in d.items()} for k, d in data.get("per_item", {}).items()}
        return cls(data.get("suite", suite), data["metrics"], data.get("details", {}), per_item, data.get("meta", {}))

    def table(self, title: str | None = None) -> str:
        """A readable two-column table of the aggregate metrics (None = not computed, e.g. no reference)."""
        rows = [(k, "-" if v is None else f"{v:.4g}") for k, v in self.metrics.items()]
        width = max((len(k) for k, _ in rows), default=10)
        lines = [title or f"{self.suite} evaluation"]
        lines += [f"  {k:<{width}}  {v:>10}" for k, v in rows]
        return "\n".join(lines)


def check_reference(
    result_meta: Mapping[str, Any], reference: EvalResult, *, splits: Sequence[str], strict: bool = True
) -> list[str]:
    """Return the reasons ``reference`` is not comparable (empty if it is); raise them when ``strict``."""
    ref = reference.meta
    problems = []
    if ref.get("definitions") != result_meta.get("definitions"):
        problems.append(f"metric definitions differ ({ref.get('definitions')!r} vs {result_meta.get('definitions')!r})")
    if ref.get("prompt") != result_meta.get("prompt"):
        problems.append("the prompt format differs (chat template or system prompt)")
    if ref.get("dtype") != result_meta.get("dtype"):
        problems.append(f"dtype differs ({ref.get('dtype')} vs {result_meta.get('dtype')})")
    for split in splits:
        ours, theirs = result_meta.get("items", {}).get(split), ref.get("items", {}).get(split)
        if theirs is None:
            problems.append(f"the reference has no {split!r} items")
        elif ours != theirs:
            problems.append(f"the {split!r} items differ (another split, order or content)")
    if problems and strict:
        raise ReferenceMismatchError(
            "Refusing to compare with these reference logs: " + "; ".join(problems) + ". Evaluate the retain model "
            "with the same data, prompt format, dtype and hf_unlearn version, then pass its saved result."
        )
    return problems


def plot_forget_vs_utility(
    points: Mapping[str, tuple[float, float]],
    path: str | os.PathLike[str],
    *,
    x_label: str = "model utility",
    y_label: str = "forget ROUGE-L recall (lower = more forgotten)",
    log_y: bool = False,
) -> Path:
    """Scatter of models (name -> (utility, forget metric)): the trade-off every unlearning result is judged on.

    Up to 6 points are labelled in place; more get a legend beside the axes, so labels never overlap. ``log_y`` suits
    Forget Quality (a p-value spanning orders of magnitude).
    """
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "Plots need matplotlib: pip install 'hf-unlearn[plots]' (or pip install matplotlib)."
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    many = len(points) > 6
    fig, ax = plt.subplots(figsize=(8, 4.5) if many else (5, 4), dpi=120)
    markers = "osD^vP*Xhp<>"
    for i, (name, (x, y)) in enumerate(points.items()):
        ax.scatter([x], [y], s=40, marker=markers[i % len(markers)] if many else "o", label=name)
        if not many:
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=9)
    if log_y:
        ax.set_yscale("log")
    if many:
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
