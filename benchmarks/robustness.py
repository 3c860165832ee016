"""Does the forgetting hold? The robustness suite on every row of ``benchmarks/quality.py``.

    .venv/bin/python benchmarks/robustness.py                          # retain first (the reference), then the rest
    .venv/bin/python benchmarks/robustness.py --methods npo rmu        # rerun some; the others are read from
                                                                       # results/robustness/<row>.json
    .venv/bin/python benchmarks/robustness.py --deadline 5400          # stop starting new rows after 90 minutes

Every method row is retrained exactly as in ``quality.py`` (same settings, seed and target model) in a fresh process,
then :func:`hf_unlearn.evaluation.evaluate_robustness` runs with the retain model's robustness result as reference, so
Forget Quality and PrivLeak under each attack compare with the retain model under the same attack (the retain row is
the control: what relearning teaches from nothing, what 4-bit loading does to a model that never saw the facts). The
linear probe runs on the target and retain rows only (it costs ~45 s a row and is uninformative at this scale: see
docs/benchmarks/robustness.md). The target and retain rows also time the TOFU-style suite in the same process, for
the cost target.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import quality as Q  # the rows, their settings and trainers

RESULTS = Path(__file__).parent / "results"
PER_ROW = RESULTS / "robustness"
REFERENCE = PER_ROW / "retain.full.json"  # with per-item truth ratios: the Forget Quality reference
# Rows in the order they run: the reference, the target, then the methods and the variants the docs discuss.
ROWS = (
    "retain",
    "target",
    "npo",
    "grad_ascent",
    "grad_diff",
    "simnpo",
    "idk_sft",
    "idk_dpo",
    "rmu",
    "rmu_answers_lr_1e-3_alpha_1",
    "attention_shifting",
    "attention_shifting_suppress_50_lr_1e-3",
    "undial",
    "wga",
    "satimp",
    "ceu",
    "pdu",
    "adaptive_rmu",
    "task_vector",
    "sta",
    "simnpo_forget_coeff_1",
    "npo_calibrated",
)
# The searched rows (quality.py --searched) that exist: each has its robustness row.
ROWS += tuple(name for name in Q.VARIANTS if name.endswith("_searched"))
ALL_ATTACKS = ("relearn", "quantization", "paraphrase", "in_context", "jailbreak", "probing")
COLUMNS = [
    ("plain/forget_quality", "FQ", "{:.2g}"),
    ("relearn_10/forget_quality", "FQ relearn 10", "{:.2g}"),
    ("quant_4bit/forget_quality", "FQ 4-bit", "{:.2g}"),
    ("worst/forget_quality", "FQ worst", "{:.2g}"),
    ("plain/forget_rouge", "ROUGE", "{:.3f}"),
    ("relearn_10/forget_rouge", "ROUGE relearn 10", "{:.3f}"),
    ("quant_4bit/forget_rouge", "ROUGE 4-bit", "{:.3f}"),
    ("plain/leak_rate", "leak", "{:.2f}"),
    ("relearn_10/leak_rate", "leak relearn 10", "{:.2f}"),
    ("worst/leak_rate", "leak worst", "{:.2f}"),
    ("plain/hallucination_rate", "halluc.", "{:.2f}"),
    ("plain/refusal_rate", "refusal", "{:.2f}"),
    ("plain/degenerate_rate", "degen.", "{:.2f}"),
]


def child(row: str) -> dict:
    import tempfile

    import hf_unlearn as hu
    from hf_unlearn.evaluation import evaluate_robustness
    from hf_unlearn.references import prepare_references
    from hf_unlearn.sources import evaluation_splits

    bench = hu.build_fictitious_authors(**Q.BENCH)
    refs = prepare_references(bench)
    out: dict = {"method": row}
    variant = Q.VARIANTS.get(row, {})
    base = variant.get("method", row)
    if row in Q.REFERENCES:
        model, tokenizer = hu.load_model(str(refs.target_dir if row == "target" else refs.retain_dir))
        t0 = time.perf_counter()
        refs.evaluate(model, tokenizer)
        out["tofu_suite_seconds"] = round(time.perf_counter() - t0, 1)
    elif base in Q.WEIGHT_SPACE:
        t0 = time.perf_counter()
        model, tokenizer, _ = Q._weight_space(base, refs.target_dir, bench, refs.target_dir.parent, variant.get("args"))
        out["train_seconds"] = round(time.perf_counter() - t0, 1)
    else:
        model, tokenizer = hu.load_model(str(refs.target_dir))
        with tempfile.TemporaryDirectory() as tmp:
            trainer, _ = Q._run_trainer(row, model, tokenizer, bench, tmp)
            t0 = time.perf_counter()
            trainer.train()
            out["train_seconds"] = round(time.perf_counter() - t0, 1)
        model = trainer.model
    model.eval()
    attacks = ALL_ATTACKS if row in Q.REFERENCES else tuple(a for a in ALL_ATTACKS if a != "probing")
    t0 = time.perf_counter()
    result = evaluate_robustness(
        model,
        tokenizer,
        **evaluation_splits("robustness", benchmark=bench, retain_size=None),
        attacks=attacks,
        reference=None if row == "retain" else str(REFERENCE),
        progress=True,
    )
    out["robustness_seconds"] = round(time.perf_counter() - t0, 1)
    if row == "retain":
        result.save(REFERENCE)
    out.update(metrics=result.metrics, details=result.details, meta={k: v for k, v in result.meta.items()})
    return out


def _table(rows: list[dict]) -> str:
    head = "| model | " + " | ".join(label for _, label, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for r in rows:
        m = r["metrics"]
        cells = [("-" if m.get(k) is None else fmt.format(m[k])) for k, _, fmt in COLUMNS]
        lines.append(f"| {r['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="*", default=None, help="run these rows (default: all, retain first)")
    parser.add_argument("--deadline", type=float, default=None, help="seconds after which no new row starts")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.child:
        print("RESULT " + json.dumps(child(a.child)), flush=True)
        return
    from _machine import machine_info

    unknown = set(a.methods or ()) - set(ROWS)
    if unknown:
        raise SystemExit(f"Unknown rows {sorted(unknown)}; choose from {', '.join(ROWS)}.")
    PER_ROW.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for name in a.methods if a.methods is not None else ROWS:
        if a.deadline is not None and time.perf_counter() - start > a.deadline:
            print(f"deadline reached: {name} and later rows not run", flush=True)
            break
        if name != "retain" and not REFERENCE.is_file():
            raise SystemExit("Run the retain row first: it is every other row's reference.")
        row = Q.run_child(__file__, name)
        (PER_ROW / f"{name}.json").write_text(json.dumps(row, indent=1) + "\n")
        print(f"{name}: {_table([row]).splitlines()[-1]}", flush=True)
    rows = [json.loads((PER_ROW / f"{n}.json").read_text()) for n in ROWS if (PER_ROW / f"{n}.json").is_file()]
    meta = {"benchmark": {"name": "fictitious-authors", **Q.BENCH}, "machine": machine_info()}
    (RESULTS / "robustness.json").write_text(json.dumps({"rows": rows, **meta}, indent=1) + "\n")
    print("\n" + _table(rows))


if __name__ == "__main__":
    main()
