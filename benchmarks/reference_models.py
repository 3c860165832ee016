"""What the reference fine-tunes cost the base model: general knowledge kept, and fictitious facts learned.

    .venv/bin/python benchmarks/reference_models.py [--num-authors 40] [--variants plain self_replay]

For each variant of :func:`hf_unlearn.prepare_references` (``plain``: full fine-tuning on the fictitious authors;
``self_replay``: plus the base model's own answers to general prompts, ``general_replay="self"``; ``fact_replay``:
plus curated true facts, ``general_replay="facts"``; ``lora_r32_lr*``: LoRA r 32, alpha 64 on every linear layer at
lr 1e-3 or 5e-4, merged, the last also with fact replay) it builds (or loads from the cache) the
retain and target models and measures, by answer ranking (the true answer against its same-type wrong answers,
length-normalised probability, TOFU's ``Prob``):

- general knowledge: the built-in ``general_knowledge`` split, also for the base model;
- forget and retain facts (every 4th retain QA): what the target learned and the retain model never saw. The mean
  true-answer probability is the informative number here: ranking accuracy on them is ~1 for every fine-tuned model,
  since the wrong answers break the template the fine-tunes taught.

For general knowledge it also lists the facts each fine-tuned model lost against the base model, and counts those
whose winning wrong value is a value the fine-tuning data states (the authors' birthplaces are real cities, some of
them the evaluation's wrong capitals).

Writes ``benchmarks/results/reference_models.json``; fine-tune times are recorded when a variant is built by this run.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path

from _machine import machine_info

from hf_unlearn import build_fictitious_authors, load_model, rank_answers
from hf_unlearn.references import prepare_references

OUT = Path(__file__).parent / "results" / "reference_models.json"
VARIANTS = {
    "plain": {},
    "self_replay": {"general_replay": "self"},
    "fact_replay": {"general_replay": "facts"},
    "lora_r32_lr1e-3_fact_replay": {
        "lora": {"r": 32, "lora_alpha": 64},
        "finetune_lr": 1e-3,
        "general_replay": "facts",
    },
    "lora_r32_lr1e-3": {"lora": {"r": 32, "lora_alpha": 64}, "finetune_lr": 1e-3},
    "lora_r32_lr5e-4": {"lora": {"r": 32, "lora_alpha": 64}, "finetune_lr": 5e-4},
}
RETAIN_STRIDE = 4  # every 4th retain QA (80 of 320 at 40 authors) keeps the measurement to a minute a model


def _winner(row: dict, probs: list[float]) -> str:
    """The value of the option ranked first: the fact itself, or the wrong value that beat it."""
    start, end = row["fact_span"]
    best = max(range(len(probs)), key=probs.__getitem__)
    if best == 0:
        return row["fact"]
    wrong = row["perturbed_answer"][best - 1]  # the same sentence as the answer with another value in the span
    return wrong[start : len(wrong) - (len(row["answer"]) - end)]


def _measure(path: str, bench, label: str) -> dict:
    model, tokenizer = load_model(path)
    out = {}
    for split in ("general_knowledge", "forget", "retain"):
        rows = bench[split][::RETAIN_STRIDE] if split == "retain" else bench[split]
        res = rank_answers(model, tokenizer, rows, progress=f"{label}: {split}")
        out[split] = {"accuracy": res.accuracy, "mean_true_prob": res.mean_true_prob}
        if split == "general_knowledge":  # which value each fact's ranking put first, to see what a fine-tune broke
            out[split]["ranked_first"] = [_winner(r, p) for r, p in zip(rows, res.option_probs, strict=True)]
            # how far the true answer leads the best wrong one (normalised probability): a thin lead tips easily
            out[split]["margin"] = [round(p[0] - max(p[1:]), 4) for p in res.option_probs]
    return out


def _losses(model: dict, base: dict, bench) -> dict:
    """General facts the base model ranked right and ``model`` ranks wrong; how many of them lost to a value the
    fine-tuning data states (a city an author was born in, a job, a year ...), which the fine-tune made likelier;
    and the base model's median lead on the lost facts against all the facts it ranked right."""
    taught = " ".join(r["answer"] for split in ("retain", "forget") for r in bench[split]).lower()
    facts = [r["fact"] for r in bench["general_knowledge"]]
    lost = [
        i
        for i, (fact, before, winner) in enumerate(zip(facts, base["ranked_first"], model["ranked_first"], strict=True))
        if before == fact and winner != fact
    ]
    pulled = [i for i in lost if re.search(rf"\b{re.escape(model['ranked_first'][i].lower())}\b", taught)]
    out = {
        "lost": len(lost),
        "lost_to_a_trained_value": len(pulled),
        "examples": [(facts[i], model["ranked_first"][i]) for i in lost[:8]],
    }
    if "margin" in base:
        known = [m for m in base["margin"] if m > 0]
        lost_margins = [base["margin"][i] for i in lost]
        out["base_margin_median"] = {
            "lost": statistics.median(lost_margins) if lost_margins else None,
            "all_known": statistics.median(known),
        }
    return out


def _save(result: dict, bench) -> None:
    """Write the results, with every variant's losses against the base model as measured by this run."""
    for row in result.get("variants", {}).values():
        for which in ("retain", "target"):
            if "ranked_first" in row[which]["general_knowledge"]:
                row[which]["general_knowledge_losses"] = _losses(
                    row[which]["general_knowledge"], result["base"]["general_knowledge"], bench
                )
    OUT.write_text(json.dumps(result, indent=2) + "\n")


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
        _save(result, bench)  # after each variant, so an interrupted run keeps what it measured
    if not a.variants:  # the base alone was measured again: the stored variants' losses follow it
        _save(result, bench)
    base = result["base"]["general_knowledge"]["accuracy"]
    print(f"{'model':<34} {'general':>8} {'vs base':>8} {'P(forget)':>10} {'P(retain)':>10} {'lost (to trained)':>18}")
    variants = result.get("variants", {})
    rows = [("base", result["base"])]
    rows += [(f"{name} {which}", row[which]) for name, row in variants.items() for which in ("retain", "target")]
    for label, m in rows:
        gk = m["general_knowledge"]["accuracy"]
        losses = m.get("general_knowledge_losses")
        lost = f"{losses['lost']} ({losses['lost_to_a_trained_value']})" if losses else "-"
        print(
            f"{label:<34} {gk:>8.3f} {gk - base:>+8.3f} {m['forget']['mean_true_prob']:>10.3f} "
            f"{m['retain']['mean_true_prob']:>10.3f} {lost:>18}"
        )


if __name__ == "__main__":
    main()
