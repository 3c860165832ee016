"""Fine-tuning the models TOFU-style evaluation needs: a *target* that knows every author and a *retain* model that
never saw the forget authors (its results are the reference for Forget Quality and PrivLeak); also how a benchmark
teaches a model the documents it will unlearn.

Supervised fine-tuning on QA rows with the same chat-template tokenisation as unlearning and evaluation (labels =
answer + end-of-turn), through ``transformers.Trainer``. Outputs are written to a temporary folder and moved into place,
so an interrupted run never leaves a half-written model that looks complete.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["finetune", "lineage_step"]


def lineage_step(
    *,
    data_name: str | None,
    rows: int,
    epochs: float,
    learning_rate: float,
    seed: int,
    folder: str | os.PathLike[str],
    recreate: str | None,
    lora: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The lineage record of one :func:`finetune` run (see :mod:`hf_unlearn.hub.lineage`)."""
    from ..hub.lineage import cache_relative

    step = {
        "kind": "fine-tune",
        "data": f"{data_name or 'QA rows'}, {rows} rows",
        "epochs": epochs,
        "learning_rate": learning_rate,
        "seed": seed,
        "cache": cache_relative(folder),
        "recreate": recreate,
    }
    if lora is not None:  # absent for full fine-tuning, so earlier lineage files stay equal
        step["lora"] = {**lora, "merged": True}
    return step


def finetune(
    model_name_or_path: str,
    rows: Sequence[Mapping[str, Any]],
    output_dir: str | os.PathLike[str],
    *,
    epochs: float = 4,
    learning_rate: float = 1e-4,
    batch_size: int = 16,
    system_prompt: str | None = None,
    seed: int = 0,
    progress: bool = True,
    data_name: str | None = None,
    recreate: str | None = None,
    lora: Mapping[str, Any] | None = None,
) -> Path:
    """Full fine-tuning of ``model_name_or_path`` on QA ``rows``; saves model and tokenizer to ``output_dir``.

    ``lora`` (``LoraConfig`` keyword arguments, e.g. ``{"r": 32, "lora_alpha": 64}``) trains a LoRA adapter on every
    linear layer instead and saves it merged, as full weights: a low-rank update changes the base model less ("LoRA
    Learns Less and Forgets Less", arXiv:2405.09673).

    The folder also gets ``hf_unlearn_lineage.json``: the parent's lineage plus this fine-tune (``data_name``, the row
    count, the schedule, and ``recreate``, how to make the same folder again), so that what is trained on it can name
    its Hub root and be re-created elsewhere (see :mod:`hf_unlearn.hub.lineage`).
    """
    import torch
    from transformers import Trainer, TrainingArguments

    from ..atomic import atomic_directory, temporary_sibling_prefix
    from ..data import DataCollatorForUnlearning, tokenize_rows
    from ..hub.lineage import extend_lineage, write_lineage
    from ..models import load_model

    target = Path(output_dir)
    model, tokenizer = load_model(model_name_or_path)
    if lora is not None:
        from peft import LoraConfig, get_peft_model
        from transformers import set_seed

        set_seed(seed)  # the adapter's initialisation happens before the Trainer seeds anything
        model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", target_modules="all-linear", **lora))
    data = [
        {"input_ids": r["input_ids"], "labels": r["labels"]}
        for r in tokenize_rows(rows, tokenizer, system_prompt=system_prompt)
    ]
    with (
        atomic_directory(target) as tmp,
        tempfile.TemporaryDirectory(prefix=temporary_sibling_prefix(target) + "work.", dir=target.parent) as work,
    ):
        args = TrainingArguments(
            output_dir=str(Path(work) / "trainer"),
            per_device_train_batch_size=batch_size,
            num_train_epochs=epochs,
            learning_rate=learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=0.05,
            weight_decay=0.0,
            logging_steps=5,
            save_strategy="no",
            report_to=[],
            seed=seed,
            use_cpu=not torch.cuda.is_available(),
            disable_tqdm=not progress,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=data,
            data_collator=DataCollatorForUnlearning(pad_token_id=tokenizer.pad_token_id),
        )
        trainer.train()
        if lora is not None:
            model = model.merge_and_unload()
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        step = lineage_step(
            data_name=data_name,
            rows=len(data),
            epochs=epochs,
            learning_rate=learning_rate,
            seed=seed,
            folder=target,
            recreate=recreate,
            lora=lora,
        )
        write_lineage(tmp, extend_lineage(model_name_or_path, step))
    return target
