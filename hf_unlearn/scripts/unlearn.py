"""The unlearning recipe: any method, optional callbacks, LoRA/QLoRA, evaluation, saving, optional push.

    hf-unlearn train --config npo_tofu                                   # a config shipped with hf_unlearn
    hf-unlearn train --config my.yaml --learning_rate 5e-5               # flags override the YAML
    hf-unlearn train --config demo --accelerate_config multi_cpu --num_processes 2   # through accelerate launch
    accelerate launch --config_file zero3.yaml -m hf_unlearn.scripts.unlearn --config ...   # the same, by hand

TRL-style: ``TrlParser((UnlearnScriptArguments, <Method>Config, ModelConfig))``, with ``--config`` giving defaults
from YAML. The method (``--method`` or the YAML's ``method:``) is read in a first pass, because it decides which
Config class parses the rest. Options that neither this command nor the method knows go to ``accelerate launch``
(``--num_processes``, ``--main_process_port``, ...), as in ``trl <command>``.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import logging
import os
import shutil
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hf_unlearn import set_verbosity
from hf_unlearn.registry import CALLBACKS, METHODS, get_method, make_callback
from hf_unlearn.scripts.arguments import BenchmarkArguments, CommandParser, DataArguments, Renamed, dropped

__all__ = ["UnlearnScriptArguments", "main", "make_parser"]

logger = logging.getLogger("hf_unlearn.recipe")


@dataclass
class UnlearnScriptArguments(DataArguments, BenchmarkArguments):
    """What to unlearn and what to do around training (the data and benchmark fields are
    :class:`~hf_unlearn.scripts.arguments.DataArguments` and :class:`~hf_unlearn.scripts.arguments.BenchmarkArguments`,
    shared with ``hf-unlearn eval``).

    Parameters:
        method: a registered method (``hf_unlearn.registry.METHODS``): grad_ascent, grad_diff, npo, simnpo, idk_sft,
            idk_dpo, undial, wga, satimp, ceu, pdu, reasoned_idk, o3.
        holdout_from_forget: with your data and no holdout, hold this share of the forget rows back from unlearning
            as the evaluation's holdout (seeded by ``seed``); they are text the model saw, so the evaluation then
            reports how far unlearning moved the rest, not PrivLeak.
        callbacks: representation-level objectives to add (rmu, adaptive_rmu, attention_shifting).
        callback_layer: the layer RMU steers (or the deepest shifted layer).
        calibrate: stop where the forget set looks like data the model never saw
            (:class:`~hf_unlearn.callbacks.ForgetTargetCallback`, best weights restored).
        nonmember_path: the calibration's non-member rows (JSON lines); the built-in benchmark generates its own.
        calibration_metric, calibration_tolerance, calibration_every: the callback's ``metric``, ``tolerance`` and
            ``every_n_steps``.
        calibration_refine: bisect the steps between two evaluations after an overshoot (``refine_overshoot``, on by
            default; ``--no_calibration_refine`` turns it off).
        search_trials: run a settings search of this many trials (:func:`hf_unlearn.search.search_settings`: the
            distance to the non-member level plus the retain and general-knowledge answer probability lost, optuna
            with pruning) instead of one training run; the best trial's model is saved and ``search.json`` records
            every trial. Uses the calibration's non-members.
        search_every, search_utility_weight: steps between the search's pruning reports; the utility weight of
            its objective.
        evaluate: evaluate the unlearned model at the end and write ``results.json``: the TOFU-style suite on the
            built-in benchmark, the ``documents`` suite on your data (:func:`~hf_unlearn.evaluate_documents`). The
            metrics also go to the ``report_to`` trackers.
        reference_logs: the retain model's saved result, for Forget Quality and PrivLeak.
        reference_model: your data: a model that never saw the forget set (e.g. a retain model), scored on the same
            blocks for PrivLeak.
        eval_max_blocks: your data: at most this many blocks per set in the evaluation (spread evenly).
        eval_robustness: also run the robustness attacks (:func:`~hf_unlearn.evaluation.evaluate_robustness`), write
            ``robustness.json`` (never uploaded: it holds forget questions) and add the card's "Robustness" section.
        robustness_reference_logs: the retain model's robustness result, for Forget Quality under each attack.
        max_new_tokens: generation length of the evaluation (200, as ``hf-unlearn eval`` and open-unlearning: a
            shorter cap scores a rambling unlearned model lower ROUGE than it earns).
        overwrite: allow an output folder that already holds another run: the files this library wrote there are
            removed first (``LIBRARY_OUTPUTS``), nothing else.
    """

    method: str = field(default="npo", metadata={"help": f"One of {', '.join(METHODS)}."})
    holdout_from_forget: float = field(
        default=0.0, metadata={"help": "No holdout: hold this share of the forget rows back, as the holdout."}
    )
    callbacks: list[str] = field(default_factory=list, metadata={"help": f"Any of {', '.join(CALLBACKS)}."})
    callback_layer: int = field(default=7, metadata={"help": "Layer of the representation callbacks."})
    calibrate: bool = field(
        default=False, metadata={"help": "Stop at the non-member level (ForgetTargetCallback); best weights restored."}
    )
    nonmember_path: str | None = field(
        default=None, metadata={"help": "calibrate: non-member rows (a file); built-in benchmark: generated."}
    )
    calibration_metric: str = field(default="min_k", metadata={"help": "calibrate: min_k, loss or prob."})
    calibration_tolerance: float = field(default=0.1, metadata={"help": "calibrate: how close counts as reached."})
    calibration_every: int = field(default=10, metadata={"help": "calibrate: evaluation interval in steps."})
    calibration_refine: bool = field(
        default=True, metadata={"help": "calibrate: after an overshoot, bisect the steps since the last evaluation."}
    )
    search_trials: int = field(
        default=0, metadata={"help": "Settings search with this many trials (optuna); the best trial is saved."}
    )
    search_every: int = field(default=10, metadata={"help": "search: steps between pruning reports."})
    search_utility_weight: float = field(default=1.0, metadata={"help": "search: weight of the utility terms."})
    evaluate: bool = field(default=True, metadata={"help": "Evaluate at the end and write results.json."})
    reference_logs: str | None = field(default=None, metadata={"help": "Retain model's saved result."})
    reference_model: str | None = field(
        default=None, metadata={"help": "Your data: a model that never saw the forget set, for PrivLeak."}
    )
    eval_max_blocks: int = field(default=100, metadata={"help": "Your data: blocks per set in the evaluation."})
    eval_robustness: bool = field(
        default=False, metadata={"help": "Also run the robustness attacks (relearning, 4-bit, prompts, probing)."}
    )
    robustness_reference_logs: str | None = field(
        default=None, metadata={"help": "eval_robustness: the retain model's robustness result."}
    )
    max_new_tokens: int = field(default=200, metadata={"help": "Evaluation: generation length (as hf-unlearn eval)."})
    overwrite: bool = field(default=False, metadata={"help": "Allow an output folder holding another run."})


def _dataset_value(value: str):
    """The old ``dataset: files`` meant "the paths alone": no dataset_name."""
    return dropped(value) if value == "files" else value


# hf_unlearn 0.1's spellings (flags and YAML keys), until 0.3.
RENAMED = {
    "dataset": Renamed("dataset_name", convert=_dataset_value, note="(dataset: files is forget_path alone.)"),
    "eval_max_new_tokens": Renamed("max_new_tokens"),
}


def _first_pass(argv: Sequence[str]):
    """The script arguments alone (the method decides which Config class parses the rest)."""
    parser = CommandParser((UnlearnScriptArguments,), renamed=RENAMED)
    with warnings.catch_warnings():  # the full parse warns once
        warnings.simplefilter("ignore", FutureWarning)
        script_args, *_ = parser.parse_args_and_config(
            [a for a in argv if a not in ("-h", "--help")], return_remaining_strings=True
        )
    get_method(script_args.method)  # a clear error for an unknown name
    return script_args


def make_parser(method: str = "npo", prog: str = "hf-unlearn train") -> CommandParser:
    from trl import ModelConfig

    return CommandParser(
        (UnlearnScriptArguments, get_method(method).config_class, ModelConfig),
        prog=prog,
        description=f"Unlearn with {method} (the method's parameters, TrainingArguments and TRL's ModelConfig), then "
        "evaluate, save and optionally push. Run with --method NAME --help for another method's parameters.",
        renamed=RENAMED,
    )


_FINAL_STAGING = ".hf_unlearn-final"  # the final model is written here, then moved into the output folder

# What the recipe (through the trainer, the tokenizer, the evaluation and the card) writes into an output folder;
# `--overwrite true` removes these and nothing else.
LIBRARY_OUTPUTS = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",
    "adapter_config.json",
    "adapter_model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
    "README.md",
    "results.json",
    "robustness.json",
    "search.json",
    "training_args.bin",
    "trainer_state.json",
    "forget_vs_utility.png",
    "report.html",
    "report_*.png",
    "checkpoint-*",
    _FINAL_STAGING,
)
_RUN_MARKERS = ("adapter_config.json", "config.json", "trainer_state.json")


def _publish_final(staging: Path, output_dir: Path) -> None:
    """Move the final model from its staging folder into ``output_dir``, the files that mark a finished run last:
    a kill in between leaves a folder that still reads as an interrupted run (resumable), never as a finished one
    with partial weights."""
    files = sorted(staging.iterdir(), key=lambda p: (p.name in _RUN_MARKERS, p.name))
    for path in files:
        os.replace(path, output_dir / path.name)
    staging.rmdir()


def _library_outputs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if any(fnmatch.fnmatch(p.name, pat) for pat in LIBRARY_OUTPUTS))


def _latest_complete_checkpoint(folder: Path) -> str | None:
    """The newest ``checkpoint-N`` whose ``trainer_state.json`` (the Trainer writes it last) is complete.

    A checkpoint interrupted while being written (a kill or a full disk) is renamed ``checkpoint-N.incomplete``, so
    neither this resume nor the Trainer's rotation ever takes it for a real one.
    """
    steps = sorted(
        (int(p.name.split("-")[1]), p) for p in folder.glob("checkpoint-*") if p.is_dir() and p.name[11:].isdigit()
    )
    for step, path in reversed(steps):
        try:
            state = json.loads((path / "trainer_state.json").read_text())
            complete = state.get("global_step") == step
        except (OSError, ValueError, AttributeError):
            complete = False
        if complete:
            return str(path)
        aside = path.with_name(f"{path.name}.incomplete")
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(path, aside)
        logger.info(f"{path.name} was not completely written (interrupted); moved aside to {aside.name}")
    return None


def _prepare_output_dir(path: str, overwrite: bool, resume: str | bool | None) -> str | None:
    """Check the output folder against the run about to start; return the checkpoint to resume from, if any.

    * ``resume`` (``--resume_from_checkpoint``): a checkpoint folder, or ``true`` for the latest ``checkpoint-*`` of
      ``output_dir``;
    * a folder holding a finished run (model or trainer state) or an interrupted one (``checkpoint-*`` only) is
      refused, naming both ways out, unless ``overwrite``: then the files this library writes are removed first
      (nothing else is), so no earlier model or ``results.json`` is left beside the new run or pushed with it.
    """
    folder = Path(path)
    if isinstance(resume, str) and resume.lower() in ("true", "1", "yes"):
        resume = True
    elif isinstance(resume, str) and resume.lower() in ("false", "0", "no", ""):
        resume = None
    if resume:  # a final save cut short by the interruption is not reused
        shutil.rmtree(folder / _FINAL_STAGING, ignore_errors=True)
    if resume is True:
        last = _latest_complete_checkpoint(folder) if folder.is_dir() else None
        if last is None:
            raise FileNotFoundError(f"--resume_from_checkpoint true: {path} holds no checkpoint-* folder to resume.")
        logger.info(f"resuming from {last}")
        return last
    if resume:
        if not Path(resume, "trainer_state.json").is_file():
            raise FileNotFoundError(
                f"{resume} is not a checkpoint (no trainer_state.json); give a checkpoint-* folder."
            )
        logger.info(f"resuming from {resume}")
        return str(resume)
    if not folder.is_dir():
        return None
    checkpoints = sorted(p.name for p in folder.glob("checkpoint-*") if p.is_dir())
    finished = any((folder / f).exists() for f in _RUN_MARKERS)
    if not (finished or checkpoints):
        return None
    if not overwrite:
        if finished:
            raise FileExistsError(
                f"{path} already holds a run (model or trainer state); choose another output_dir or pass --overwrite "
                "true."
            )
        raise FileExistsError(
            f"{path} holds an interrupted run ({', '.join(checkpoints)}): resume it with --resume_from_checkpoint "
            "true, or pass --overwrite true to start again, or choose another output_dir."
        )
    for item in _library_outputs(folder):
        shutil.rmtree(item) if item.is_dir() else item.unlink()
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """``hf-unlearn train``: parse, then run here or relaunch through ``accelerate launch`` (see :func:`launch`)."""
    from hf_unlearn.scripts.launch import launch, pop_accelerate_config, under_launcher, unknown_to_accelerate

    argv = list(sys.argv[1:] if argv is None else argv)
    set_verbosity(os.environ.get("HF_UNLEARN_VERBOSITY", "info"))  # the recipe says what it does (main process)
    accelerate_config, argv = pop_accelerate_config(argv)
    script_args = _first_pass(argv)
    parser = make_parser(script_args.method)
    script_args, training_args, model_args, from_config, from_flags = parser.parse_args_and_config(
        argv, return_remaining_strings=True, separate_remaining_strings=True
    )
    launch_args = [*from_config, *from_flags]  # what the recipe does not know goes to accelerate launch, if it can
    for where, leftover in (("the --config file", from_config), ("the command line", from_flags)):
        unknown = unknown_to_accelerate(leftover)
        if unknown:
            raise ValueError(
                f"{where}: unknown options {', '.join(u.lstrip('-') for u in unknown)} (neither {script_args.method}'s "
                "recipe nor accelerate launch takes them; hf-unlearn train --method NAME --help lists a method's)."
            )
    if under_launcher():
        ignored = ["--accelerate_config", accelerate_config] if accelerate_config else launch_args
        if ignored:
            logger.info(f"already running under a launcher: {' '.join(ignored)} ignored")
    elif accelerate_config or launch_args:
        return launch(argv, from_config, from_flags, accelerate_config)
    run(script_args, training_args, model_args)
    return 0


def run(script_args, training_args, model_args) -> None:
    """The recipe itself, in this process (one rank of a launched job, or the only process)."""
    import hf_unlearn as hu
    from hf_unlearn.objective import requirements
    from hf_unlearn.sources import calibration_nonmembers, training_data

    method = script_args.method
    unknown = set(script_args.callbacks) - set(CALLBACKS)
    if unknown:
        raise ValueError(f"Unknown callbacks {sorted(unknown)}; choose from {', '.join(CALLBACKS)}.")
    if script_args.search_trials and training_args.resume_from_checkpoint:
        raise ValueError(
            "--search_trials runs every trial from the starting weights; it cannot resume a checkpoint. Drop "
            "--resume_from_checkpoint, or drop --search_trials to resume the single run."
        )
    quantization_config = _quantization_config(model_args)
    if (
        training_args.push_to_hub
    ):  # a missing login or an adapter that cannot be published fails now, not after training
        _check_publishable(training_args, model_args)
    resume = _prepare_output_dir(training_args.output_dir, script_args.overwrite, training_args.resume_from_checkpoint)

    benchmark = script_args.benchmark_kwargs()
    data = training_data(
        _data_source(script_args),
        benchmark=benchmark,
        tofu_split=script_args.tofu_split,
        forget_path=script_args.forget_path,
        retain_path=script_args.retain_path,
        holdout_path=script_args.holdout_path,
        dataset_config=script_args.dataset_config,
        forget_split=script_args.forget_split,
        retain_split=script_args.retain_split,
        holdout_split=script_args.holdout_split,
        holdout_from_forget=script_args.holdout_from_forget,
        seed=training_args.seed,
    )
    forget, retain, eval_sets = data.forget, data.retain, data.eval_sets
    if data.holdout_kind == "carved":
        logger.info(
            f"holdout: {len(data.holdout)} of {len(data.holdout) + len(forget)} forget rows held back "
            "from unlearning (--holdout_from_forget); the model saw them, so the evaluation reports how far unlearning "
            "moved the rest from text it still knows, not PrivLeak.",
        )
    if script_args.eval_robustness and not (eval_sets and eval_sets.get("holdout")):  # refused before training
        raise ValueError(
            f"--eval_robustness needs QA evaluation sets with holdout rows; dataset {data.name!r} has none "
            "(use fictitious-authors or tofu, or run hf-unlearn eval --suite robustness on the saved model)."
        )

    from trl import get_peft_config

    model, tokenizer = hu.load_model(
        model_args.model_name_or_path or "bundled",
        dtype=model_args.dtype if model_args.dtype not in (None, "auto") else None,
        quantization_config=quantization_config,
        device_map=_device_map(quantization_config),
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
    )
    from hf_unlearn.data import Schema, detect_schema

    qa = detect_schema(forget[0]) != Schema.COMPLETION  # chat QA steers answer tokens; raw text every token
    callbacks = [make_callback(name, script_args.callback_layer, qa=qa) for name in script_args.callbacks]
    calibration = []  # a plain TrainerCallback, not an objective: it only watches and stops
    nonmembers = None
    if script_args.calibrate or script_args.search_trials:
        nonmembers = calibration_nonmembers(
            _data_source(script_args), benchmark=benchmark, nonmember_path=script_args.nonmember_path
        )
    if script_args.calibrate:
        calibration.append(
            hu.ForgetTargetCallback(
                tokenizer,
                forget=forget,
                nonmember=nonmembers,
                retain=retain or (),
                metric=script_args.calibration_metric,
                tolerance=script_args.calibration_tolerance,
                every_n_steps=script_args.calibration_every,
                refine_overshoot=script_args.calibration_refine,
            )
        )
    trainer_cls = get_method(method).trainer_class
    # The objectives decide whether retain rows are needed (the trainer refuses a retain set nothing uses).
    uses_retain = requirements([*trainer_cls.objectives_for(training_args), *callbacks]).retain
    trainer = trainer_cls(
        model,
        args=training_args,
        forget_dataset=forget,
        retain_dataset=retain if uses_retain else None,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        callbacks=[*callbacks, *calibration],
    )
    _check_sharding(trainer)
    for name, summary in trainer.data_summary.items():
        if summary["documents"] and summary["blocks"] != summary["documents"] and trainer.is_world_process_zero():
            logger.info(
                f"{name}: {summary['documents']} documents → {summary['blocks']} blocks of ≤ "
                f"{summary['max_length']} tokens",
            )
    search = None
    if script_args.search_trials:  # every trial trains; the best one's trainer (and weights) is kept
        search = trainer.hyperparameter_search(
            n_trials=script_args.search_trials,
            nonmember_dataset=nonmembers,
            general_dataset=(eval_sets or {}).get("world_facts", ()),
            every_n_steps=script_args.search_every,
            utility_weight=script_args.search_utility_weight,
            metric=script_args.calibration_metric,
        ).run_summary
        trainer = search.trainer
    try:
        if search is None:
            trainer.train(resume_from_checkpoint=resume)
    except (OSError, RuntimeError) as err:
        # torch.save reports a full disk as "unexpected pos" (its zip writer), not as ENOSPC
        if getattr(err, "errno", None) != errno.ENOSPC and "unexpected pos" not in str(err):
            raise
        raise OSError(
            errno.ENOSPC,
            f"The disk holding {training_args.output_dir} is full ({str(err).strip()[-120:]}). Free space, then "
            "resume with --resume_from_checkpoint true: a checkpoint cut short is set aside, the last complete one is "
            "used.",
        ) from None
    staging = os.path.join(training_args.output_dir, _FINAL_STAGING)
    trainer.save_model(staging, _internal_call=True)  # the push, if asked, comes after evaluation and the card
    _settle_collectives()
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(staging)
        trainer.state.save_to_json(os.path.join(staging, "trainer_state.json"))  # the report's training curves
        _publish_final(Path(staging), Path(training_args.output_dir))
        if search is not None:
            search.save(os.path.join(training_args.output_dir, "search.json"))
            logger.info(
                f"settings search: best trial {search.best_trial} (J = {search.best_value:.4f}) of "
                f"{search.summary['trials']}: {search.best_params}",
            )
    metrics = result = None
    if script_args.evaluate and trainer.is_world_process_zero():
        result = _evaluate(trainer, tokenizer, data, script_args, training_args)
        if result is not None:
            result.save(os.path.join(training_args.output_dir, "results.json"))
            metrics = {k: v for k, v in result.metrics.items() if v is not None}
            _report(trainer, metrics)
            print(result.table(f"{trainer_cls._name} on {data.name}"))
    robustness = None
    if script_args.eval_robustness and eval_sets is not None and trainer.is_world_process_zero():
        robustness = hu.evaluate_robustness(
            _evaluation_model(trainer, training_args.output_dir),
            tokenizer,
            forget=eval_sets["forget"],
            holdout=eval_sets["holdout"],
            retain=eval_sets.get("retain"),
            reference=script_args.robustness_reference_logs,
            progress=True,
        )
        robustness.save(os.path.join(training_args.output_dir, "robustness.json"))
    plot = None
    if trainer.is_world_process_zero():
        plot = _write_report(trainer, data, result, robustness, search, script_args, training_args, model_args)
    card = {
        "plot": plot,
        "plot_title": "training curves" if plot else None,
        "metrics": metrics,
        "forget_name": data.name,
        "robustness": robustness,
        "datasets": data.hub_ids,
        "eval_dataset": data.name if data.user_data else None,
        "search": search,
    }
    trainer.create_model_card(**card)
    if training_args.push_to_hub and trainer.is_world_process_zero():
        _push(trainer, training_args)
    state = trainer.state
    rank = int(os.environ.get("RANK", "0"))
    # One line per rank, on purpose (not through the main-process-only logger): which ranks got to the end.
    print(f"[hf_unlearn] rank {rank}/{training_args.world_size} finished {state.global_step} steps", flush=True)
    _close_process_group()


def _write_report(trainer, data, result, robustness, search, script_args, training_args, model_args) -> str | None:
    """``report.html`` in the output folder (local: it shows forget-set text; never pushed) and its PNG figures;
    returns the training-curves figure's file name for the card (``None`` without matplotlib)."""
    import hf_unlearn as hu
    from hf_unlearn.report import write_report

    results = {"unlearned": result} if result is not None else {}
    if script_args.reference_logs:
        results["retain"] = script_args.reference_logs
    rows = data.eval_sets["forget"] if data.eval_sets is not None else data.forget
    calibration = next(
        (cb.summary for cb in trainer.callback_handler.callbacks if isinstance(cb, hu.ForgetTargetCallback)), None
    )
    settings = {
        "method": type(trainer).__name__,
        "model": model_args.model_name_or_path or "bundled",
        "forget data": data.name,
        "steps": trainer.state.global_step,
        "learning rate": training_args.learning_rate,
    }
    path = write_report(
        training_args.output_dir,
        results=results,
        log_history=trainer.state.log_history,
        forget_rows=rows,
        robustness=robustness,
        search=search,
        calibration=calibration,
        settings=settings,
    )
    logger.info(f"report: {path} (local only: it shows forget-set text; `hf-unlearn push` never uploads it)")
    figure = Path(training_args.output_dir) / "report_training.png"
    return figure.name if figure.is_file() else None


