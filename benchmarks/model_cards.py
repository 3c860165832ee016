"""The model cards of the benchmark rows, generated from the committed results into the top-level ``model_cards/``.

    .venv/bin/python benchmarks/model_cards.py          # rewrite model_cards/ from benchmarks/results/quality/

Each row of the quality benchmark (every method and close-the-loop variant) gets the card hf_unlearn would publish
with it: the card template of the package (copied to ``model_cards/TEMPLATE.md`` so it can be read without
installing anything), the method, its settings, the forget/retain set names and sizes (never their content) and the
committed evaluation results, and the "Robustness" section where ``benchmarks/robustness.py`` ran the row.
``tests/test_model_cards.py`` regenerates them and fails when they drift from the
results. These models are not on the Hub (no network here); the repo ids are the names they would be pushed under.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "quality"
ROBUSTNESS = ROOT / "benchmarks" / "results" / "robustness"
CARDS = ROOT / "model_cards"
REFERENCES = ("retain", "target")
NAMESPACE = "hf-unlearn"

# Representation-level and weight-space methods have no trainer class: their names on the cards (their papers are in
# hf_unlearn.papers).
CALLBACK_NAMES = {
    "rmu": "RMU",
    "adaptive_rmu": "AdaptiveRMU",
    "attention_shifting": "AttentionShifting",
    "task_vector": "TaskVector",
    "sta": "STA",
}
FULL_MODELS = ("rmu", "adaptive_rmu", "task_vector", "sta")  # the benchmark trains LoRA adapters for the others
NO_RETAIN_SET = ("grad_ascent", "undial", "ceu", "task_vector", "sta")  # methods that never read the retain split


def _method_of(row: str) -> str:
    from hf_unlearn.registry import METHODS

    known = [*METHODS, *CALLBACK_NAMES]
    return max((m for m in known if row == m or row.startswith(f"{m}_")), key=len)


def _name_and_citation(method: str) -> tuple[str, str]:
    from hf_unlearn.papers import PAPERS
    from hf_unlearn.registry import METHODS

    if method in METHODS:
        trainer = METHODS[method].trainer_class
        return trainer._name, trainer._paper["citation"]
    return CALLBACK_NAMES[method], PAPERS[method]["citation"]


def render_cards() -> dict[str, str]:
    """Card text of every committed benchmark row (file name -> Markdown), plus the template copy."""
    import benchmarks.quality as quality
    from hf_unlearn import build_fictitious_authors
    from hf_unlearn.evaluation import EvalResult
    from hf_unlearn.hub.cards import TEMPLATE, build_model_card, card_for_push
    from hf_unlearn.models import BUNDLED_HUB_ID, cache_root
    from hf_unlearn.references import reference_lineage

    bench = build_fictitious_authors(**quality.BENCH)
    machine = json.loads((ROOT / "benchmarks" / "results" / "quality.json").read_text())["machine"]
    versions = {"TRL": machine["trl"], "Transformers": machine["transformers"], "Pytorch": machine["torch"]}
    target = reference_lineage(bench)["target"]  # every row unlearns the cached target fine-tune
    target_dir = str(cache_root() / target["steps"][-1]["cache"])
    cards = {"TEMPLATE.md": TEMPLATE.read_text()}
    for path in sorted(RESULTS.glob("*.json")):
        row = path.stem
        if row in REFERENCES:
            continue
        result = json.loads(path.read_text())
        method = _method_of(row)
        name, citation = _name_and_citation(method)
        adapter = method not in FULL_MODELS
        settings = {k: v for k, v in result["settings"].items() if not isinstance(v, dict | list)}
        if "steps" in result:
            settings["optimizer_steps"] = result["steps"]
        uses_retain = method not in NO_RETAIN_SET
        metrics = {k: v for k, v in result["metrics"].items() if v is not None}
        robust = ROBUSTNESS / path.name  # the robustness benchmark's row, when it was run
        robustness = None
        if robust.is_file():
            data = json.loads(robust.read_text())
            robustness = EvalResult("robustness", data["metrics"], data["details"])
        repo_id = f"{NAMESPACE}/smollm2-135m-fictitious-authors-{row.replace('_', '-')}"
        card = build_model_card(
            repo_id=repo_id,
            base_model=target_dir,
            method=name,
            is_adapter=adapter,
            forget_name="fictitious-authors forget split (4 authors)",
            forget_size=len(bench["forget"]),
            retain_name="fictitious-authors retain split (32 authors)" if uses_retain else "-",
            retain_size=len(bench["retain"]) if uses_retain else 0,
            hyperparameters=settings,
            metrics=metrics,
            citation=citation,
            robustness=robustness,
            versions=versions,  # those the benchmark ran with
            lineage={**target, "steps": [*target["steps"], {"kind": "unlearn", "method": name, "adapter": adapter}]},
        )
        # As `hf-unlearn push <row> <repo> --merge` would publish it: the target is a local fine-tune, so adapters go
        # up merged into it, as full weights descending from the bundled model's Hub id.
        cards[f"{row}.md"] = card_for_push(str(card), repo_id, BUNDLED_HUB_ID, is_adapter=False)
    return cards


def main() -> None:
    CARDS.mkdir(exist_ok=True)
    cards = render_cards()
    for old in CARDS.glob("*.md"):
        if old.name not in cards and old.name != "README.md":
            old.unlink()
    for name, text in cards.items():
        (CARDS / name).write_text(text if text.endswith("\n") else text + "\n")
    print(f"Wrote {len(cards)} files to {CARDS}.")


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(ROOT))
    main()
