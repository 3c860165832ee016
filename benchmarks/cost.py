"""What an unlearning step costs compared with a plain supervised step on the same rows.

    .venv/bin/python benchmarks/cost.py            # full fine-tuning, every method -> results/cost.json
    .venv/bin/python benchmarks/cost.py --lora     # LoRA r=16 on all linear layers -> results/cost_lora.json
    .venv/bin/python benchmarks/cost.py --eval     # evaluation throughput -> results/cost_eval.json
    .venv/bin/python benchmarks/cost.py --task-vector   # negation, streamed vs two models -> cost_task_vector.json
    .venv/bin/python benchmarks/cost.py --robustness    # robustness suite vs TOFU-style suite -> cost_robustness.json
    .venv/bin/python benchmarks/cost.py --calibration   # calibrated stopping's overhead -> cost_calibration.json
    .venv/bin/python benchmarks/cost.py --methods sft idk_dpo_think reasoned_idk --rounds 3 \
        --output cost_reasoning.json                    # Reasoned-IDK (DPO) vs IdkDPO on think-format rows

RMU and Adaptive RMU run alone (output-level loss off, layer 7, down_proj of layers 5-7 trained), and so does
Attention Shifting (layers 10-19, their query/key projections trained; the adapter under ``--lora``).
Each method runs in a fresh process on the bundled SmolLM2-135M-Instruct (fp32; bf16 on a GPU), with 8 forget rows
and, for methods with a retain term, 8 paired retain rows per optimizer step (the built-in benchmark's answers), at
its default hyperparameters. The supervised baseline is ``transformers.Trainer`` with the model's own loss on exactly
the same rows per step: ``sft`` (16 rows) for methods with a retain term, ``sft_forget`` (the 8 forget rows) for those
without (GradAscent, UNDIAL, CE-U). Reported: median seconds per optimizer step after 2 warm-up steps, and the
process's peak resident memory (CPU) or peak allocated CUDA memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
METHODS = (
    "sft",
    "sft_forget",
    "grad_ascent",
    "grad_diff",
    "npo",
    "simnpo",
    "idk_sft",
    "idk_dpo",
    "undial",
    "wga",
    "satimp",
    "ceu",
    "pdu",
    "rmu",
    "adaptive_rmu",
    "attention_shifting",
)
WARMUP, MEASURED, BATCH = 2, 4, 8
# Reasoning-format rows (``--methods sft idk_dpo_think reasoned_idk --output cost_reasoning.json``): Reasoned-IDK's
# DPO form against IdkDPO on the same think-format rows (trace + answer), R-TOFU's comparison.
REASONING_ROWS = {
    "idk_dpo_think": ("idk_dpo", {"forget_target": "both"}),
    "reasoned_idk": ("reasoned_idk", {"forget_target": "both", "loss_type": "dpo"}),
}


def _peak_mib() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(method: str, lora: bool) -> dict:
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    import hf_unlearn as hu
    from hf_unlearn.data import DataCollatorForUnlearning, ForgetRetainDataset, tokenize_rows
    from hf_unlearn.registry import get_method

    model, tok = hu.load_model("bundled", lora={"r": 16, "lora_alpha": 32} if lora else None)
    bench = hu.build_fictitious_authors(num_authors=40)
    forget, retain = bench["forget"], bench["retain"]
    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.t)

    common = dict(
        output_dir="/tmp/hf_unlearn_cost",
        per_device_train_batch_size=BATCH,
        max_steps=WARMUP + MEASURED,
        report_to=[],
        save_strategy="no",
        logging_steps=1000,
        learning_rate=1e-5,
        warmup_steps=0,
        seed=0,
        disable_tqdm=True,
    )
    rows = 2 * BATCH
    if method in ("sft", "sft_forget"):
        # The same forget + retain rows as an unlearning batch, as one supervised batch of 16 with the model's loss
        # ("sft_forget": the 8 forget rows alone, the baseline of methods without a retain term).
        pairs = ForgetRetainDataset(
            tokenize_rows(forget, tok, max_length=512), tokenize_rows(retain, tok, max_length=512), seed=0
        )
        both = method == "sft"
        examples = [
            {"input_ids": seq, "labels": lab}
            for i in range(len(pairs))
            for seq, lab in (
                (pairs[i]["forget_input_ids"], pairs[i]["forget_labels"]),
                *([(pairs[i]["retain_input_ids"][0], pairs[i]["retain_labels"][0])] if both else []),
            )
        ]
        rows = 2 * BATCH if both else BATCH
        args = TrainingArguments(
            **{**common, "per_device_train_batch_size": rows}, train_sampling_strategy="sequential"
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=examples,
            data_collator=DataCollatorForUnlearning(pad_token_id=tok.pad_token_id),
            callbacks=[Timer()],
        )
    elif method in ("rmu", "adaptive_rmu", "attention_shifting"):
        # Representation-only: the output-level loss is off. RMU's forward stops after layer 7; Attention Shifting
        # (layers 10-19) needs the full forward for its refusal term.
        from hf_unlearn.callbacks import AdaptiveRMUCallback, AttentionShiftingCallback, RMUCallback

        cb = {
            "rmu": lambda: RMUCallback(layer=7),
            "adaptive_rmu": lambda: AdaptiveRMUCallback(layer=7),
            "attention_shifting": lambda: AttentionShiftingCallback(layers=list(range(10, 20))),
        }[method]()
        trainer = hu.GradDiffTrainer(
            model,
            args=hu.GradDiffConfig(**common, forget_coeff=0.0, retain_loss_type="none"),
            forget_dataset=forget,
            retain_dataset=retain,
            processing_class=tok,
            callbacks=[cb, Timer()],
        )
    else:
        from hf_unlearn.objective import requirements

        name, extra = REASONING_ROWS.get(method, (method, {}))
        spec = get_method(name)
        cfg, cls = spec.config_class, spec.trainer_class
        args = cfg(**common, **extra)
        uses_retain = requirements(cls.objectives_for(args)).retain
        rows = 2 * BATCH if uses_retain else BATCH
        trainer = cls(
            model,
            args=args,
            forget_dataset=forget,
            retain_dataset=retain if uses_retain else None,
            processing_class=tok,
            callbacks=[Timer()],
        )
    loaded = _peak_mib()
    trainer.train()
    return {
        "method": method,
        "lora": lora,
        "rows_per_step": rows,
        "seconds_per_step": statistics.median(times[WARMUP:]),
        "peak_mib": round(_peak_mib(), 1),
        "peak_mib_at_start_of_training": round(loaded, 1),
        "has_reference_model": getattr(trainer, "ref_model", None) is not None,
    }


def eval_child() -> dict:
    """Evaluation throughput on the quality benchmark's splits: scoring pass, greedy generation, MCQ."""
    import torch

    import hf_unlearn as hu
    from hf_unlearn.evaluation import builtin_tofu_splits, evaluate_mcq, evaluate_tofu, generate_answers
    from hf_unlearn.evaluation.tofu import _variants

    model, tok = hu.load_model("bundled")
    model.eval()
    bench = hu.build_fictitious_authors(num_authors=40)
    splits = builtin_tofu_splits(bench, retain_size=40)
    evaluate_mcq(model, tok, bench["forget_mcq"][:8])  # warm-up
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    n_seq = sum(len(_variants(name, r)) for name, rows in splits.items() for r in rows)
    sync()
    t0 = time.perf_counter()
    evaluate_tofu(model, tok, **splits, generate=False)
    sync()
    scoring = time.perf_counter() - t0
    questions = [r["question"] for r in [*splits["forget"], *splits["retain"]]]
    t0 = time.perf_counter()
    answers = generate_answers(model, tok, questions, max_new_tokens=32, batch_size=16)
    sync()
    generation = time.perf_counter() - t0
    new_tokens = sum(len(tok(a, add_special_tokens=False)["input_ids"]) for a in answers)
    mcq = bench["retain_mcq"]
    t0 = time.perf_counter()
    evaluate_mcq(model, tok, mcq)
    sync()
    mcq_s = time.perf_counter() - t0
    return {
        "scoring": {"sequences": n_seq, "seconds": round(scoring, 2), "sequences_per_s": round(n_seq / scoring, 1)},
        "generation": {
            "questions": len(questions),
            "batch_size": 16,
            "max_new_tokens": 32,
            "new_tokens": new_tokens,
            "seconds": round(generation, 2),
            "new_tokens_per_s": round(new_tokens / generation, 1),
        },
        "mcq": {"questions": len(mcq), "seconds": round(mcq_s, 2), "questions_per_s": round(len(mcq) / mcq_s, 1)},
        "peak_mib": round(_peak_mib(), 1),
    }