def _quantization_config(model_args):
    """TRL's ``get_quantization_config``: ``--load_in_8bit``, or ``--load_in_4bit`` with ``--bnb_4bit_quant_type``,
    ``--use_bnb_nested_quant`` and ``--bnb_4bit_quant_storage`` (the compute dtype is ``--dtype``; float32 when it
    is unset or auto, where the CPU has no faster one). Refused without an adapter: quantized weights are frozen
    integer tensors, so only a LoRA adapter (QLoRA) can be trained on them."""
    import dataclasses

    from trl import get_quantization_config

    if (model_args.load_in_4bit or model_args.load_in_8bit) and not model_args.use_peft:
        bits = "4" if model_args.load_in_4bit else "8"
        raise ValueError(
            f"--load_in_{bits}bit without --use_peft: a {bits}-bit model's weights cannot be trained directly. Add "
            "--use_peft true (a LoRA adapter on the quantized base: QLoRA), or drop the quantization."
        )
    if model_args.load_in_4bit and model_args.dtype in (None, "auto"):
        model_args = dataclasses.replace(model_args, dtype="float32")
    return get_quantization_config(model_args)


def _device_map(quantization_config):
    """Where a quantized model goes: each rank's own GPU (what TRL's ``get_kbit_device_map`` returned before it was
    removed), so that ``accelerate launch`` ranks do not all load onto GPU 0; ``None`` otherwise."""
    import torch

    if quantization_config is None or not torch.cuda.is_available():
        return None
    from accelerate import PartialState

    return {"": PartialState().local_process_index}


