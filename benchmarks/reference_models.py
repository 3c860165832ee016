"""What the reference fine-tunes cost the base model: general knowledge kept, and fictitious facts learned.

    .venv/bin/python benchmarks/reference_models.py [--num-authors 40] [--variants plain self_replay]

For each variant of :func:`hf_unlearn.prepare_references` (``plain``: full fine-tuning on the fictitious authors;
``self_replay``: plus the base model's own answers to general prompts, ``general_replay=True``; ``lora_r32_lr*``:
LoRA r 32, alpha 64 on every linear layer at lr 1e-3 or 5e-4, merged) it builds (or loads from the cache) the
retain and target models and measures, by answer ranking (the true answer against its same-type wrong answers,
length-normalised probability, TOFU's ``Prob``):

- general knowledge: the built-in ``general_knowledge`` split, also for the base model;
- forget and retain facts (every 4th retain QA): what the target learned and the retain model never saw. The mean
  true-answer probability is the informative number here: ranking accuracy on them is ~1 for every fine-tuned model,
  since the wrong answers break the template the fine-tunes taught.

Writes ``benchmarks/results/reference_models.json``; fine-tune times are recorded when a variant is built by this run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _machine import machine_info

from hf_unlearn import build_fictitious_authors, load_model, rank_answers
from hf_unlearn.references import prepare_references

OUT = Path(__file__).parent / "results" / "reference_models.json"
VARIANTS = {
    "plain": {},
    "self_replay": {"general_replay": True},
    "lora_r32_lr1e-3": {"lora": {"r": 32, "lora_alpha": 64}, "finetune_lr": 1e-3},
    "lora_r32_lr5e-4": {"lora": {"r": 32, "lora_alpha": 64}, "finetune_lr": 5e-4},
}
RETAIN_STRIDE = 4  # every 4th retain QA (80 of 320 at 40 authors) keeps the measurement to a minute a model


def _measure(path: str, bench, label: str) -> dict:
    model, tokenizer = load_model(path)
    out = {}
    for split in ("general_knowledge", "forget", "retain"):
        rows = bench[split][::RETAIN_STRIDE] if split == "retain" else bench[split]
        res = rank_answers(model, tokenizer, rows, progress=f"{label}: {split}")
        out[split] = {"accuracy": res.accuracy, "mean_true_prob": res.mean_true_prob}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-authors", type=int, default=40)
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    a = p.parse_args()
    bench = build_fictitious_authors(num_authors=a.num_authors)
    result = json.loads(OUT.read_text()) if OUT.is_file() else {}
    result.update({"num_authors": a.num_authors, "machine": machine_info()})
    result["base"] = _measure("bundled", bench, "base")
    for name in a.variants:
        start = time.perf_counter()
        refs = prepare_references(bench, evaluate=False, **VARIANTS[name])
        built = time.perf_counter() - start
        row = {
            "options": VARIANTS[name],
            "retain": _measure(str(refs.retain_dir), bench, f"{name} retain"),
            "target": _measure(str(refs.target_dir), bench, f"{name} target"),
        }
        if built > 60:  # built now, not loaded from the cache
            row["build_seconds"] = round(built, 1)
        result.setdefault("variants", {})[name] = row
        OUT.write_text(json.dumps(result, indent=2) + "\n")
    base = result["base"]["general_knowledge"]["accuracy"]
    print(f"{'model':<22} {'general':>8} {'vs base':>8} {'P(forget)':>10} {'P(retain)':>10}")
    variants = result.get("variants", {})
    rows = [("base", result["base"])]
    rows += [(f"{name} {which}", row[which]) for name, row in variants.items() for which in ("retain", "target")]
    for label, m in rows:
        gk = m["general_knowledge"]["accuracy"]
        print(
            f"{label:<22} {gk:>8.3f} {gk - base:>+8.3f} {m['forget']['mean_true_prob']:>10.3f} "
            f"{m['retain']['mean_true_prob']:>10.3f}"
        )


if __name__ == "__main__":
    main()
