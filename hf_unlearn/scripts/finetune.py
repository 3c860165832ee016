"""``hf-unlearn finetune``: fine-tune a target or retain model on the built-in benchmark (what unlearning starts from,
and what it is compared with).

    hf-unlearn finetune --model_name_or_path bundled --num_authors 20 --split retain --output_dir outputs/retain
    hf-unlearn finetune --split target --num_train_epochs 4 --learning_rate 1e-4 --output_dir outputs/target

The library function is :func:`hf_unlearn.trainers.finetune.finetune`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..trainers.finetune import finetune, lineage_step
from .arguments import BenchmarkArguments, CommandParser, Renamed

__all__ = ["FinetuneArguments", "finetune", "lineage_step", "main", "make_parser"]


@dataclass
class FinetuneArguments(BenchmarkArguments):
    """Which model, on which authors, for how long.

    Parameters:
        model_name_or_path: the model to fine-tune: ``bundled``, a Hub id or a local folder.
        output_dir: where the fine-tuned model goes (with ``hf_unlearn_lineage.json``: how to make it again).
        split: ``target`` (forget + retain authors: the model to unlearn from) or ``retain`` (retain authors only:
            the model unlearning should end up like).
        num_train_epochs, learning_rate, per_device_train_batch_size, seed: as in ``TrainingArguments``.
        reasoning: train the think format (``<think> trace </think> answer``): a reasoning model.
    """

    model_name_or_path: str = field(default="bundled", metadata={"help": "'bundled', a Hub id or a local folder."})
    output_dir: str | None = field(default=None, metadata={"help": "Where the fine-tuned model goes (required)."})
    split: str = field(
        default="target",
        metadata={
            "help": "target: forget + retain authors; retain: retain authors only.",
            "choices": ["target", "retain"],
        },
    )
    num_train_epochs: float = field(default=4.0, metadata={"help": "Passes over the rows."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Learning rate (full fine-tuning)."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Rows per step."})
    seed: int = field(default=0, metadata={"help": "Training seed."})
    reasoning: bool = field(default=False, metadata={"help": "Train the think format: a reasoning model."})


RENAMED = {  # (no --seed here: it is the training seed, as in TrainingArguments)
    "model": Renamed("model_name_or_path"),
    "output": Renamed("output_dir"),
    "epochs": Renamed("num_train_epochs"),
}


def make_parser(prog: str = "hf-unlearn finetune") -> CommandParser:
    return CommandParser(
        (FinetuneArguments,),
        prog=prog,
        description="Fine-tune a target or retain model on the built-in benchmark.",
        renamed=RENAMED,
    )


def main(argv: Sequence[str] | None = None) -> int:
    from .. import set_verbosity
    from ..data import build_fictitious_authors

    set_verbosity(os.environ.get("HF_UNLEARN_VERBOSITY", "info"))
    parser = make_parser()
    (a,) = parser.parse_args_and_config(list(sys.argv[1:] if argv is None else argv))
    if not a.output_dir:
        parser.error("the following arguments are required: --output_dir")
    bench = build_fictitious_authors(**a.benchmark_kwargs())
    rows = bench["retain"] if a.split == "retain" else [*bench["forget"], *bench["retain"]]
    what = "forget + retain authors" if a.split == "target" else "retain authors"
    if a.reasoning:
        from ..data.reasoning import reasoning_rows

        rows, what = reasoning_rows(rows), f"{what}, think format"
    benchmark = " ".join(f"--{k} {v}" for k, v in a.benchmark_kwargs().items() if k != "seed")
    print(
        finetune(
            a.model_name_or_path,
            rows,
            a.output_dir,
            epochs=a.num_train_epochs,
            learning_rate=a.learning_rate,
            batch_size=a.per_device_train_batch_size,
            seed=a.seed,
            data_name=f"fictitious-authors ({a.num_authors} authors), {what}",
            recreate=f"hf-unlearn finetune --split {a.split} {benchmark} --benchmark_seed {a.benchmark_seed} "
            f"--num_train_epochs {a.num_train_epochs:g} --learning_rate {a.learning_rate:g} "
            f"--per_device_train_batch_size {a.per_device_train_batch_size} --seed {a.seed}"
            f"{' --reasoning' if a.reasoning else ''} --model_name_or_path <parent> --output_dir <folder>",
        )
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