def _data_source(script_args) -> str:
    """What to train on: ``dataset_name`` (TRL's name; a built-in name or your data), else ``files`` when only
    ``forget_path`` is given, else the built-in benchmark."""
    from hf_unlearn.sources import TRAINING_DATASETS

    paths = [f"--{p}" for p in ("forget_path", "retain_path", "holdout_path") if getattr(script_args, p)]
    if script_args.dataset_name in TRAINING_DATASETS and script_args.dataset_name != "files" and paths:
        raise ValueError(
            f"{' and '.join(paths)} are your own data, but --dataset_name {script_args.dataset_name} is a built-in "
            "dataset with its own splits: drop one of them (your files alone need no --dataset_name)."
        )
    if script_args.dataset_name:
        return script_args.dataset_name
    return "files" if script_args.forget_path else "fictitious-authors"


def _evaluate(trainer, tokenizer, data, script_args, training_args):
    """The end-of-training evaluation: TOFU-style on a built-in benchmark, the documents suite on the user's data,
    or ``None`` with one line saying why nothing was evaluated."""
    import hf_unlearn as hu

    if data.eval_sets is not None:
        return hu.evaluate_tofu(
            _evaluation_model(trainer, training_args.output_dir),
            tokenizer,
            **data.eval_sets,
            reference=script_args.reference_logs,
            max_new_tokens=script_args.max_new_tokens,
        )
    if not data.user_data:
        logger.info(
            f"no evaluation: the recipe has no evaluation sets for {data.name}'s training rows; evaluate "
            f"the output with `hf-unlearn eval --model {training_args.output_dir} --suite "
            f"{'tofu' if data.name == 'tofu' else 'muse'} --dataset hub`.",
        )
        return None
    if data.holdout is None:
        logger.info(
            "documents evaluation without a holdout: no membership inference or PrivLeak. Give text of "
            "the same kind the model never saw (--holdout_split, --holdout_path), or --holdout_from_forget 0.1.",
        )
    reference_model = hu.load_model(script_args.reference_model)[0] if script_args.reference_model else None
    return hu.evaluate_documents(
        _evaluation_model(trainer, training_args.output_dir),
        tokenizer,
        forget=data.forget,
        holdout=data.holdout,
        retain=data.retain,
        reference=script_args.reference_logs,
        reference_model=reference_model,
        holdout_kind=data.holdout_kind or "unseen",
        max_length=training_args.max_length,
        stride=training_args.document_stride,
        max_blocks=script_args.eval_max_blocks,
        answer_max_new_tokens=script_args.max_new_tokens,
        system_prompt=training_args.system_prompt,
        progress=True,
    )


