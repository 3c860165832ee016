"""The ``hf-unlearn`` command.

Examples::

    hf-unlearn demo                                  # offline: bundled model + built-in benchmark
    hf-unlearn data export outputs/fictitious-authors --format both
    hf-unlearn data export /tmp/fa --num-authors 20 --qa-per-author 8 --seed 1
    hf-unlearn eval --model bundled --suite tofu --num-authors 20 --output outputs/eval/target.json
    hf-unlearn eval --model outputs/npo --suite tofu --num-authors 20 --reference-logs outputs/eval/retain.json
    hf-unlearn eval --model bundled --suite mcq --num-authors 20
    hf-unlearn eval --model outputs/npo --suite robustness --num-authors 20 --reference-logs retain-rob.json
    hf-unlearn eval --model outputs/reasoning-npo --suite reasoning --num-authors 20
    hf-unlearn eval --model my/model --suite muse --dataset hub      # muse-bench/MUSE-News (needs the Hub)
    hf-unlearn eval --model outputs/mine --suite documents --forget docs.jsonl --holdout unseen.jsonl
    hf-unlearn train --config recipes/configs/demo.yaml --learning_rate 5e-4   # the recipe; flags override YAML
    hf-unlearn push outputs/npo me/smollm2-npo-unlearned             # private repo unless --public
    hf-unlearn task-vector --target outputs/target --reinforced outputs/reinforced --output outputs/tv --sweep 0.5,1,2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

# hf_unlearn.evaluation.robustness.ATTACKS, spelled out so that parsing the command line does not import torch.
ROBUSTNESS_ATTACKS = ("relearn", "quantization", "paraphrase", "in_context", "jailbreak", "probing")

__all__ = ["main"]


def _add_benchmark_args(p: argparse.ArgumentParser, *, num_authors: int) -> None:
    from .data.fictitious_authors import FictitiousAuthorsConfig

    d = FictitiousAuthorsConfig()
    p.add_argument("--num-authors", type=int, default=num_authors, help=f"authors (default {num_authors})")
    p.add_argument("--qa-per-author", type=int, default=d.qa_per_author, help="facts asked per author (max 12)")
    p.add_argument("--forget-fraction", type=float, default=d.forget_fraction, help="share of forget authors")
    p.add_argument("--holdout-fraction", type=float, default=d.holdout_fraction, help="share of never-trained authors")
    p.add_argument("--seed", type=int, default=d.seed, help="generator seed (same seed, same bytes)")


def _benchmark(args: argparse.Namespace):
    from .data.fictitious_authors import build_fictitious_authors

    return build_fictitious_authors(
        num_authors=args.num_authors,
        qa_per_author=args.qa_per_author,
        forget_fraction=args.forget_fraction,
        holdout_fraction=args.holdout_fraction,
        seed=args.seed,
    )


def _cmd_data_export(args: argparse.Namespace) -> int:
    bench = _benchmark(args)
    path = bench.export(args.directory, format=args.format, overwrite=args.overwrite)
    counts = ", ".join(f"{k} {v}" for k, v in bench.metadata()["num_rows"].items())
    print(f"Wrote fictitious-authors ({args.format}) to {path}: {counts}.")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .scripts.demo import run_demo

    run_demo(
        args.output_dir,
        num_authors=args.num_authors,
        unlearn_epochs=args.unlearn_epochs,
        unlearn_lr=args.unlearn_lr,
        overwrite=args.overwrite,
    )
    return 0


def _eval_sets(args: argparse.Namespace) -> dict:
    """The evaluation sets of a suite: built-in benchmark, the public datasets from the Hub, or (documents suite) the
    user's own files or Hub datasets."""
    from .sources import evaluation_splits

    given = {s: getattr(args, s, None) for s in ("forget", "holdout", "retain")}
    if any(given.values()):
        if args.suite != "documents":
            raise ValueError("--forget, --holdout and --retain are the documents suite's data: add --suite documents.")
        if not given["forget"]:
            raise ValueError("The documents suite needs --forget (the rows that were unlearned).")
        from .data.loading import load_rows

        return {name: load_rows(source) for name, source in given.items() if source}

    return evaluation_splits(
        args.suite,
        args.dataset,
        benchmark=_benchmark(args) if args.dataset == "builtin" else None,
        retain_size=args.retain_size,
        tofu_forget=args.tofu_forget,
        muse_corpus=args.muse_corpus,
    )


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import EvalResult, evaluate_mcq, evaluate_muse, evaluate_tofu
    from .evaluation.mcq import WMDP_DESCRIPTIONS
    from .models import load_model

    t0 = time.perf_counter()
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}.")
    if args.output and os.path.isdir(args.output):  # checked before the evaluation, not after it
        raise ValueError(f"--output {args.output} is a folder; give a file path such as {args.output}/result.json.")
    reference = EvalResult.load(args.reference_logs) if args.reference_logs else None  # a bad log fails first
    sets = _eval_sets(args)
    model, tokenizer = load_model(args.model, dtype=args.dtype)
    if args.suite == "tofu":
        result = evaluate_tofu(
            model,
            tokenizer,
            **sets,
            reference=reference,
            generate=not args.no_generate,
            max_new_tokens=args.max_new_tokens,
            generation_budget=args.generation_budget,
            batch_size=args.batch_size,
            progress=True,
        )
    elif args.suite == "robustness":
        from .evaluation import evaluate_robustness

        result = evaluate_robustness(
            model,
            tokenizer,
            **sets,
            attacks=args.attacks,
            reference=reference,
            relearn_steps=args.relearn_steps,
            batch_size=args.batch_size,
            progress=True,
        )
    elif args.suite == "reasoning":
        from .evaluation import evaluate_reasoning

        result = evaluate_reasoning(
            model, tokenizer, **sets, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, progress=True
        )
    elif args.suite == "muse":
        result = evaluate_muse(model, tokenizer, **sets, reference=reference, batch_size=args.batch_size, progress=True)
    elif args.suite == "documents":
        from .evaluation import evaluate_documents

        reference_model = load_model(args.reference_model, dtype=args.dtype)[0] if args.reference_model else None
        result = evaluate_documents(
            model,
            tokenizer,
            **sets,
            reference=reference,
            reference_model=reference_model,
            max_length=args.max_length,
            batch_size=args.batch_size,
            progress=True,
        )
    else:
        result = EvalResult("mcq")
        for name, rows in sets.items():
            desc = WMDP_DESCRIPTIONS.get(name.removeprefix("wmdp_"), "")
            forms = ["letters", "cloze"] if args.mcq_scoring == "both" else [args.mcq_scoring]
            for form in forms:
                label = f"{name}_cloze" if form == "cloze" else name
                print(f"Scoring {len(rows)} {name} questions ({form}) ...", flush=True)
                part = evaluate_mcq(
                    model,
                    tokenizer,
                    rows,
                    description=desc,
                    name=label,
                    batch_size=args.batch_size,
                    scoring=form,
                    progress=f"{label} questions",
                )
                result.metrics.update(part.metrics)
                result.per_item.update(part.per_item)
                result.meta.setdefault("items", {}).update(part.meta["items"])
    result.meta["model"] = str(args.model)
    if args.suite == "robustness":
        from .evaluation.robustness import robustness_table

        print(f"robustness evaluation of {args.model} ({time.perf_counter() - t0:.0f} s)")
        print(robustness_table(result))
    else:
        print(result.table(f"{args.suite} evaluation of {args.model} ({time.perf_counter() - t0:.0f} s)"))
    if args.output:
        print(f"Saved the full result (usable as --reference-logs) to {result.save(args.output)}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .scripts.unlearn import main as recipe

    recipe(args.recipe_args)
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from .hub import push_unlearned

    info = push_unlearned(
        args.directory,
        args.repo_id,
        private=not args.public,
        token=args.token,
        merge=args.merge,
        base_repo_id=args.base_repo,
        allow_forget_features=args.allow_forget_features,
    )
    print(f"Pushed {args.directory} to {args.repo_id} ({'public' if args.public else 'private'}): {info}")
    if args.base_repo:
        print(f"Pushed its base model to {args.base_repo} (private: it still holds what the adapter removes).")
    return 0


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _yaml_defaults(sub: argparse.ArgumentParser, path: str) -> None:
    """Use a YAML mapping (keys as the long option names, ``-`` or ``_``) as defaults of ``sub``."""
    import yaml

    with open(path) as fh:
        try:
            config = yaml.safe_load(fh) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"{path} is not valid YAML: {err}".replace("\n", " ")) from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a mapping of options (key: value lines).")
    known = {a.dest for a in sub._actions}
    values = {str(k).replace("-", "_"): v for k, v in config.items()}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path}: unknown options {', '.join(unknown)}.")
    if isinstance(values.get("sweep"), str):
        values["sweep"] = _floats(values["sweep"])
    sub.set_defaults(**values)


