"""The command behind ``recipes/finetune.py``: fine-tune a target or retain model on the built-in benchmark.

    python recipes/finetune.py --model bundled --num-authors 20 --output outputs/retain --split retain

The library function is :func:`hf_unlearn.trainers.finetune.finetune`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..trainers.finetune import finetune, lineage_step

__all__ = ["finetune", "lineage_step", "main"]


def main(argv: Sequence[str] | None = None) -> None:
    from ..data import build_fictitious_authors

    p = argparse.ArgumentParser(description="Fine-tune a target or retain model on the built-in benchmark.")
    p.add_argument("--model", default="bundled")
    p.add_argument("--output", required=True)
    p.add_argument(
        "--split",
        choices=("target", "retain"),
        default="target",
        help="target: forget + retain authors; retain: retain authors only",
    )
    p.add_argument("--num-authors", type=int, default=100)
    p.add_argument("--epochs", type=float, default=4)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument(
        "--reasoning",
        action="store_true",
        help="train the think format (<think> trace </think> answer): a reasoning model",
    )
    a = p.parse_args(argv)
    bench = build_fictitious_authors(num_authors=a.num_authors)
    rows = bench["retain"] if a.split == "retain" else [*bench["forget"], *bench["retain"]]
    what = "forget + retain authors" if a.split == "target" else "retain authors"
    if a.reasoning:
        from ..data.reasoning import reasoning_rows

        rows, what = reasoning_rows(rows), f"{what}, think format"
    print(
        finetune(
            a.model,
            rows,
            a.output,
            epochs=a.epochs,
            learning_rate=a.learning_rate,
            data_name=f"fictitious-authors ({a.num_authors} authors), {what}",
            recreate=f"python -m hf_unlearn.scripts.finetune --split {a.split} --num-authors {a.num_authors} "
            f"--epochs {a.epochs:g} --learning-rate {a.learning_rate:g}{' --reasoning' if a.reasoning else ''} "
            "--model <parent> --output <folder>",
        )
    )


if __name__ == "__main__":  # pragma: no cover
    main()
