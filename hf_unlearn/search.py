"""Settings search: choose a method's settings so that the forget set lands where data the model never saw lies,
while retain and general knowledge are kept.

The right learning rate, strength and length of an unlearning run depend on the model and the data. Too little and
the forget set is still recognisably a member; too much and it sits *below* data the model never saw, which a
membership attack reads just as well ("MUSE: Machine Unlearning Six-Way Evaluation for Language Models",
arXiv:2407.06460). Every trial trains the trainer's method with sampled settings from the same starting weights and
is scored by the objective (minimised)::

    J = |d| + utility_weight * (drop(retain) + drop(general))

* ``d``: :class:`~hf_unlearn.callbacks.ForgetTargetCallback`'s distance to the non-member level (forget-vs-non-member
  Min-K% AUC - 0.5 by default; 0 = the forget set looks like data never trained on);
* ``drop(x) = max(0, 1 - p_x / p0_x)``: the relative loss of the mean length-normalised answer probability on the
  retain rows (``x = retain``) or the general-knowledge rows (``x = general``) against the weights before unlearning
  (a set that was not given contributes 0).

Everything is scored at label positions only (no generation), so a check costs a few forward passes. The study is
optuna's ("Optuna: A Next-generation Hyperparameter Optimization Framework", arXiv:1907.10902), the backend of
``transformers.Trainer.hyperparameter_search``: ``J`` is reported every ``every_n_steps`` steps and its pruner stops
trials that are behind. Unlike the Trainer's own search, no ``model_init`` is needed: each trial starts a new trainer
of the same class on the same model, its trainable weights reset to where the search began (for LoRA, the fresh
adapter; for full fine-tuning, one CPU copy of the weights).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from transformers import TrainerCallback

from .callbacks.calibration import ForgetTargetCallback
from .data.loading import as_rows
from .data.tokenization import tokenize_rows
from .evaluation.scoring import score_sequences
from .objective import NonFiniteLossError, declared_fields

logger = logging.getLogger(__name__)

__all__ = ["SearchObjective", "SearchResult", "default_hp_space", "search_objective", "search_settings"]


def search_objective(
    distance: float,
    *,
    retain_prob: float | None = None,
    retain_prob_before: float | None = None,
    general_prob: float | None = None,
    general_prob_before: float | None = None,
    utility_weight: float = 1.0,
) -> float:
    """``J = |distance| + utility_weight * (drop(retain) + drop(general))`` with ``drop = max(0, 1 - p / p_before)``;
    a set without both probabilities contributes 0 (see the module docstring)."""
    drops = (_drop(retain_prob, retain_prob_before), _drop(general_prob, general_prob_before))
    return abs(distance) + utility_weight * sum(d for d in drops if d is not None)


def _drop(p: float | None, before: float | None) -> float | None:
    """The relative loss ``max(0, 1 - p / before)``; ``None`` without both probabilities."""
    return None if p is None or not before else max(0.0, 1.0 - p / before)


def _spread(rows: Sequence[Mapping[str, Any]], n: int) -> list[Mapping[str, Any]]:
    """At most ``n`` rows evenly spread over ``rows`` (retain sets are often ordered by author)."""
    rows = list(rows)
    return rows if len(rows) <= n else [rows[i * len(rows) // n] for i in range(n)]


class SearchObjective:
    """Measures ``J`` (module docstring) on a model: the non-member distance through a
    :class:`~hf_unlearn.callbacks.ForgetTargetCallback` (its ``metric``, ``min_k`` and overlap checks) and the answer
    probabilities of at most ``max_rows`` retain and general-knowledge rows.

    Args:
        tokenizer: the model's tokenizer.
        forget, nonmember: as for :class:`~hf_unlearn.callbacks.ForgetTargetCallback`.
        retain: retain rows whose answer probability must not drop (checked for overlap with ``nonmember`` too).
        general: general-knowledge rows (e.g. world facts) whose answer probability must not drop.
        metric, min_k: the distance's membership score (``"min_k"``, ``"loss"`` or ``"prob"``).
        utility_weight: weight of the two utility drops in ``J``.
        max_rows: rows of ``retain`` and of ``general`` scored per check.
        system_prompt: the system prompt the trainer tokenises with.
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        forget: Sequence[Mapping[str, Any]],
        nonmember: Sequence[Mapping[str, Any]],
        retain: Sequence[Mapping[str, Any]] = (),
        general: Sequence[Mapping[str, Any]] = (),
        metric: str = "min_k",
        min_k: float = 0.4,
        utility_weight: float = 1.0,
        max_rows: int = 40,
        system_prompt: str | None = None,
    ) -> None:
        if utility_weight < 0:
            raise ValueError(f"utility_weight must be >= 0, got {utility_weight}.")
        self.distance = ForgetTargetCallback(
            tokenizer,
            forget=forget,
            nonmember=nonmember,
            retain=retain,
            metric=metric,
            min_k=min_k,
            restore_best=False,
            rescore_margin=None,  # trials start from other weights: no scores carry over
            system_prompt=system_prompt,
        )
        self.tokenizer = tokenizer
        self.utility_weight = utility_weight
        self._retain = tokenize_rows(_spread(retain, max_rows), tokenizer, system_prompt=system_prompt)
        self._general = tokenize_rows(_spread(general, max_rows), tokenizer, system_prompt=system_prompt)
        self.before: dict[str, float | None] = {}
        self.seconds = 0.0

    def _prob(self, model: Any, rows: list[dict]) -> float | None:
        if not rows:
            return None
        s = score_sequences(model, rows, pad_token_id=self.tokenizer.pad_token_id)
        return float(s.normalized_prob.mean())

    def measure(self, model: Any) -> dict[str, float | None]:
        """The distance, the answer probabilities, the utility drops and ``objective`` (``J``) of ``model``."""
        start = time.perf_counter()
        out: dict[str, float | None] = dict(self.distance.measure(model))
        out["retain_prob"] = self._prob(model, self._retain)
        out["general_prob"] = self._prob(model, self._general)
        for name in ("retain", "general"):
            out[f"{name}_drop"] = _drop(out[f"{name}_prob"], self.before.get(f"{name}_prob"))
        out["objective"] = search_objective(
            out["distance"],
            retain_prob=out["retain_prob"],
            retain_prob_before=self.before.get("retain_prob"),
            general_prob=out["general_prob"],
            general_prob_before=self.before.get("general_prob"),
            utility_weight=self.utility_weight,
        )
        self.seconds += time.perf_counter() - start
        return out

    def set_baseline(self, model: Any) -> dict[str, float | None]:
        """Measure the starting weights: the reference of the utility drops."""
        self.before = {}
        self.before = self.measure(model)
        return self.before


