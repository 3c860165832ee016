"""The ``hf-unlearn`` command: one subcommand per task, each parsed by TRL's ``TrlParser`` from dataclasses (a YAML
``--config`` plus flags that override it) with the names TRL and transformers use.

Examples::

    hf-unlearn demo                                        # offline: bundled model + built-in benchmark
    hf-unlearn train --config qlora_own_documents          # your documents (a config shipped with hf_unlearn)
    hf-unlearn train --config demo --learning_rate 5e-4    # flags override the YAML
    hf-unlearn train --config npo_tofu --accelerate_config zero3 --num_processes 8     # through accelerate launch
    hf-unlearn eval --model_name_or_path outputs/mine --suite documents --forget_path docs.jsonl \
        --holdout_path unseen.jsonl
    hf-unlearn eval --model_name_or_path bundled --suite tofu --num_authors 20 --output_dir outputs/eval/target
    hf-unlearn finetune --split retain --num_authors 20 --output_dir outputs/retain
    hf-unlearn task-vector --config task_vector_tofu
    hf-unlearn report outputs/npo                          # outputs/npo/report.html (local only)
    hf-unlearn push outputs/npo me/smollm2-npo-unlearned   # private repository unless --hub_private_repo false
    hf-unlearn data export outputs/fictitious-authors --format both
    hf-unlearn recipes                                     # the shipped configs

Every command takes --help. hf_unlearn 0.1's spellings (--model, --output, --batch-size, --dataset, ...) still work
until 0.3, with a warning naming the new one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "main"]

# name -> (module under hf_unlearn.scripts, one-line help)
COMMANDS = {
    "demo": ("demo", "offline end-to-end demo: fine-tune, unlearn, evaluate, write outputs/demo/"),
    "train": ("unlearn", "unlearn with any method: hf-unlearn train --config NAME_OR_PATH [--flag value ...]"),
    "eval": ("evaluate", "evaluate a model: your documents, or the TOFU, MUSE, MCQ, robustness or reasoning suite"),
    "finetune": ("finetune", "fine-tune a target or retain model on the built-in benchmark"),
    "task-vector": ("task_vector", "weight-space unlearning: task-vector negation and Selective Task Arithmetic"),
    "report": ("report", "write OUTPUT_DIR/report.html: results, curves, MIA, per-item table (kept local)"),
    "push": ("push", "upload a saved unlearned model or adapter (model files, card, plot only; private)"),
    "data": ("data", "data export: write the built-in benchmark as files"),
    "recipes": ("recipes", "list, print or copy the configs shipped with hf_unlearn"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-unlearn",
        description="LLM unlearning for the Hugging Face stack.",
        epilog=(__doc__ or "").split("Examples::", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    for name, (_, text) in COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def _quiet_third_parties() -> None:
    """Messages users cannot act on, from packages hf_unlearn imports (see ``hf_unlearn._logging``)."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    from . import _logging  # noqa: F401  (installs the filters)


def main(argv: Sequence[str] | None = None) -> int:
    import importlib

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        parser.parse_args(argv[:1])  # argparse's own "invalid choice" message and exit code 2
    _quiet_third_parties()
    module = importlib.import_module(f"hf_unlearn.scripts.{COMMANDS[argv[0]][0]}")
    try:  # (deprecated spellings warn through Python's default filter: FutureWarning is shown, once per place)
        return int(module.main(argv[1:]) or 0)
    except (ValueError, FileExistsError, OSError, RuntimeError) as err:
        print(f"hf-unlearn {argv[0]}: error: {err}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as err:  # a launched process failed; it printed why
        return err.returncode or 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