def _cmd_task_vector(args: argparse.Namespace) -> int:
    from .scripts.task_vector import run

    bench = _benchmark(args)
    done = run(
        target=args.target,
        reinforced=args.reinforced,
        output=args.output,
        forget_rows=bench["forget"],
        utility_rows=bench["general_knowledge"],
        scale=args.scale,
        sweep=args.sweep or (),
        tolerance=args.tolerance,
        sta_keep=args.sta_keep,
        sta_importance=args.sta_importance,
        sta_granularity=args.sta_granularity,
        sta_batches=args.sta_batches,
        reinforce_epochs=args.reinforce_epochs,
        reinforce_lr=args.reinforce_lr,
        overwrite=args.overwrite,
    )
    print(f"Wrote {args.output} (scale {done['scale']:g}); evaluate it with: hf-unlearn eval --model {args.output} ...")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-unlearn",
        description="LLM unlearning for the Hugging Face stack.",
        epilog=__doc__.split("Examples::", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="offline end-to-end demo: fine-tune, unlearn, evaluate, write outputs/demo/")
    demo.add_argument("--output-dir", default="outputs/demo", help="where the adapter, results and card go")
    demo.add_argument("--num-authors", type=int, default=20, help="benchmark size (default 20: 2 forget authors)")
    demo.add_argument("--unlearn-epochs", type=float, default=5, help="NPO epochs over the forget set")
    demo.add_argument("--unlearn-lr", type=float, default=2.5e-4, help="NPO learning rate (LoRA)")
    demo.add_argument("--overwrite", action="store_true", help="replace an output folder that is not a demo run")
    demo.set_defaults(func=_cmd_demo)

    ev = sub.add_parser(
        "eval", help="evaluate a model: your documents, TOFU, MUSE, MCQ, robustness or reasoning suites"
    )
    ev.add_argument("--model", required=True, help="'bundled', a Hub id or a local folder")
    ev.add_argument(
        "--suite",
        choices=("tofu", "muse", "mcq", "robustness", "reasoning", "documents"),
        required=True,
        help="tofu: Prob, ROUGE, Truth Ratio, FQ, MU, MIA; muse: VerbMem, KnowMem, PrivLeak; mcq: multiple choice; "
        "robustness: forget metrics under relearning, quantization, rephrasing, in-context, jailbreak and probing; "
        "reasoning: answers and traces under default, ZeroThink and LessThink decoding; documents: your data "
        "(--forget, --holdout, --retain): verbatim memorisation, NLL, MIA, PrivLeak, general knowledge",
    )
    for split, what in (
        ("forget", "the rows that were unlearned"),
        ("holdout", "text of the same kind the model never saw (MIA, PrivLeak)"),
        ("retain", "rows to keep"),
    ):
        ev.add_argument(
            f"--{split}", default=None, help=f"documents suite: {what}, as a file, a folder or a Hub dataset id"
        )
    ev.add_argument(
        "--reference_model",
        "--reference-model",
        default=None,
        help="documents suite: a model that never saw the forget set, scored on the same blocks for PrivLeak",
    )
    ev.add_argument("--max_length", "--max-length", type=int, default=512, help="documents suite: block length")
    ev.add_argument("--dataset", choices=("builtin", "hub"), default="builtin", help="data source (default builtin)")
    ev.add_argument("--reference-logs", default=None, help="retain model's saved result (Forget Quality, PrivLeak)")
    ev.add_argument("--output", default=None, help="write the full result as JSON (reusable as --reference-logs)")
    ev.add_argument("--dtype", default=None, help="model dtype, e.g. bfloat16 (default: float32 on CPU)")
    ev.add_argument(
        "--batch-size", type=int, default=32, help="rows per forward (default 32; lower it if memory is short)"
    )
    ev.add_argument(
        "--max-new-tokens", type=int, default=200, help="TOFU generation length for ROUGE (200 as open-unlearning)"
    )
    ev.add_argument(
        "--generation-budget",
        type=float,
        default=None,
        help="cap each split's generation at this multiple of its longest reference answer (e.g. 2.0; default: "
        "--max-new-tokens for every question)",
    )
    ev.add_argument("--no-generate", action="store_true", help="skip generation (no ROUGE): much faster on CPU")
    ev.add_argument(
        "--mcq-scoring",
        choices=["letters", "cloze", "both"],
        default="both",
        help="MCQ suite: option-letter likelihood (lm-eval's WMDP form), the options' own probabilities as answers "
        "(metrics named <set>_cloze_*), or both (default)",
    )
    ev.add_argument(
        "--attacks",
        nargs="+",
        choices=ROBUSTNESS_ATTACKS,
        default=list(ROBUSTNESS_ATTACKS),
        help="robustness suite: the attacks to run (default: all)",
    )
    ev.add_argument(
        "--relearn-steps",
        nargs="+",
        type=int,
        default=[0, 5, 10, 25],
        help="robustness suite: relearning steps of the recovery curve (default 0 5 10 25)",
    )
    ev.add_argument("--retain-size", type=int, default=200, help="built-in TOFU: retain items evaluated")
    ev.add_argument("--tofu-forget", choices=("01", "05", "10"), default="10", help="hub TOFU split")
    ev.add_argument("--muse-corpus", choices=("news", "books"), default="news", help="hub MUSE corpus")
    _add_benchmark_args(ev, num_authors=100)
    ev.set_defaults(func=_cmd_eval)

    train = sub.add_parser(
        "train",
        help="run the unlearning recipe: hf-unlearn train --config recipes/configs/demo.yaml [--flag value ...]",
        add_help=False,
    )
    train.set_defaults(func=_cmd_train, recipe_args=[])

    push = sub.add_parser("push", help="upload a saved unlearned model or adapter (model files, card, plot only)")
    push.add_argument("directory", help="folder written by a trainer's save_model (with its README.md card)")
    push.add_argument("repo_id", help="target repository, e.g. me/model-npo")
    push.add_argument("--public", action="store_true", help="create a public repository (default: private)")
    push.add_argument("--token", default=None, help="Hugging Face token (default: the logged-in one)")
    push.add_argument(
        "--merge",
        action="store_true",
        help="an adapter on a local base (e.g. the demo's): upload the adapter merged into it, as full weights",
    )
    push.add_argument(
        "--base-repo",
        default=None,
        help="an adapter on a local base: also upload that base to this (private) repository and point the adapter "
        "at it",
    )
    push.add_argument(
        "--allow-forget-features",
        action="store_true",
        help="an O3 model: also publish detectors that store per-example features of the forget questions (refused "
        "by default: they can reveal which questions were forgotten)",
    )
    push.set_defaults(func=_cmd_push)

    tv = sub.add_parser(
        "task-vector",
        help="weight-space unlearning: target - scale x (reinforced - target); STA with --sta-keep",
        description="Task-vector negation (MUSE's recipe) and Selective Task Arithmetic, streamed tensor by tensor.",
    )
    tv.add_argument("--config", default=None, help="YAML file of defaults for these options (flags override it)")
    tv.add_argument("--target", help="the model to unlearn from (local folder or 'bundled')")
    tv.add_argument(
        "--reinforced",
        help="the target fine-tuned further on the forget set; a folder without a model is created by fine-tuning "
        "the target on the built-in forget set",
    )
    tv.add_argument("--output", help="output folder (refused if not empty unless --overwrite)")
    tv.add_argument("--scale", type=float, default=1.0, help="negation scale alpha (default 1)")
    tv.add_argument(
        "--sweep",
        type=_floats,
        default=None,
        help="scales to try, e.g. 0.25,0.5,1,2 (picks the largest "
        "keeping general-knowledge accuracy within --tolerance of the target)",
    )
    tv.add_argument("--tolerance", type=float, default=0.02, help="allowed general-knowledge accuracy drop")
    tv.add_argument("--sta-keep", type=float, default=None, help="Selective Task Arithmetic: fraction of entries kept")
    tv.add_argument("--sta-importance", choices=("taylor", "fisher"), default="taylor", help="STA importance")
    tv.add_argument("--sta-granularity", choices=("tensor", "global"), default="tensor", help="STA top-k scope")
    tv.add_argument("--sta-batches", type=int, default=4, help="forget batches for the STA gradient")
    tv.add_argument("--reinforce-epochs", type=float, default=5, help="epochs when reinforcing (MUSE: 5)")
    tv.add_argument("--reinforce-lr", type=float, default=1e-5, help="learning rate when reinforcing (MUSE: 1e-5)")
    tv.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    _add_benchmark_args(tv, num_authors=100)
    tv.set_defaults(func=_cmd_task_vector)
    parser._task_vector = tv  # for YAML defaults (see main)

    data = sub.add_parser("data", help="built-in benchmark tools")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    export = data_sub.add_parser(
        "export",
        help="write fictitious-authors, one file per split (forget, retain, holdout, general_knowledge, ...)",
    )
    export.add_argument("directory", help="output folder (refused if not empty unless --overwrite)")
    export.add_argument("--format", choices=("json", "parquet", "both"), default="json", help="file format")
    export.add_argument("--overwrite", action="store_true", help="replace an existing export")
    _add_benchmark_args(export, num_authors=100)
    export.set_defaults(func=_cmd_data_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "task-vector" and args.config:
        try:
            _yaml_defaults(parser._task_vector, args.config)
        except (ValueError, OSError) as err:
            print(f"hf-unlearn: error: {err}", file=sys.stderr)
            return 2
        args, extra = parser.parse_known_args(argv)
    if args.command == "task-vector":
        missing = [f"--{k}" for k in ("target", "reinforced", "output") if not getattr(args, k)]
        if missing:
            parser._task_vector.error(f"the following arguments are required: {', '.join(missing)}")
    if args.command == "train":
        args.recipe_args = extra  # --config FILE and any recipe flag go to the recipe's own (TRL) parser
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except (ValueError, FileExistsError, OSError, RuntimeError) as err:
        print(f"hf-unlearn: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
