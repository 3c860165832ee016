"""Your documents, your model: unlearning documents on the bundled model, measured by the ``documents`` suite.

    .venv/bin/python benchmarks/documents.py                 # -> results/documents.json, the docs' table
    .venv/bin/python benchmarks/documents.py --rows npo      # one row (the others are read from the JSON)

Set-up: 60 built-in authors' biographies as plain-text documents (``{"text": ...}``, about 105 tokens each): 20 to
forget, 20 to keep (retain), 20 never trained on (holdout). The bundled SmolLM2-135M-Instruct never saw any of them,
so the *target* is the bundled model fine-tuned on the forget and retain documents (cached); the bundled model itself
is the reference that never saw the forget documents (it saw no retain document either, which the forget-vs-holdout
comparison does not read). Rows:

* ``base`` - the bundled model (the reference: PrivLeak 0 by definition);
* ``target`` - before unlearning;
* ``npo`` - NPO + retain NLL on a LoRA adapter (the quality benchmark's output-level settings: r 32 on every linear
  layer, lr 2.5e-4, batch 8), for ``NPO_EPOCHS`` epochs;
* ``rmu`` - RMU at layer 7 on a LoRA adapter of layers 0-7, every real token steered (raw text).

Every row is evaluated by :func:`hf_unlearn.evaluate_documents` with the same blocks (max_length 128: one block per
document), PrivLeak against the ``base`` row's saved result; the suite's time is recorded per row.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import quality as Q  # shared: LoRA and output-level settings, child processes

RESULTS = Path(__file__).parent / "results"
ROWS = ("base", "target", "npo", "rmu")
BENCH = {"num_authors": 60, "forget_fraction": 1 / 3, "holdout_fraction": 1 / 3, "seed": 0}
FINETUNE = {"epochs": 10, "learning_rate": 1e-4, "batch_size": 4}
MAX_LENGTH = 128
NPO_EPOCHS = 10
RMU = {"learning_rate": 1e-3, "max_steps": 40, "per_device_train_batch_size": 4, "warmup_steps": 0}
RMU_LAYER = 7


def documents(bench: Any) -> dict[str, list[dict]]:
    """The biographies of the forget, retain and holdout authors as ``{"text": ...}`` documents."""
    return {s: [{"text": b["prompt"] + b["text"]} for b in bench[f"{s}_bio"]] for s in ("forget", "retain", "holdout")}


def target_dir(docs: dict[str, list[dict]]) -> Path:
    """The bundled model fully fine-tuned on the forget and retain documents (cached by its settings)."""
    import hashlib

    from hf_unlearn.models import cache_root
    from hf_unlearn.trainers.finetune import finetune

    key = hashlib.sha256(json.dumps([docs["forget"], docs["retain"], FINETUNE], sort_keys=True).encode()).hexdigest()
    out = cache_root() / "documents" / key[:12] / "target"
    if not (out / "config.json").is_file():
        finetune(
            "bundled",
            docs["forget"] + docs["retain"],
            out,
            **FINETUNE,
            data_name="60-author biographies: forget and retain documents",
            recreate="`python benchmarks/documents.py`",
        )
    return out


def evaluate(model, tokenizer, docs, reference=None) -> tuple[Any, float]:
    import hf_unlearn as hu

    t0 = time.perf_counter()
    result = hu.evaluate_documents(
        model, tokenizer, **docs, reference=reference, max_length=MAX_LENGTH, max_blocks=None, progress=True
    )
    return result, round(time.perf_counter() - t0, 1)


def train(row: str, model, tokenizer, docs, work: str) -> tuple[Any, dict]:
    """The unlearned model of ``row`` and its settings."""
    from peft import LoraConfig

    import hf_unlearn as hu
    from hf_unlearn.registry import make_callback

    common = {"output_dir": work, "save_strategy": "no", "report_to": [], "logging_steps": 5, "seed": 0}
    common["max_length"] = MAX_LENGTH
    if row == "npo":
        train_args = {**Q.OUTPUT_LEVEL, "num_train_epochs": NPO_EPOCHS}
        trainer = hu.NPOTrainer(
            model,
            args=hu.NPOConfig(**common, **train_args),
            forget_dataset=docs["forget"],
            retain_dataset=docs["retain"],
            processing_class=tokenizer,
            peft_config=LoraConfig(**Q.LORA, task_type="CAUSAL_LM"),
        )
        settings = {**train_args, "lora": Q.LORA, "retain": "NLL on the retain documents"}
    else:
        callback = make_callback("rmu", RMU_LAYER, qa=False)
        # PEFT takes layers_to_transform only with named modules: every linear module of layers 0..L
        linear = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        lora = {**Q.LORA, "target_modules": linear, "layers_to_transform": list(range(RMU_LAYER + 1))}
        trainer = hu.GradDiffTrainer(
            model,
            args=hu.GradDiffConfig(**common, **RMU, forget_coeff=0.0, retain_loss_type="none"),
            forget_dataset=docs["forget"],
            retain_dataset=docs["retain"],
            processing_class=tokenizer,
            peft_config=LoraConfig(**lora, task_type="CAUSAL_LM"),
            callbacks=[callback],
        )
        settings = {**RMU, "layer": RMU_LAYER, "steering_coeff": callback.steering_coeff, "alpha": callback.alpha}
        settings["lora"] = lora
    t0 = time.perf_counter()
    trainer.train()
    settings["train_seconds"] = round(time.perf_counter() - t0, 1)
    settings["steps"] = trainer.state.global_step
    logged = [h for h in trainer.state.log_history if "loss" in h]  # did the objective itself move?
    if logged:
        keep = [k for k in logged[0] if k == "loss" or k.startswith(("loss/", "rmu/"))]
        settings["logged"] = {"first": {k: logged[0][k] for k in keep}, "last": {k: logged[-1][k] for k in keep}}
    return trainer.accelerator.unwrap_model(trainer.model), settings


def child(row: str) -> dict:
    import tempfile

    import hf_unlearn as hu
    from hf_unlearn.evaluation import EvalResult

    bench = hu.build_fictitious_authors(**BENCH)
    docs = documents(bench)
    from hf_unlearn.models import cache_root

    base_file = cache_root() / "documents" / "base_result.json"  # the reference's full result, per-item data: local
    settings: dict[str, Any] = {}
    if row == "base":
        model, tok = hu.load_model("bundled")
        reference = None
    else:
        model, tok = hu.load_model(str(target_dir(docs)))
        reference = EvalResult.load(base_file)
    if row in ("npo", "rmu"):
        with tempfile.TemporaryDirectory() as work:
            model, settings = train(row, model, tok, docs, work)
    result, seconds = evaluate(model.eval(), tok, docs, reference)
    if row == "base":
        base_file.parent.mkdir(parents=True, exist_ok=True)
        result.save(base_file)
    return {"row": row, "settings": settings, "eval_seconds": seconds, "metrics": result.metrics, **_meta(result)}


def _meta(result) -> dict:
    return {"counts": result.meta["counts"], "privleak": result.details.get("privleak")}


COLUMNS = (
    ("forget verbatim ROUGE-L", "forget_verbmem_rouge_l_f1"),
    ("holdout verbatim ROUGE-L", "holdout_verbmem_rouge_l_f1"),
    ("forget NLL", "forget_nll"),
    ("holdout NLL", "holdout_nll"),
    ("retain NLL", "retain_nll"),
    ("MIA AUC (Min-K%)", "mia_min_k_auc"),
    ("MIA AUC (loss)", "mia_loss_auc"),
    ("PrivLeak", "privleak"),
    ("general knowledge", "general_knowledge_accuracy"),
)


def table(rows: list[dict]) -> str:
    head = "| row | " + " | ".join(c for c, _ in COLUMNS) + " | suite time |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for r in rows:
        cells = ["-" if r["metrics"].get(k) is None else f"{r['metrics'][k]:.3f}" for _, k in COLUMNS]
        lines.append(f"| {r['row']} | " + " | ".join(cells) + f" | {r['eval_seconds']:.0f} s |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--rows", nargs="*", default=list(ROWS))
    a = p.parse_args()
    if a.child:
        print("RESULT " + json.dumps(child(a.child)), flush=True)
        return
    from _machine import machine_info

    out = RESULTS / "documents.json"
    saved = json.loads(out.read_text()) if out.is_file() else {"rows": []}
    rows = {r["row"]: r for r in saved["rows"]}
    for row in [r for r in ROWS if r in a.rows]:  # base first: the others read its result as the reference
        rows[row] = Q.run_child(__file__, row)
        data = {"rows": [rows[r] for r in ROWS if r in rows], "benchmark": BENCH, "machine": machine_info()}
        out.write_text(json.dumps(data, indent=1) + "\n")
    print(table([rows[r] for r in ROWS if r in rows]))


if __name__ == "__main__":
    main()