def robustness_child() -> dict:
    """The robustness suite's cost, attack by attack, against the TOFU-style suite on the same model and benchmark
    (the quality benchmark's: 40 authors, 40 retain items, 32 generated tokens)."""
    import hf_unlearn as hu
    from hf_unlearn.evaluation import builtin_tofu_splits, evaluate_robustness, evaluate_tofu
    from hf_unlearn.sources import evaluation_splits

    model, tok = hu.load_model("bundled")
    model.eval()
    bench = hu.build_fictitious_authors(num_authors=40)
    t0 = time.perf_counter()
    evaluate_tofu(model, tok, **builtin_tofu_splits(bench, retain_size=40), max_new_tokens=32)
    tofu = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = evaluate_robustness(
        model,
        tok,
        **evaluation_splits("robustness", benchmark=bench, retain_size=None),
    )
    total = time.perf_counter() - t0
    # Conditions evaluated together share one timing: the prompt-only ones (one pass) and the relearning curve.
    c = result.details["conditions"]
    groups = {
        "prompts (plain, paraphrase, formats, in-context, jailbreaks)": c["plain"]["seconds"],
        "relearn (training + 3 evaluations)": c["relearn_25"]["seconds"],
        "quantization (8-bit + 4-bit, load + evaluate)": round(
            c["quant_8bit"]["seconds"] + c["quant_4bit"]["seconds"], 1
        ),
        "mcq": c["mcq"]["seconds"],
        "probe": c["probe"]["seconds"],
    }
    return {
        "tofu_suite_seconds": round(tofu, 1),
        "robustness_seconds": round(total, 1),
        "ratio": round(total / tofu, 2),
        "seconds_by_attack": groups,
        "peak_mib": round(_peak_mib(), 1),
    }