def _report(trainer, metrics: dict) -> None:
    """The evaluation's numbers to the ``report_to`` trackers (W&B, TensorBoard, ...), under ``unlearn_eval/``, at
    the last step; they are also in ``results.json`` and the card."""
    trackers = [r for r in (trainer.args.report_to or []) if r != "none"]
    numbers = {f"unlearn_eval/{k}": float(v) for k, v in metrics.items() if isinstance(v, int | float)}
    if trackers and numbers:
        trainer.log(numbers)


def _check_publishable(training_args, model_args) -> None:
    """Before training: a token exists, and an adapter's base can be named on the Hub."""
    from hf_unlearn.hub.lineage import is_local_path
    from hf_unlearn.hub.push import require_token

    require_token(training_args.hub_token)
    base = model_args.model_name_or_path or "bundled"
    if model_args.use_peft and is_local_path(base):
        raise ValueError(
            f"--push_to_hub with an adapter (--use_peft) on a local folder ({base}): a repository holding only the "
            "adapter could not be loaded anywhere else. Train without --push_to_hub, then publish the output with "
            "`hf-unlearn push --output_dir OUTPUT_DIR --hub_model_id REPO --merge` (merged full weights) or "
            "`--base_repo REPO` (the base as a private repository of its own); or train on a Hub model id."
        )


