"""The offline demo: build the benchmark, fine-tune target and retain models, unlearn, evaluate, publish locally.

Steps (everything cached under ``$HF_UNLEARN_CACHE/demo/<config hash>``, so a rerun only unlearns and evaluates):

1. the built-in benchmark at demo size (20 authors: 2 forget, 2 holdout, 16 retain; 10 QA each);
2. the *retain* model: the bundled SmolLM2-135M-Instruct fine-tuned on the retain authors;
3. the *target* model: the retain model fine-tuned further on the forget authors plus a replay of retain rows - a
   cheaper route to "knows every author" than a second full fine-tune (disclosed in the README);
4. reference evaluation of the retain model (for Forget Quality and PrivLeak), evaluation of the target;
5. unlearning of the forget authors from the target with NPO + retain NLL on a LoRA adapter;
6. evaluation of the unlearned model, a side-by-side table, and ``outputs/demo/``: the adapter, ``results.json``
   (aggregates only), a model card ``README.md``, ``forget_vs_utility.png`` and ``report.html`` (the run's report:
   headline, training curves, membership inference, the per-item forget table; local only).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..references import DEMO_NUM_AUTHORS
from .arguments import CommandParser, Renamed

__all__ = ["DEMO_MARKER", "DemoArguments", "main", "run_demo"]


@dataclass
class DemoArguments:
    """The offline demo's few knobs (everything else is the demo's fixed, cached set-up).

    Parameters:
        output_dir: where the adapter, ``results.json``, the card and the plot go.
        num_authors: benchmark size (20: 2 forget, 2 holdout and 16 retain authors).
        unlearn_epochs, unlearn_learning_rate: NPO's epochs over the forget set and its learning rate (LoRA).
        overwrite: replace an output folder that does not hold an earlier demo run.
    """

    output_dir: str = field(default="outputs/demo", metadata={"help": "Where the adapter, results and card go."})
    num_authors: int = field(default=DEMO_NUM_AUTHORS, metadata={"help": "Benchmark size (20: 2 forget authors)."})
    unlearn_epochs: float = field(default=5.0, metadata={"help": "NPO epochs over the forget set."})
    unlearn_learning_rate: float = field(default=2.5e-4, metadata={"help": "NPO learning rate (LoRA)."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an output folder that is not a demo run."})


def main(argv: Sequence[str] | None = None) -> int:
    from .. import set_verbosity

    set_verbosity(os.environ.get("HF_UNLEARN_VERBOSITY", "info"))
    parser = CommandParser(
        (DemoArguments,),
        prog="hf-unlearn demo",
        description="Offline end-to-end demo: fine-tune, unlearn, evaluate, write outputs/demo/.",
        renamed={"unlearn_lr": Renamed("unlearn_learning_rate")},
    )
    (a,) = parser.parse_args_and_config(list(sys.argv[1:] if argv is None else argv))
    run_demo(
        a.output_dir,
        num_authors=a.num_authors,
        unlearn_epochs=a.unlearn_epochs,
        unlearn_lr=a.unlearn_learning_rate,
        overwrite=a.overwrite,
    )
    return 0


DEMO_MARKER = ".hf_unlearn_demo"
ROWS = [
    ("forget_quality", "Forget Quality (KS p, higher = like retain)"),
    ("model_utility", "Model Utility"),
    ("forget_rouge", "forget ROUGE-L recall"),
    ("forget_prob", "forget answer probability"),
    ("forget_truth_ratio", "forget Truth Ratio"),
    ("privleak", "PrivLeak (%, 0 = like retain)"),
    ("world_facts_accuracy", "general knowledge (ranked first)"),
    ("retain_prob", "retain answer probability"),
]


def _prepare_output(path: Path, overwrite: bool) -> None:
    if path.exists() and any(path.iterdir()):
        if not (path / DEMO_MARKER).exists() and not overwrite:
            raise FileExistsError(
                f"{path} holds something other than a previous demo run; pass --overwrite or "
                "choose another --output-dir."
            )
        shutil.rmtree(path)


def run_demo(
    output_dir: str | os.PathLike[str] = "outputs/demo",
    *,
    base_model: str = "bundled",
    num_authors: int = DEMO_NUM_AUTHORS,
    finetune_epochs: float = 4,
    unlearn_epochs: float = 5,
    unlearn_lr: float = 2.5e-4,
    eval_retain_size: int = 40,
    max_new_tokens: int = 32,
    overwrite: bool = False,
) -> dict[str, Any]:
    import hf_unlearn as hu
    from hf_unlearn.evaluation import plot_forget_vs_utility
    from hf_unlearn.references import prepare_references

    t0 = time.perf_counter()
    out = Path(output_dir)
    _prepare_output(out, overwrite)
    print(f"[1/6] Building the built-in benchmark ({num_authors} authors) ...")
    bench = hu.build_fictitious_authors(num_authors=num_authors)

    def step(msg: str) -> None:  # README's numbering: 2 retain model, 3 target model, 5 evaluations
        n = 5 if msg.startswith("Evaluat") else 2 if "retain model" in msg.lower() else 3
        print(f"[{n}/6]", msg)

    refs = prepare_references(
        bench,
        base_model=base_model,
        finetune_epochs=finetune_epochs,
        eval_retain_size=eval_retain_size,
        max_new_tokens=max_new_tokens,
        log=step,
    )
    retain_eval, target_eval, target_dir = refs.retain_eval, refs.target_eval, refs.target_dir

    print(f"[4/6] Unlearning the forget authors with NPO (+ retain NLL) on a LoRA adapter, {unlearn_epochs} epochs ...")
    from peft import LoraConfig

    model, tokenizer = hu.load_model(str(target_dir))
    work = out.parent / f".{out.name}.work"
    shutil.rmtree(work, ignore_errors=True)
    trainer = hu.NPOTrainer(
        model,
        args=hu.NPOConfig(
            output_dir=str(work),
            per_device_train_batch_size=8,
            learning_rate=unlearn_lr,
            num_train_epochs=unlearn_epochs,
            logging_steps=3,
            save_strategy="no",
            report_to=[],
            hub_model_id="hf_unlearn-demo-npo",
        ),
        forget_dataset=bench["forget"],
        retain_dataset=bench["retain"],
        processing_class=tokenizer,
        peft_config=LoraConfig(r=32, lora_alpha=64, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    trainer.train()
    print("[5/6] Evaluating the unlearned model ...")
    unlearned = refs.evaluate(trainer.model, tokenizer, label="unlearned model")

    results = {"target": target_eval, "retain": retain_eval, "unlearned": unlearned}
    table = {name: {k: r.metrics.get(k) for k, _ in ROWS} for name, r in results.items()}
    width = max(len(label) for _, label in ROWS)
    lines = [f"{'':<{width}}  {'target':>10}  {'retain':>10}  {'unlearned':>10}"]
    for k, label in ROWS:
        cells = []
        for name in ("target", "retain", "unlearned"):
            v = table[name][k]
            cells.append(f"{'-' if v is None else f'{v:.3g}':>10}")
        lines.append(f"{label:<{width}}  " + "  ".join(cells))
    print("\n" + "\n".join(lines))

    print(f"[6/6] Writing {out}/ (adapter, results.json, model card, plot) ...")
    work_out = out.parent / f".{out.name}.tmp"
    shutil.rmtree(work_out, ignore_errors=True)
    trainer.save_model(str(work_out))
    tokenizer.save_pretrained(work_out)
    (work_out / "results.json").write_text(
        json.dumps(
            {name: {"metrics": r.metrics, "details": r.details, "meta": r.meta} for name, r in results.items()},
            indent=1,
        )
        + "\n"
    )
    points = {n: (r.metrics["model_utility"], r.metrics["forget_rouge"]) for n, r in results.items()}
    plot_forget_vs_utility(points, work_out / "forget_vs_utility.png")
    trainer.args.output_dir = str(work_out)
    trainer.create_model_card(
        metrics={k: v for k, v in unlearned.metrics.items() if v is not None},
        plot="forget_vs_utility.png",
        forget_name="fictitious-authors (demo forget split)",
        retain_name="fictitious-authors (demo retain split)",
    )
    from hf_unlearn.report import write_report

    write_report(
        work_out,
        results=results,
        log_history=trainer.state.log_history,
        forget_rows=refs.splits["forget"],
        settings={
            "method": "NPO + retain NLL, LoRA r=32",
            "model": "SmolLM2-135M-Instruct fine-tuned on the built-in benchmark (the target)",
            "forget data": f"fictitious-authors, {len(refs.splits['forget'])} forget questions",
            "steps": trainer.state.global_step,
            "learning rate": unlearn_lr,
        },
        title="hf_unlearn demo: NPO on the fictitious authors",
    )
    (work_out / DEMO_MARKER).write_text("written by hf-unlearn demo\n")
    os.replace(work_out, out)
    shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - t0
    print(f"\nWrote {out}/ (LoRA adapter, results.json, README.md card, forget_vs_utility.png) in {seconds:.0f} s.")
    report = out / "report.html"
    print(f"Open the report: {report.resolve()} (local only: it shows forget-set text; push never uploads it)")
    return {"table": table, "seconds": seconds, "output_dir": str(out), "report": str(report)}