CALIBRATED = ("grad_ascent_calibrated", "npo_calibrated", "rmu_answers_lr_1e-3_alpha_1_calibrated")


def calibration_child(name: str) -> dict:
    """One calibrated run of the quality benchmark (its target, data and settings): the callback's own time against
    the training's wall time."""
    import tempfile

    import quality as Q

    import hf_unlearn as hu
    from hf_unlearn.references import prepare_references

    bench = hu.build_fictitious_authors(**Q.BENCH)
    model, tok = hu.load_model(str(prepare_references(bench).target_dir))
    with tempfile.TemporaryDirectory() as work:
        trainer, _ = Q._run_trainer(name, model, tok, bench, work)
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
    cb = next(c for c in trainer.callback_handler.callbacks if isinstance(c, hu.ForgetTargetCallback))
    s = cb.summary
    return {
        "method": name,
        "steps": trainer.state.global_step,
        "train_seconds": round(seconds, 1),
        "callback_seconds": round(cb.seconds, 1),
        "overhead": round(cb.seconds / seconds, 3),
        "evaluations": s["evaluations"],
        "seconds_per_evaluation": round(cb.seconds / max(s["evaluations"], 1), 2),
        "rows_per_evaluation": len(cb._forget) + len(cb._nonmember),
        "every_n_steps": s["every_n_steps"],
        "stopped": s["stopped"],
        "best_step": s["best_step"],
    }


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def task_vector_child(mode: str, work: str) -> dict:
    """Task-vector negation of the bundled model: streamed (``negate_checkpoint``) or the straightforward way (load
    the target and the reinforced model, subtract in memory, save). Peak resident memory above the interpreter with
    its imports, which is what the negation itself adds."""
    import torch

    from hf_unlearn import load_model
    from hf_unlearn import task_arithmetic as ta
    from hf_unlearn.models import bundled_model_path

    target, reinforced, out = str(bundled_model_path()), f"{work}/reinforced", f"{work}/out-{mode}"
    if mode == "setup":  # a reinforced stand-in: the target plus small noise, in the same layout
        g = torch.Generator().manual_seed(0)
        ta.stream_checkpoint(target, reinforced, lambda k, t: t + 1e-3 * torch.randn(t.shape, generator=g))
        return {}
    ckpt = ta.Checkpoint(target)
    largest = max(ckpt.get(k).nbytes for k in ckpt) / 2**20  # read once; freed before the baseline
    sizes = sum(torch.empty(ckpt.shape(k), dtype=torch.float32).nbytes for k in ckpt) / 2**20
    del ckpt
    base = _rss_mib()
    t0 = time.perf_counter()
    if mode == "stream":
        ta.negate_checkpoint(target, reinforced, out, scale=1.0)
    else:
        t_model, tok = load_model(target)
        r_model, _ = load_model(reinforced)
        with torch.no_grad():
            for (_, p), (_, q) in zip(t_model.named_parameters(), r_model.named_parameters(), strict=True):
                p.copy_(p - (q - p))
        t_model.save_pretrained(out)
        tok.save_pretrained(out)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "mode": mode,
        "seconds": round(seconds, 2),
        "peak_above_baseline_mib": round(peak - base, 1),
        "largest_tensor_mib": round(largest, 1),
        "model_float32_mib": round(sizes, 1),
        "peak_vs_largest_tensor": round((peak - base) / largest, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--eval", action="store_true", help="evaluation throughput instead -> results/cost_eval.json")
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument(
        "--rounds", type=int, default=1, help="measure every method this many times, interleaved; keep the median"
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="replace only these methods' rows in the results file (include their baselines: each row keeps the "
        "ratio to the baseline measured in its own invocation)",
    )
    parser.add_argument("--task-vector", action="store_true", help="negation cost -> results/cost_task_vector.json")
    parser.add_argument(
        "--robustness", action="store_true", help="robustness suite vs TOFU-style suite -> results/cost_robustness.json"
    )
    parser.add_argument(
        "--calibration", action="store_true", help="calibrated stopping's overhead -> results/cost_calibration.json"
    )
    parser.add_argument("--output", default=None, help="results file name under results/ (default by mode)")
    parser.add_argument("--child", default=None)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.child:
        if a.child.startswith("tv_"):
            print(json.dumps(task_vector_child(a.child.removeprefix("tv_"), a.work)))
        else:
            sys.path.insert(0, str(Path(__file__).parent))
            children = {"eval": eval_child, "robustness": robustness_child}
            if a.child in CALIBRATED:
                print(json.dumps(calibration_child(a.child)))
            else:
                print(json.dumps(children[a.child]() if a.child in children else child(a.child, a.lora)))
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from _machine import machine_info

    if a.calibration:
        rows = []
        for name in CALIBRATED:
            out = subprocess.run(
                [sys.executable, __file__, "--child", name], check=True, capture_output=True, text=True
            ).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
        RESULTS.mkdir(exist_ok=True)
        result = {"rows": rows, "measured": time.strftime("%Y-%m-%d %H:%M"), "machine": machine_info()}
        (RESULTS / (a.output or "cost_calibration.json")).write_text(json.dumps(result, indent=2) + "\n")
        return

    if a.task_vector:
        import tempfile

        rows = []
        with tempfile.TemporaryDirectory() as work:
            for mode in ("setup", "stream", "in_memory"):
                cmd = [sys.executable, __file__, "--child", f"tv_{mode}", "--work", work]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                row = json.loads(out.strip().splitlines()[-1])
                if row:
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        RESULTS.mkdir(exist_ok=True)
        result = {"rows": rows, "model": "bundled SmolLM2-135M-Instruct (float32)", "machine": machine_info()}
        (RESULTS / "cost_task_vector.json").write_text(json.dumps(result, indent=2) + "\n")
        return

    if a.eval or a.robustness:
        mode = "eval" if a.eval else "robustness"
        cmd = [sys.executable, __file__, "--child", mode]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / (a.output or f"cost_{mode}.json")).write_text(
            json.dumps({**row, "machine": machine_info()}, indent=2) + "\n"
        )
        print(json.dumps(row, indent=2))
        return

    # Interleaved rounds: a slow spell of a shared machine then hits every method, not one.
    runs: dict[str, list[dict]] = {m: [] for m in a.methods}
    for _ in range(a.rounds):
        for m in a.methods:
            cmd = [sys.executable, __file__, "--child", m] + (["--lora"] if a.lora else [])
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs[m].append(json.loads(out.strip().splitlines()[-1]))
            print(
                f"{m:>12}: {runs[m][-1]['seconds_per_step']:.2f} s/step, peak {runs[m][-1]['peak_mib']:.0f} MiB",
                flush=True,
            )
    rows = []
    for measured in runs.values():
        row = sorted(measured, key=lambda r: r["seconds_per_step"])[len(measured) // 2]
        rows.append({**row, "rounds": [round(r["seconds_per_step"], 3) for r in measured]})
    # Each method against the supervised step on the same rows: 16 (forget + retain) or 8 (forget only).
    bases = {r["rows_per_step"]: r for r in rows if r["method"] in ("sft", "sft_forget")}
    for r in rows:
        base = bases[r["rows_per_step"]]
        r["baseline"] = base["method"]
        r["baseline_seconds_per_step"] = base["seconds_per_step"]
        r["time_vs_sft"] = round(r["seconds_per_step"] / base["seconds_per_step"], 3)
        r["peak_vs_sft"] = round(r["peak_mib"] / base["peak_mib"], 3)
        r["measured"] = time.strftime("%Y-%m-%d %H:%M")
    out = RESULTS / (a.output or ("cost_lora.json" if a.lora else "cost.json"))
    RESULTS.mkdir(exist_ok=True)
    if a.update and out.is_file():
        new = {r["method"]: r for r in rows}
        old = json.loads(out.read_text())["rows"]
        rows = [new.pop(r["method"], r) for r in old] + list(new.values())
    out.write_text(json.dumps({"rows": rows, "machine": machine_info()}, indent=2) + "\n")
    print("\n| method | rows | s / step | vs SFT | peak MiB | vs SFT |\n|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['method']} | {r['rows_per_step']} | {r['seconds_per_step']:.2f} | {r['time_vs_sft']:.2f}x | "
            f"{r['peak_mib']:.0f} | {r['peak_vs_sft']:.2f}x |"
        )


if __name__ == "__main__":
    main()