def _push(trainer, training_args) -> None:
    """Publish the finished output folder once (private unless ``--hub_private_repo false``); a failure leaves the
    folder as it is and says what to run to retry (:class:`hf_unlearn.hub.HubPushError`)."""
    from hf_unlearn.hub.push import ALLOWED_FILES, hub_private, push_unlearned

    private = hub_private(training_args.hub_private_repo)
    push_unlearned(
        training_args.output_dir,
        trainer.hub_model_id,
        private=private,
        token=training_args.hub_token,
        revision=training_args.hub_revision,
        commit_message="Upload unlearned model (hf_unlearn)",
    )
    logger.info(
        f"pushed {training_args.output_dir} to {trainer.hub_model_id} "
        f"({'private' if private else 'public'}): {', '.join(ALLOWED_FILES)} where present; results without "
        "per-item data; no checkpoints, training state or forget-set text.",
    )


def _sharded(trainer) -> bool:
    """Whether the model's parameters are split across ranks (FSDP, DeepSpeed ZeRO-3)."""
    from accelerate.utils import DistributedType

    acc = trainer.accelerator
    if acc.num_processes < 2:
        return False
    if acc.distributed_type == DistributedType.FSDP:
        return True
    plugin = getattr(acc.state, "deepspeed_plugin", None) if acc.distributed_type == DistributedType.DEEPSPEED else None
    return plugin is not None and getattr(plugin, "zero_stage", 0) == 3


