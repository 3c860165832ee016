"""Weight-space unlearning: task-vector negation (Ilharco et al. 2023, arXiv 2212.04089; MUSE's task-vector
baseline, arXiv 2407.06460) and Selective Task Arithmetic (Tian et al. 2024, arXiv 2411.16139).

The MUSE recipe in two calls::

    from hf_unlearn.task_arithmetic import negate_checkpoint, reinforce

    reinforce("target/", forget_rows, "reinforced/")                # fine-tune the target further on the forget set
    negate_checkpoint("target/", "reinforced/", "unlearned/", scale=1.0)   # target - scale * (reinforced - target)

Both folders are read tensor by tensor and the result is written as it is computed, so memory stays at a few tensors.
With ``masks=sta_masks(sta_importance(...))`` the same call is Selective Task Arithmetic.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .checkpoint import Checkpoint, SafetensorsStreamWriter
from .lora import lora_task_vector, merge_lora, negate_lora_adapter
from .sta import ScaleChoice, choose_scale, contrast_masks, sta_importance, sta_masks, sweep_negation
from .vector import TaskVector, check_compatible, negate_checkpoint, stream_checkpoint

__all__ = [
    "Checkpoint",
    "SafetensorsStreamWriter",
    "ScaleChoice",
    "TaskVector",
    "check_compatible",
    "choose_scale",
    "contrast_masks",
    "lora_task_vector",
    "merge_lora",
    "negate_checkpoint",
    "negate_lora_adapter",
    "reinforce",
    "sta_importance",
    "sta_masks",
    "stream_checkpoint",
    "sweep_negation",
]


def reinforce(
    target: str | os.PathLike[str],
    forget_rows: Sequence[Mapping[str, Any]],
    output_dir: str | os.PathLike[str],
    *,
    epochs: float = 5,
    learning_rate: float = 1e-5,
    batch_size: int = 8,
    seed: int = 0,
) -> Path:
    """Fine-tune ``target`` further on the forget rows (full fine-tuning): the "reinforced" model of MUSE's task
    vector recipe, whose difference from the target is the forget task's vector. Defaults are the MUSE baseline
    code's (lr 1e-5, 5 epochs); the folder is written atomically."""
    from ..trainers.finetune import finetune

    if Path(output_dir).resolve() == Path(target).resolve():
        raise ValueError("The reinforced model must go to another folder than the target.")
    return finetune(
        str(target),
        forget_rows,
        output_dir,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        seed=seed,
        progress=False,
    )
