"""``hf-unlearn eval``: evaluate a model on your documents or on a suite (TOFU, MUSE, MCQ, robustness, reasoning).

hf-unlearn eval --model_name_or_path outputs/mine --suite documents --forget_path docs.jsonl \
    --holdout_path unseen.jsonl
hf-unlearn eval --model_name_or_path bundled --suite tofu --num_authors 20 --output_dir outputs/eval/target
hf-unlearn eval --model_name_or_path outputs/npo --suite tofu --reference_logs outputs/eval/retain/results.json
hf-unlearn eval --model_name_or_path my/model --suite muse --dataset_name muse-news     # needs the Hub
hf-unlearn eval --config my_eval.yaml --per_device_eval_batch_size 8                   # flags override the YAML
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .arguments import BENCHMARK_RENAMES, BenchmarkArguments, CommandParser, DataArguments, Renamed, tofu_split_of

__all__ = ["EvalArguments", "main", "make_parser"]

logger = logging.getLogger("hf_unlearn.eval")

SUITES = ("tofu", "muse", "mcq", "robustness", "reasoning", "documents")
# hf_unlearn.evaluation.robustness.ATTACKS, spelled out so that parsing the command line does not import torch.
ROBUSTNESS_ATTACKS = ["relearn", "quantization", "paraphrase", "in_context", "jailbreak", "probing"]
# Each suite's public dataset (dataset_name), for the old `--dataset hub`.
HUB_DATASET_OF = {"tofu": "tofu", "robustness": "tofu", "mcq": "wmdp", "reasoning": "hub", "documents": "hub"}


@dataclass
class EvalArguments(DataArguments, BenchmarkArguments):
    """What to evaluate, on what, and how (the data and benchmark fields are shared with ``hf-unlearn train``).

    Parameters:
        model_name_or_path: ``bundled``, a Hub id or a local folder (a full model, or an adapter with its card).
        suite: ``documents`` (your data: verbatim memorisation, NLL, MIA, PrivLeak, general knowledge), ``tofu``
            (Prob, ROUGE, Truth Ratio, Forget Quality, Model Utility, MIA), ``muse`` (VerbMem, KnowMem, PrivLeak),
            ``mcq`` (multiple choice, WMDP's form), ``robustness`` (the forget metrics under relearning, quantization,
            paraphrase, in-context, jailbreak and probing attacks) or ``reasoning`` (answers and traces under
            default, ZeroThink and LessThink decoding).
        output_dir: write ``results.json`` here (usable as another run's ``reference_logs``).
        reference_logs: the retain model's saved result, for Forget Quality and PrivLeak.
        reference_model: documents suite: a model that never saw the forget set, scored on the same blocks.
        dtype: the model's dtype (``float32`` on CPU when unset).
        per_device_eval_batch_size: rows per forward; lower it when memory is short.
        max_length: documents suite: block length in tokens.
        max_new_tokens: generation length for ROUGE (200, as open-unlearning).
        generation_budget: cap each split's generation at this multiple of its longest reference answer.
        generate: generate answers (ROUGE); ``--no_generate`` skips it (much faster on CPU).
        mcq_scoring: ``letters`` (lm-eval's WMDP form), ``cloze`` (the options' own probabilities) or ``both``.
        attacks, relearn_steps: robustness suite: the attacks, and the relearning steps of its recovery curve.
        retain_size: built-in TOFU: retain items evaluated.
    """

    model_name_or_path: str | None = field(default=None, metadata={"help": "'bundled', a Hub id or a local folder."})
    suite: str | None = field(default=None, metadata={"help": "The evaluation suite.", "choices": [None, *SUITES]})
    output_dir: str | None = field(
        default=None, metadata={"help": "Write results.json here (usable as --reference_logs)."}
    )
    reference_logs: str | None = field(default=None, metadata={"help": "Retain model's saved result (FQ, PrivLeak)."})
    reference_model: str | None = field(
        default=None, metadata={"help": "documents suite: a model that never saw the forget set (PrivLeak)."}
    )
    dtype: str | None = field(default=None, metadata={"help": "Model dtype, e.g. bfloat16 (default float32 on CPU)."})
    per_device_eval_batch_size: int = field(default=32, metadata={"help": "Rows per forward (lower it if short)."})
    max_length: int = field(default=512, metadata={"help": "documents suite: block length in tokens."})
    max_new_tokens: int = field(default=200, metadata={"help": "Generation length for ROUGE (200, open-unlearning)."})
    generation_budget: float | None = field(
        default=None, metadata={"help": "Cap generation at this multiple of a split's longest reference answer."}
    )
    generate: bool = field(default=True, metadata={"help": "Generate answers (ROUGE); --no_generate skips it."})
    mcq_scoring: str = field(
        default="both",
        metadata={"help": "mcq suite: option letters, cloze or both.", "choices": ["letters", "cloze", "both"]},
    )
    attacks: list[str] = field(
        default_factory=lambda: list(ROBUSTNESS_ATTACKS),
        metadata={"help": f"robustness suite: any of {', '.join(ROBUSTNESS_ATTACKS)} (default: all)."},
    )
    relearn_steps: list[int] = field(
        default_factory=lambda: [0, 5, 10, 25], metadata={"help": "robustness suite: relearning steps of the curve."}
    )
    retain_size: int = field(default=200, metadata={"help": "Built-in TOFU: retain items evaluated."})
    # hf_unlearn 0.1's spellings with no field of their own (see RENAMED): hidden from --help.
    output_file: str | None = field(default=None, metadata={"help": argparse.SUPPRESS})
    muse_corpus: str | None = field(default=None, metadata={"help": argparse.SUPPRESS})


def _old_dataset(value: str) -> str:
    """``--dataset builtin`` / ``hub``: the built-in benchmark, or the suite's public dataset (resolved later)."""
    return "fictitious-authors" if value == "builtin" else "hub"


RENAMED = {
    **BENCHMARK_RENAMES,
    "model": Renamed("model_name_or_path"),
    "output": Renamed("output_file", instead="--output_dir DIR (it writes DIR/results.json)"),
    "batch_size": Renamed("per_device_eval_batch_size"),
    "dataset": Renamed(
        "dataset_name", convert=_old_dataset, note="(builtin: fictitious-authors; hub: tofu, wmdp, muse-news.)"
    ),
    "tofu_forget": Renamed("tofu_split", convert=tofu_split_of),
    "forget": Renamed("forget_path"),
    "holdout": Renamed("holdout_path"),
    "retain": Renamed("retain_path"),
}


def make_parser(prog: str = "hf-unlearn eval") -> CommandParser:
    return CommandParser(
        (EvalArguments,),
        prog=prog,
        description="Evaluate a model: your documents, or the TOFU, MUSE, MCQ, robustness or reasoning suite.",
        renamed=RENAMED,
        epilog=__doc__.split("\n\n", 1)[1].split('"""')[0],
    )


def _dataset(args: EvalArguments) -> str:
    """The data source: a built-in name, a suite's public dataset, or the user's data (a Hub id, a file, a folder)."""
    name = args.dataset_name
    if args.muse_corpus:
        warnings.warn(
            "--muse_corpus is deprecated: use --dataset_name muse-news or muse-books. The old spelling works until "
            "hf_unlearn 0.3.",
            FutureWarning,
            stacklevel=3,
        )
    if name == "hub":  # the old --dataset hub: the suite's own public dataset
        name = f"muse-{args.muse_corpus or 'news'}" if args.suite == "muse" else HUB_DATASET_OF[args.suite]
    if name is None:
        user_paths = args.forget_path or args.holdout_path or args.retain_path
        return "files" if user_paths else "fictitious-authors"
    return name


def _eval_sets(args: EvalArguments) -> dict:
    """The evaluation sets of the suite: built-in benchmark, the public datasets from the Hub, or (documents suite)
    the user's own data."""
    from .. import sources

    name = _dataset(args)
    if name == "hub":
        raise ValueError(
            f"The {args.suite} suite has no public dataset on the Hub: "
            + (
                "pass your data with --forget_path and --holdout_path (files, folders or Hub ids) or --dataset_name."
                if args.suite == "documents"
                else "R-TOFU's reasoning data is not on the Hub: load it from a clone of its repository with "
                "hf_unlearn.data.load_rtofu(split, data_dir=...) and call evaluate_reasoning, or use the built-in "
                "benchmark (leave --dataset_name unset)."
            )
        )
    builtin = {"fictitious-authors", "tofu", "muse-news", "muse-books", "wmdp"}
    if name not in builtin:  # the user's data
        if args.suite != "documents":
            given = "--forget_path / --holdout_path / --retain_path" if name == "files" else f"--dataset_name {name}"
            raise ValueError(
                f"{given} is your own data, which the documents suite evaluates: add --suite documents (the "
                f"{args.suite} suite reads its benchmark: fictitious-authors, tofu, muse-news, muse-books or wmdp)."
            )
        data = sources.training_data(
            name,
            forget_path=args.forget_path,
            retain_path=args.retain_path,
            holdout_path=args.holdout_path,
            dataset_config=args.dataset_config,
            forget_split=args.forget_split,
            retain_split=args.retain_split,
            holdout_split=args.holdout_split,
        )
        return {"forget": data.forget, "holdout": data.holdout, "retain": data.retain}
    if args.forget_path or args.holdout_path or args.retain_path:
        raise ValueError(
            "--forget_path, --holdout_path and --retain_path are your data: use them with --suite documents "
            f"(and without --dataset_name {name})."
        )
    if name == "fictitious-authors":
        from ..data.fictitious_authors import build_fictitious_authors

        bench = build_fictitious_authors(**args.benchmark_kwargs())
        return sources.evaluation_splits(args.suite, "builtin", benchmark=bench, retain_size=args.retain_size)
    wanted = {"tofu": ("tofu", "robustness"), "wmdp": ("mcq",), "muse-news": ("muse",), "muse-books": ("muse",)}
    if args.suite not in wanted[name]:
        raise ValueError(f"--dataset_name {name} is for the {' or '.join(wanted[name])} suite, not {args.suite}.")
    return sources.evaluation_splits(
        args.suite,
        "hub",
        retain_size=args.retain_size,
        tofu_forget=args.tofu_split.removeprefix("forget"),
        muse_corpus=name.removeprefix("muse-") if name.startswith("muse-") else "news",
    )


def _output_path(args: EvalArguments) -> Path | None:
    if args.output_file and args.output_dir:
        raise ValueError("Give --output_dir (results.json inside it) or the old --output FILE, not both.")
    if args.output_file:
        if os.path.isdir(args.output_file):
            raise ValueError(
                f"--output {args.output_file} is a folder; give a file path, or --output_dir {args.output_file}."
            )
        return Path(args.output_file)
    if args.output_dir:
        if Path(args.output_dir).is_file():
            raise ValueError(f"--output_dir {args.output_dir} is a file; give a folder (results.json goes inside).")
        return Path(args.output_dir) / "results.json"
    return None


def evaluate(args: EvalArguments):
    """Run ``args.suite`` on ``args.model_name_or_path``; the :class:`~hf_unlearn.evaluation.EvalResult`."""
    from ..evaluation import EvalResult, evaluate_mcq, evaluate_muse, evaluate_tofu
    from ..evaluation.mcq import WMDP_DESCRIPTIONS
    from ..models import load_model

    batch = args.per_device_eval_batch_size
    reference = EvalResult.load(args.reference_logs) if args.reference_logs else None  # a bad log fails first
    sets = _eval_sets(args)
    model, tokenizer = load_model(args.model_name_or_path, dtype=args.dtype)
    suite = args.suite
    if suite == "tofu":
        return evaluate_tofu(
            model,
            tokenizer,
            **sets,
            reference=reference,
            generate=args.generate,
            max_new_tokens=args.max_new_tokens,
            generation_budget=args.generation_budget,
            batch_size=batch,
            progress=True,
        )
    if suite == "robustness":
        from ..evaluation import evaluate_robustness

        return evaluate_robustness(
            model,
            tokenizer,
            **sets,
            attacks=args.attacks,
            reference=reference,
            relearn_steps=args.relearn_steps,
            batch_size=batch,
            progress=True,
        )
    if suite == "reasoning":
        from ..evaluation import evaluate_reasoning

        return evaluate_reasoning(
            model, tokenizer, **sets, max_new_tokens=args.max_new_tokens, batch_size=batch, progress=True
        )
    if suite == "muse":
        return evaluate_muse(model, tokenizer, **sets, reference=reference, batch_size=batch, progress=True)
    if suite == "documents":
        from ..evaluation import evaluate_documents

        reference_model = load_model(args.reference_model, dtype=args.dtype)[0] if args.reference_model else None
        return evaluate_documents(
            model,
            tokenizer,
            **sets,
            reference=reference,
            reference_model=reference_model,
            max_length=args.max_length,
            batch_size=batch,
            progress=True,
        )
    result = EvalResult("mcq")
    forms = ["letters", "cloze"] if args.mcq_scoring == "both" else [args.mcq_scoring]
    for name, rows in sets.items():
        desc = WMDP_DESCRIPTIONS.get(name.removeprefix("wmdp_"), "")
        for form in forms:
            label = f"{name}_cloze" if form == "cloze" else name
            logger.info(f"scoring {len(rows)} {name} questions ({form}) ...")
            part = evaluate_mcq(
                model,
                tokenizer,
                rows,
                description=desc,
                name=label,
                batch_size=batch,
                scoring=form,
                progress=f"{label} questions",
            )
            result.metrics.update(part.metrics)
            result.per_item.update(part.per_item)
            result.meta.setdefault("items", {}).update(part.meta["items"])
    return result


def main(argv: Sequence[str] | None = None) -> int:
    from .. import set_verbosity

    set_verbosity(os.environ.get("HF_UNLEARN_VERBOSITY", "info"))
    parser = make_parser()
    (args,) = parser.parse_args_and_config(list(sys.argv[1:] if argv is None else argv))
    missing = [f"--{k}" for k in ("model_name_or_path", "suite") if getattr(args, k) is None]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    if args.per_device_eval_batch_size < 1:
        raise ValueError(f"--per_device_eval_batch_size must be >= 1, got {args.per_device_eval_batch_size}.")
    unknown = sorted(set(args.attacks) - set(ROBUSTNESS_ATTACKS))
    if unknown:
        raise ValueError(f"--attacks: unknown {', '.join(unknown)}; choose from {', '.join(ROBUSTNESS_ATTACKS)}.")
    output = _output_path(args)  # checked before the evaluation, not after it
    t0 = time.perf_counter()
    result = evaluate(args)
    result.meta["model"] = str(args.model_name_or_path)
    seconds = time.perf_counter() - t0
    if args.suite == "robustness":
        from ..evaluation.robustness import robustness_table

        print(f"robustness evaluation of {args.model_name_or_path} ({seconds:.0f} s)")
        print(robustness_table(result))
    else:
        print(result.table(f"{args.suite} evaluation of {args.model_name_or_path} ({seconds:.0f} s)"))
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        logger.info(f"saved the full result (usable as --reference_logs) to {result.save(output)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