def _evaluation_model(trainer, output_dir: str):
    """The model rank 0 evaluates alone. A sharded model cannot run on one rank (every forward gathers parameters
    from all of them), so rank 0 loads the final model the recipe just saved, whole, instead."""
    if not _sharded(trainer):
        return trainer.model
    import hf_unlearn as hu

    model, _ = hu.load_unlearned(output_dir)
    return model.to(trainer.accelerator.device)


def _check_sharding(trainer) -> None:
    """Say so when the accelerate config asked for FSDP or DeepSpeed but accelerate runs plain data parallelism:
    accelerate 1.16 selects them only for GPU-type devices, so on CPU ranks an FSDP config silently becomes DDP."""
    from accelerate.utils import DistributedType

    asked = [
        name
        for name, env in (("FSDP", "ACCELERATE_USE_FSDP"), ("DeepSpeed", "ACCELERATE_USE_DEEPSPEED"))
        if os.environ.get(env, "false").lower() == "true"
    ]
    got = trainer.accelerator.distributed_type
    if asked and got not in (DistributedType.FSDP, DistributedType.DEEPSPEED) and trainer.is_world_process_zero():
        logger.warning(
            f"the accelerate config asks for {asked[0]}, but accelerate runs this job as "
            f"{got.value}: it selects {asked[0]} only on GPU-type devices and these ranks run on "
            f"{trainer.args.device.type.upper()}. "
            "Every rank holds the whole model (training is still correct: plain data parallelism).",
        )


def _settle_collectives() -> None:
    """Let gloo's worker threads drop finished collectives before anything can tear the process group down.

    A gloo worker destroys the work it just finished (and the trainer's last all-gather that work keeps alive) only
    after signalling completion, and dropping that all-gather's tensors needs the GIL. If the main thread reaches the
    process group's destructor first (it holds the GIL and joins the workers), the rank deadlocks, or aborts with
    ``terminate called without an active exception`` at exit, after a successful run: about 1 launch in 10 here, and
    more under CPU load. So: a barrier (every rank is already here after ``save_model``) and a short sleep that
    releases the GIL. Later collectives (the push's barriers) keep no tensors alive. Placed before rank 0's evaluation
    so no rank waits on it under the process-group timeout.
    """
    import time

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        time.sleep(0.2)


def _close_process_group() -> None:
    """Destroy the process group explicitly rather than at interpreter shutdown (see ``_settle_collectives``)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":  # pragma: no cover  (accelerate launch runs this file)
    sys.exit(main())
