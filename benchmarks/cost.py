"""What an unlearning step costs compared with a plain supervised step on the same rows.

    .venv/bin/python benchmarks/cost.py            # full fine-tuning, every method -> results/cost.json
    .venv/bin/python benchmarks/cost.py --lora     # LoRA r=16 on all linear layers -> results/cost_lora.json

RMU and Adaptive RMU run alone (output-level loss off, layer 7, down_proj of layers 5-7 trained).
Each method runs in a fresh process on the bundled SmolLM2-135M-Instruct (fp32; bf16 on a GPU), with 8 forget rows
and 8 paired retain rows per optimizer step (the built-in benchmark's answers). The supervised baseline is
``transformers.Trainer`` with the model's own loss on exactly those 16 rows per step. Reported: median seconds per
optimizer step after 2 warm-up steps, and the process's peak resident memory (CPU) or peak allocated CUDA memory.
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
METHODS = ("sft", "grad_ascent", "grad_diff", "npo", "simnpo", "idk_sft", "idk_dpo", "rmu", "adaptive_rmu")
WARMUP, MEASURED, BATCH = 2, 4, 8


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
    from hf_unlearn.scripts.unlearn import METHODS as METHOD_NAMES

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
    if method == "sft":
        # The same forget + retain rows as an unlearning batch, as one supervised batch of 16 with the model's loss.
        pairs = ForgetRetainDataset(
            tokenize_rows(forget, tok, max_length=512), tokenize_rows(retain, tok, max_length=512), seed=0
        )
        rows = [
            {"input_ids": seq, "labels": lab}
            for i in range(len(pairs))
            for seq, lab in (
                (pairs[i]["forget_input_ids"], pairs[i]["forget_labels"]),
                (pairs[i]["retain_input_ids"][0], pairs[i]["retain_labels"][0]),
            )
        ]
        args = TrainingArguments(
            **{**common, "per_device_train_batch_size": 2 * BATCH}, train_sampling_strategy="sequential"
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=rows,
            data_collator=DataCollatorForUnlearning(pad_token_id=tok.pad_token_id),
            callbacks=[Timer()],
        )
    elif method in ("rmu", "adaptive_rmu"):
        # Representation-only: the output-level loss is off, so the forward stops after layer 7.
        from hf_unlearn.callbacks import AdaptiveRMUCallback, RMUCallback

        cb = RMUCallback(layer=7) if method == "rmu" else AdaptiveRMUCallback(layer=7)
        trainer = hu.GradDiffTrainer(
            model,
            args=hu.GradDiffConfig(**common, forget_coeff=0.0, retain_loss_type="none"),
            forget_dataset=forget,
            retain_dataset=retain,
            processing_class=tok,
            callbacks=[cb, Timer()],
        )
    else:
        name = METHOD_NAMES[method]
        cfg, cls = getattr(hu, f"{name}Config"), getattr(hu, f"{name}Trainer")
        trainer = cls(
            model,
            args=cfg(**common),
            forget_dataset=forget,
            retain_dataset=None if method == "grad_ascent" else retain,
            processing_class=tok,
            callbacks=[Timer()],
        )
    loaded = _peak_mib()
    trainer.train()
    return {
        "method": method,
        "lora": lora,
        "rows_per_step": BATCH if method == "grad_ascent" else 2 * BATCH,
        "seconds_per_step": statistics.median(times[WARMUP:]),
        "peak_mib": round(_peak_mib(), 1),
        "peak_mib_at_start_of_training": round(loaded, 1),
        "has_reference_model": getattr(trainer, "ref_model", None) is not None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--child", default=None)
    a = parser.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.lora)))
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from _machine import machine_info

    rows = []
    for m in a.methods:
        cmd = [sys.executable, __file__, "--child", m] + (["--lora"] if a.lora else [])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(f"{m:>12}: {rows[-1]['seconds_per_step']:.2f} s/step, peak {rows[-1]['peak_mib']:.0f} MiB", flush=True)
    base = next(r for r in rows if r["method"] == "sft")
    for r in rows:
        r["time_vs_sft"] = round(r["seconds_per_step"] / base["seconds_per_step"], 3)
        r["peak_vs_sft"] = round(r["peak_mib"] / base["peak_mib"], 3)
    out = RESULTS / ("cost_lora.json" if a.lora else "cost.json")
    RESULTS.mkdir(exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "machine": machine_info()}, indent=2) + "\n")
    print("\n| method | s / step | vs SFT | peak MiB | vs SFT |\n|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['method']} | {r['seconds_per_step']:.2f} | {r['time_vs_sft']:.2f}x | {r['peak_mib']:.0f} | "
            f"{r['peak_vs_sft']:.2f}x |"
        )


if __name__ == "__main__":
    main()