class _TrialReporter(TrainerCallback):
    """Reports ``J`` to the optuna trial every ``every_n_steps`` steps and stops the trial when the pruner says so."""

    def __init__(self, objective: SearchObjective, trial: Any, every_n_steps: int, compute: Callable) -> None:
        self.objective, self.trial, self.every_n_steps, self.compute = objective, trial, every_n_steps, compute
        self.history: list[dict[str, Any]] = []
        self.pruned_at: int | None = None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every_n_steps:
            return
        metrics = self.objective.measure(model)
        value = self.compute(metrics)
        self.history.append({"step": state.global_step, "value": value, **metrics})
        self.trial.report(value, state.global_step)
        if self.trial.should_prune():
            self.pruned_at = state.global_step
            control.should_training_stop = True


@dataclasses.dataclass
class SearchResult:
    """What :func:`search_settings` found. ``trainer`` is the best trial's trainer (its model holds the best weights
    when ``keep_best``): ``result.trainer.save_model(...)`` saves it with a card that names the search."""

    best_trial: int
    best_value: float
    best_params: dict[str, Any]
    baseline: dict[str, Any]
    trials: list[dict[str, Any]]
    summary: dict[str, Any]
    trainer: Any = dataclasses.field(default=None, repr=False)
    study: Any = dataclasses.field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "best_trial": self.best_trial,
            "best_value": self.best_value,
            "best_params": self.best_params,
            "baseline": self.baseline,
            "summary": self.summary,
            "trials": self.trials,
        }

    def card_entry(self) -> str:
        """One line for the model card of the chosen run: the search, its rule and the chosen settings."""
        s = self.summary
        chosen = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.best_params.items())
        return (
            f"optuna, {s['trials']} trials ({s['pruned']} pruned, {s['failed']} failed), minimising {s['rule']}; "
            f"best trial {self.best_trial} (objective {self.best_value:.3f}): {chosen}"
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the search as JSON (atomically). It holds measurements and settings, no forget-set content."""
        from .atomic import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))


def default_hp_space(trainer: Any) -> Callable[[Any], dict[str, Any]]:
    """The default search space around the trainer's config: ``learning_rate``, the method's ``beta`` where it has
    one, and ``retain_coeff`` where a retain term is trained, each log-uniform from a quarter to four times its set
    value. The length of training stays as configured: pruning and the objective decide between trials, and
    :class:`~hf_unlearn.callbacks.ForgetTargetCallback` among the trainer's callbacks stops each one."""
    a = trainer.args
    ranges = {"learning_rate": a.learning_rate}
    if "beta" in declared_fields(a) and getattr(a, "beta", 0):
        ranges["beta"] = a.beta
    if trainer.requirements.retain and getattr(a, "retain_coeff", 0):
        ranges["retain_coeff"] = a.retain_coeff

    def space(trial: Any) -> dict[str, Any]:
        return {k: trial.suggest_float(k, v / 4, v * 4, log=True) for k, v in ranges.items()}

    return space


def _keep(trial: Any, record: Mapping[str, Any]) -> None:
    """Store the trial's record (settings, steps, checks, metrics, seconds) in the study as the user attribute
    ``"record"``: with a storage on disk it outlives the process, so an interrupted search can be resumed and reported
    (a trial without it was interrupted while it ran)."""
    trial.set_user_attr("record", json.loads(json.dumps(record, default=float)))


def _trainable(model: Any) -> dict[str, torch.Tensor]:
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def _load(model: Any, weights: Mapping[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for name, value in weights.items():
        params[name].copy_(value.to(params[name].device, params[name].dtype))


def search_settings(
    trainer: Any,
    *,
    nonmember_dataset: Sequence[Mapping[str, Any]],
    general_dataset: Sequence[Mapping[str, Any]] = (),
    retain_dataset: Sequence[Mapping[str, Any]] | None = None,
    hp_space: Callable[[Any], dict[str, Any]] | None = None,
    compute_objective: Callable[[dict[str, Any]], float] | None = None,
    n_trials: int = 8,
    every_n_steps: int = 10,
    utility_weight: float = 1.0,
    metric: str = "min_k",
    keep_best: bool = True,
    hp_name: Callable[[Any], str] | None = None,
    timeout: float | None = None,
    sampler: Any = None,
    pruner: Any = None,
    seed: int | None = 0,
    study_name: str | None = None,
    storage: Any = None,
    progress: bool = True,
) -> SearchResult:
    """Search ``trainer``'s settings for the smallest ``J`` (module docstring) with an optuna study.

    Args:
        trainer: an hf_unlearn trainer that has not trained yet; each trial builds a new trainer of its class with
            its inputs (forget/retain rows, tokenizer, reference, callbacks and objectives copied) and the sampled
            settings, on its model reset to the starting weights.
        nonmember_dataset: rows like the forget set that the model never trained on (required: they define the
            target). Overlap with the forget or retain rows is refused.
        general_dataset: general-knowledge QA rows whose answers must survive (optional).
        retain_dataset: retain rows whose answers must survive; default: the trainer's retain rows, if any.
        hp_space: ``trial -> dict`` of settings; a key names a field of the trainer's config, or
            ``"<CallbackClass>.<attribute>"`` to set an attribute of that callback's copy (``"RMUCallback.alpha"``).
            Default: :func:`default_hp_space`.
        compute_objective: ``metrics -> float`` to minimise instead of ``J`` (``metrics`` holds ``distance``,
            ``auc``, ``forget_prob``, ``nonmember_prob``, ``retain_prob``, ``general_prob``, ``retain_drop``,
            ``general_drop`` and ``objective``, which is ``J``).
        n_trials, timeout: the study's budget.
        every_n_steps: steps between reports to the pruner (each report costs one measurement).
        utility_weight, metric: ``J``'s utility weight and the distance's membership score.
        keep_best: leave the best trial's weights in the model (otherwise the starting weights are put back).
        hp_name: ``trial -> str``, the trial's ``run_name`` for loggers.
        sampler, pruner: optuna's; default: a seeded TPE sampler and a median pruner that waits for two complete
            trials and one report.
        seed: the default sampler's seed.
        study_name, storage: optuna's, to keep or resume a study in a database (each finished trial's record is
            kept there as its ``"record"`` user attribute; ``n_trials`` counts the new trials).
        progress: print one line per trial.
    """
    try:
        import optuna
    except ImportError:
        raise ImportError(
            "The settings search needs optuna: pip install 'hf-unlearn[search]' (or pip install optuna)."
        ) from None
    if trainer.state.global_step > 0:
        raise ValueError(
            "This trainer has already trained; the search starts every trial from the starting weights, so create "
            "the trainer anew and search before training."
        )
    if trainer.args.world_size > 1:
        raise ValueError("The settings search runs in one process; launch it without accelerate/torchrun ranks.")
    if n_trials < 1 or every_n_steps < 1:
        raise ValueError(f"n_trials and every_n_steps must be >= 1, got {n_trials} and {every_n_steps}.")
    inputs = trainer.init_inputs
    if any(o is not None for o in inputs["optimizers"]):
        raise ValueError("A search cannot reuse a given optimizer across trials; leave optimizers= unset.")
    retain_rows = as_rows(retain_dataset) if retain_dataset is not None else inputs["retain_rows"] or ()
    tokenizer = trainer.text_tokenizer
    model = trainer.accelerator.unwrap_model(trainer.model)
    objective = SearchObjective(
        tokenizer,
        forget=inputs["forget_rows"],
        nonmember=as_rows(nonmember_dataset),
        retain=retain_rows,
        general=as_rows(general_dataset) or (),
        metric=metric,
        utility_weight=utility_weight,
        system_prompt=trainer.args.system_prompt,
    )
    compute = compute_objective or (lambda m: m["objective"])
    space = hp_space or default_hp_space(trainer)
    start = _trainable(model)
    baseline = objective.set_baseline(model)
    base_args = trainer.args
    state: dict[str, Any] = {"best": None, "weights": None, "trainer": None}
    records: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    def run_trial(trial: Any) -> float:
        _load(model, start)
        params = space(trial)
        fields = {k: v for k, v in params.items() if "." not in k}
        attributes = {k: v for k, v in params.items() if "." in k}
        unknown = [k for k in fields if not hasattr(base_args, k)]
        if unknown:
            raise ValueError(
                f"The search space names {unknown}, which are not fields of {type(base_args).__name__}; name a config "
                "field, or '<CallbackClass>.<attribute>' for a callback's attribute."
            )
        extra = {"run_name": hp_name(trial)} if hp_name else {}
        args = dataclasses.replace(
            base_args,
            **fields,
            **extra,
            output_dir=os.path.join(base_args.output_dir, f"trial-{trial.number}"),
            save_strategy="no",
            push_to_hub=False,
        )
        # Callbacks and objectives carry per-run state: each trial gets fresh copies, sharing the model, the
        # tokenizer and the reference rather than copying them, and bound to no trainer yet.
        memo = {id(trainer): None, id(model): model, id(trainer.model): trainer.model, id(tokenizer): tokenizer}
        if trainer.ref_model is not None:
            memo[id(trainer.ref_model)] = trainer.ref_model
        callbacks = copy.deepcopy(inputs["callbacks"], memo)
        objectives = copy.deepcopy(inputs["objectives"], memo)
        for key, value in attributes.items():
            owner, attr = key.rsplit(".", 1)
            match = [o for o in [*callbacks, *objectives] if type(o).__name__ == owner]
            if not match or not hasattr(match[0], attr):
                raise ValueError(f"The search space names {key!r}, but no callback {owner} with an attribute {attr!r}.")
            setattr(match[0], attr, value)
        reporter = _TrialReporter(objective, trial, every_n_steps, compute)
        trial_trainer = trainer.spawn(args=args, callbacks=[*callbacks, reporter], objectives=objectives)
        record: dict[str, Any] = {"trial": trial.number, "params": params, "state": "running"}
        records.append(record)
        began = time.perf_counter()
        try:
            trial_trainer.train()
        except NonFiniteLossError as err:
            record.update(state="failed", error=str(err), seconds=round(time.perf_counter() - began, 1))
            _keep(trial, record)
            raise
        finally:
            trial_trainer.optimizer = trial_trainer.lr_scheduler = None  # the Adam state is not needed any more
            with contextlib.suppress(OSError):  # the trial's folder, unless a logger wrote into it
                os.rmdir(args.output_dir)
        record.update(steps=trial_trainer.state.global_step, history=reporter.history)
        if reporter.pruned_at is not None:
            record.update(state="pruned", seconds=round(time.perf_counter() - began, 1))
            _keep(trial, record)
            if progress:
                logger.info(f"search trial {trial.number}: pruned at step {reporter.pruned_at} {params}")
            raise optuna.TrialPruned()
        metrics = objective.measure(model)
        value = float(compute(metrics))
        if not math.isfinite(value):
            record.update(state="failed", error=f"objective is {value}")
            _keep(trial, record)
            raise optuna.TrialPruned()
        record.update(state="complete", value=value, metrics=metrics, seconds=round(time.perf_counter() - began, 1))
        _keep(trial, record)
        if state["best"] is None or value < state["best"]:
            state.update(
                best=value, weights=_trainable(model), trainer=trial_trainer, number=trial.number, params=params
            )
        if progress:
            logger.info(f"search trial {trial.number}: J = {value:.4f} after {record['steps']} steps {params}")
        return value

    if sampler is None:
        sampler = optuna.samplers.TPESampler(seed=seed)
    if pruner is None:
        pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    study = optuna.create_study(
        direction="minimize",
        sampler=sampler,
        pruner=pruner,
        study_name=study_name,
        storage=storage,
        load_if_exists=storage is not None,
    )
    verbosity = optuna.logging.get_verbosity()
    if progress:  # one line per trial of our own (J, steps, settings) instead of optuna's
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():  # the AUC-spread warning was given once, by the objective
            warnings.filterwarnings(
                "ignore", message=".*non-member rows the AUC of indistinguishable.*", category=UserWarning
            )
            study.optimize(run_trial, n_trials=n_trials, timeout=timeout, catch=(NonFiniteLossError,))
    finally:
        optuna.logging.set_verbosity(verbosity)
        # Every trial's config re-created accelerate's process state; the trainers kept for the caller get theirs back.
        for kept in {id(t): t for t in (trainer, state["trainer"]) if t is not None}.values():
            kept.create_accelerator_and_postprocess()
    if state["trainer"] is None:
        _load(model, start)
        raise RuntimeError(
            f"No trial of the search completed ({len(records)} pruned or failed); widen the search space or lower the "
            "learning rate."
        )
    _load(model, state["weights"] if keep_best else start)
    summary = {
        "rule": (
            f"J = |{objective.distance.summary['distance']}| + {utility_weight} * (retain drop + general drop)"
            if compute_objective is None
            else "a user-given objective"
        ),
        "metric": metric,
        "trials": len(records),
        "complete": sum(r["state"] == "complete" for r in records),
        "pruned": sum(r["state"] == "pruned" for r in records),
        "failed": sum(r["state"] == "failed" for r in records),
        "every_n_steps": every_n_steps,
        "seconds": round(time.perf_counter() - t0, 1),
        "measure_seconds": round(objective.seconds, 1),
    }
    best_trainer = state["trainer"]
    best_trainer.args.output_dir = base_args.output_dir
    return SearchResult(
        best_trial=state["number"],
        best_value=state["best"],
        best_params=dict(state["params"]),
        baseline=baseline,
        trials=records,
        summary=summary,
        trainer=best_trainer,
        study=study,
    )
