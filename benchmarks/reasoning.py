"""Reasoning-model unlearning (R-TOFU) on the built-in benchmark: answer- and trace-level forgetting under default,
ZeroThink and LessThink decoding, from one reasoning target, with the bundled model.

    .venv/bin/python benchmarks/reasoning.py                        # everything -> results/reasoning.json + .png
    .venv/bin/python benchmarks/reasoning.py --methods reasoned_idk_dpo   # rerun some; the others are read from
                                                                    # results/reasoning/<name>.json

Set-up: the quality benchmark's 40 authors (``quality.BENCH``). The reasoning references come from
:func:`hf_unlearn.references.prepare_references` with ``reasoning=True``: the bundled model fine-tuned on the think
format (``<think>\\n{cot}\\n</think>\\n\\n{answer}``) on the retain authors (the reasoning retain model), then on the
forget authors plus 40 replayed retain QA (the reasoning target). Every row starts from that target in a fresh process,
trains with the quality benchmark's output-level settings (LoRA r 32 on every linear layer, lr 2.5e-4, 5 epochs of
batch 8, every loss weight at its default) and is evaluated by :func:`hf_unlearn.evaluate_reasoning` on the 40 forget
QA and 40 retain QA under the three decodings (greedy, ``MAX_NEW_TOKENS`` tokens).

Rows (R-TOFU's variants): GradAscent on the answer only, on the trace only and on both; IdkSFT with Direct IDK (a
refusal as trace and answer); Reasoned-IDK in its DPO and NLL forms (an inconclusive trace + a refusal); NPO on trace
and answer. The methods with a retain term (NPO, the IDK forms) use the retain NLL on trace + answer.

Headline columns: the leak rate (``leak_rate``: the generated trace or answer states the fact; the answer alone
under ZeroThink and LessThink, whose trace is forced) under each decoding and the worst of them, the worst-case answer
ROUGE-L recall, the ZeroThink gap (ZeroThink minus default answer ROUGE on the forget set) and the retain answer
ROUGE under default decoding (utility).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import quality as Q  # the benchmark and the output-level settings

RESULTS = Path(__file__).parent / "results"
PER_ROW = RESULTS / "reasoning"
REFERENCES = ("target", "retain")
ROWS: dict[str, tuple[str, dict]] = {
    "grad_ascent_answer": ("grad_ascent", {"forget_target": "answer"}),
    "grad_ascent_cot": ("grad_ascent", {"forget_target": "cot"}),
    "grad_ascent_both": ("grad_ascent", {"forget_target": "both"}),
    "idk_sft_direct": ("reasoned_idk", {"loss_type": "nll", "idk_variant": "direct", "forget_target": "both"}),
    "reasoned_idk_dpo": ("reasoned_idk", {"loss_type": "dpo", "forget_target": "both"}),
    "reasoned_idk_nll": ("reasoned_idk", {"loss_type": "nll", "forget_target": "both"}),
    "npo_both": ("npo", {"forget_target": "both"}),
}
RETAIN_EVAL = 40
MAX_NEW_TOKENS = 160  # the built-in traces are 3-5 sentences; a trace that does not close within it is counted
COLUMNS = [
    ("forget/default/leak_rate", "leak default ↓", "{:.3f}"),
    ("forget/zerothink/leak_rate", "leak ZeroThink ↓", "{:.3f}"),
    ("forget/lessthink/leak_rate", "leak LessThink ↓", "{:.3f}"),
    ("worst/forget_leak_rate", "leak worst ↓", "{:.3f}"),
    ("worst/forget_answer_rouge", "forget answer ROUGE, worst ↓", "{:.3f}"),
    ("zerothink_gap/forget_answer_rouge", "ZeroThink gap", "{:+.3f}"),
    ("forget/default/trace_rouge", "forget trace ROUGE ↓", "{:.3f}"),
    ("forget/default/unclosed_rate", "unclosed", "{:.2f}"),
    ("retain/default/answer_rouge", "retain answer ROUGE ↑", "{:.3f}"),
]


def train(name: str, model, tokenizer, bench, output_dir: str):
    """The trainer of row ``name`` (see the module docstring); returns (trainer, settings)."""
    from peft import LoraConfig

    from hf_unlearn.objective import requirements
    from hf_unlearn.registry import METHODS as NAMES

    method, args = ROWS[name]
    spec = NAMES[method]
    common = {"output_dir": output_dir, "save_strategy": "no", "report_to": [], "logging_steps": 5, "seed": 0}
    cfg = spec.config_class(**{**common, **Q.OUTPUT_LEVEL, **args})
    uses_retain = requirements(spec.trainer_class.objectives_for(cfg)).retain
    trainer = spec.trainer_class(
        model,
        args=cfg,
        forget_dataset=bench["forget"],
        retain_dataset=bench["retain"] if uses_retain else None,
        processing_class=tokenizer,
        peft_config=LoraConfig(**Q.LORA, task_type="CAUSAL_LM"),
    )
    return trainer, {"method": method, **Q.OUTPUT_LEVEL, **args, "lora": Q.LORA, "retain_term": uses_retain}


def evaluate(model, tokenizer, bench) -> tuple[dict, dict]:
    """evaluate_reasoning on the forget QA and ``RETAIN_EVAL`` retain QA; (metrics, details)."""
    import hf_unlearn as hu

    model.eval()
    forget, retain = list(bench["forget"]), list(bench["retain"][:RETAIN_EVAL])
    result = hu.evaluate_reasoning(model, tokenizer, forget=forget, retain=retain, max_new_tokens=MAX_NEW_TOKENS)
    metrics = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}
    samples = {k: dict(list(v.items())[:3]) for k, v in result.per_item.items() if k.endswith("/generation")}
    return metrics, {"worst_case": result.details["worst_case"], "encoder": result.details["encoder"], **samples}


def child(name: str) -> dict:
    import tempfile

    import hf_unlearn as hu
    from hf_unlearn.references import prepare_references

    bench = hu.build_fictitious_authors(**Q.BENCH)
    refs = prepare_references(bench, reasoning=True, evaluate=False)
    row: dict = {"method": name}
    if name in REFERENCES:
        model, tokenizer = hu.load_model(str(refs.target_dir if name == "target" else refs.retain_dir))
    else:
        model, tokenizer = hu.load_model(str(refs.target_dir))
        with tempfile.TemporaryDirectory() as tmp:
            trainer, settings = train(name, model, tokenizer, bench, tmp)
            if not Q.train_row(trainer, settings, row):
                return row
        model = trainer.model
    t0 = time.perf_counter()
    row["metrics"], row["details"] = evaluate(model, tokenizer, bench)
    row["eval_seconds"] = round(time.perf_counter() - t0, 1)
    return row


def table(rows: list[dict]) -> str:
    return Q._table(rows, COLUMNS)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if "error" not in r]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for r in ok:
        m = r["metrics"]
        xy = (m["retain/default/answer_rouge"], m["worst/forget_leak_rate"])
        ax.scatter(*xy, s=30)
        ax.annotate(r["method"], xy, fontsize=7)
    ax.set_xlabel("retain answer ROUGE-L recall (default decoding) ↑")
    ax.set_ylabel("forget leak rate, worst of default / ZeroThink / LessThink ↓")
    ax.set_title("Reasoning-model unlearning (bundled model, built-in benchmark)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="*", default=None, help="run these (default: references + every row)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.child:
        print("RESULT " + json.dumps(child(a.child)), flush=True)
        return
    from _machine import machine_info

    names = [*REFERENCES, *ROWS]
    unknown = set(a.methods or ()) - set(names)
    if unknown:
        raise SystemExit(f"Unknown rows {sorted(unknown)}; choose from {', '.join(names)}.")
    rows = Q.run_rows(__file__, a.methods if a.methods is not None else names, names, PER_ROW, table)
    meta = {"benchmark": {"name": "fictitious-authors", **Q.BENCH}, "max_new_tokens": MAX_NEW_TOKENS}
    (RESULTS / "reasoning.json").write_text(json.dumps({"rows": rows, **meta, "machine": machine_info()}, indent=1))
    plot(rows, RESULTS / "reasoning.png")
    print("\n" + table(rows))


if __name__ == "__main__":
    main()
