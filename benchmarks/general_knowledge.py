"""How many built-in general-knowledge facts does the bundled model already rank first?

    .venv/bin/python benchmarks/general_knowledge.py    # writes benchmarks/results/general_knowledge.json

Each fact is scored as TOFU scores world facts: the true sentence against its three same-template wrong sentences,
by length-normalised probability, with the model's own chat template.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from _machine import machine_info

from hf_unlearn import build_fictitious_authors, load_model, rank_answers

OUT = Path(__file__).parent / "results" / "general_knowledge.json"


def main() -> None:
    model, tokenizer = load_model("bundled")
    rows = build_fictitious_authors(num_authors=10)["general_knowledge"]
    start = time.perf_counter()
    res = rank_answers(model, tokenizer, rows, progress="general knowledge")
    seconds = time.perf_counter() - start
    result = {
        "model": "SmolLM2-135M-Instruct (bundled, fp32)",
        "items": len(rows),
        "ranked_first": sum(res.correct_first),
        "accuracy": res.accuracy,
        "mean_true_prob": res.mean_true_prob,
        "seconds": round(seconds, 1),
        "machine": machine_info(),
        "misses": [r["question"] for r, ok in zip(rows, res.correct_first, strict=True) if not ok],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['ranked_first']}/{result['items']} ranked first ({100 * res.accuracy:.1f}%) in {seconds:.0f} s")


if __name__ == "__main__":
    main()
