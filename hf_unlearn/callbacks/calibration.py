"""Stop unlearning where the forget set looks like data the model never saw.

The goal of unlearning is the retain model - a model that never trained on the forget set - not a forget probability
of zero: pushing past that point marks exactly what was removed, which a membership-inference attack then reads off
(PrivLeak; "MUSE: Machine Unlearning Six-Way Evaluation for Language Models", arXiv:2407.06460). A user has no retain
model, but can have *non-members*: records like the forget set that the model never trained on. This callback scores
both sets periodically and stops training when a membership attack can no longer tell them apart (AUC 0.5), restoring
the weights of the evaluation closest to that point if training went past it.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import TrainerCallback

from ..data.tokenization import tokenize_rows
from ..evaluation import metrics as M
from ..evaluation.mia import content_tokens
from ..evaluation.scoring import score_sequences
from ..objective import TrainerBoundCallback, from_json_state, json_state

__all__ = ["ForgetTargetCallback", "nonmembers_needed"]

_METRICS = ("min_k", "loss", "prob")


def nonmembers_needed(num_forget: int, tolerance: float) -> int | None:
    """Fewest non-members for which the AUC of indistinguishable sets has a standard deviation
    ``sqrt((n_f + n_n + 1) / (12 n_f n_n))`` (Mann-Whitney under the null) no larger than ``tolerance``; ``None``
    when no number suffices because the forget set itself is too small."""
    denominator = 12 * num_forget * tolerance**2 - 1
    if denominator <= 0:
        return None
    return math.ceil((num_forget + 1) / denominator)


class ForgetTargetCallback(TrainerCallback, TrainerBoundCallback):
    """Every ``every_n_steps`` optimizer steps, measure how far the forget set is from the non-member level and stop
    training when it gets there.

    The distance ``d`` depends on ``metric``:

    - ``"min_k"`` (default) or ``"loss"``: ``d = AUC - 0.5``, where AUC is the forget-vs-non-member membership AUC of
      the Min-K% (k = ``min_k``) or LOSS attack, in open-unlearning's convention (``P(score(non-member) >
      score(forget))``: about 1 for a model that memorised the forget set, 0.5 at the non-member level, below 0.5
      when the forget set has been pushed past it).
    - ``"prob"``: ``d = mean forget answer probability - mean non-member answer probability``.

    Training stops at the first evaluation with ``|d| <= tolerance`` (the target is reached), or with
    ``d < -tolerance`` (it was overshot between two evaluations). Non-members are data the model never trained on, so
    unlearning moves their scores little: they are scored at the first evaluation and scored again only when the
    distance computed with their last scores is within ``tolerance + rescore_margin`` of the target or past it, so
    every decision to stop uses fresh scores while the evaluations far from the target score the forget rows only.
    With ``restore_best``, when training stopped (the target reached or overshot) the trainable parameters are set
    back to those of the evaluation with the smallest ``|d|`` if training moved past it; they are kept as a CPU copy,
    which for full fine-tuning is one copy of the model. A run that never reaches the target keeps its final weights:
    the evaluation least far from the target is no stopping point, and going back to it can cost more than it gains
    (a refusal objective's early steps, say).
    With ``refine_overshoot`` (the default, with ``restore_best``), the trainable parameters after every step between
    two evaluations are kept as CPU copies; when an evaluation finds the target overshot, those steps are bisected
    (about ``log2(every_n_steps)`` extra evaluations, paid only then) for the one closest to the target, whose
    weights are restored. A fast method can cross the whole band between two evaluations; this finds the crossing
    without evaluating every step. It costs ``every_n_steps - 1`` copies of the trainable parameters (an adapter's
    are small), and is skipped with a warning above ``refine_max_mib`` (full fine-tuning of all but small models).
    Scoring reuses the evaluation's label-position path (no generation, no ``(B, T, V)`` logits). Every evaluation is
    logged through the Trainer as ``calibration/distance``, ``calibration/auc`` (LOSS's with ``metric="prob"``), the
    two answer probabilities and ``calibration/nonmember_rescored`` (a refined evaluation adds ``calibration/refined``
    and ``calibration/evaluated_step``, the step whose weights it scored); :attr:`summary` says where it stopped.

    Args:
        tokenizer: the model's tokenizer.
        forget: the forget rows (QA rows with ``question``/``answer``).
        nonmember: rows of the same kind the model never trained on. A non-member that shares a question (or, where
            rows name one, an ``author``) with ``forget`` or ``retain`` is refused.
        retain: optional retain rows, used only to check that ``nonmember`` does not overlap them.
        metric: ``"min_k"``, ``"loss"`` or ``"prob"`` (see above).
        tolerance: how close to the non-member level counts as reached (AUC points, or probability).
        every_n_steps: evaluation interval in optimizer steps (and at the start of training).
        min_k: the k of Min-K%.
        restore_best: restore the best evaluation's weights when training stopped past it.
        rescore_margin: see above; ``None`` scores the non-members at every evaluation.
        refine_overshoot: bisect the steps since the last evaluation after an overshoot (see above).
        refine_max_mib: the most memory the kept copies may take before refinement is skipped.
        trainer: the trainer to log through; hf_unlearn trainers bind themselves.
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        forget: Sequence[Mapping[str, Any]],
        nonmember: Sequence[Mapping[str, Any]],
        retain: Sequence[Mapping[str, Any]] = (),
        metric: str = "min_k",
        tolerance: float = 0.1,
        every_n_steps: int = 10,
        min_k: float = 0.4,
        restore_best: bool = True,
        rescore_margin: float | None = 0.1,
        refine_overshoot: bool = True,
        refine_max_mib: float = 2048,
        system_prompt: str | None = None,
        batch_size: int = 32,
        trainer: Any = None,
    ) -> None:
        if metric not in _METRICS:
            raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}.")
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}.")
        if not tolerance > 0:
            raise ValueError(f"tolerance must be > 0, got {tolerance}.")
        if not forget or not nonmember:
            raise ValueError("ForgetTargetCallback needs forget rows and non-member rows (data never trained on).")
        _check_overlap(forget, nonmember, "forget")
        if retain:
            _check_overlap(retain, nonmember, "retain")
        if metric != "prob":
            needed = nonmembers_needed(len(forget), tolerance)
            if needed is None or len(nonmember) < needed:
                advice = (
                    f"use at least {needed} non-members"
                    if needed
                    else "use more forget rows for the check or a larger tolerance"
                )
                warnings.warn(
                    f"With {len(forget)} forget and {len(nonmember)} non-member rows the AUC of indistinguishable sets "
                    f"varies by more than the tolerance {tolerance}; {advice}.",
                    UserWarning,
                    stacklevel=2,
                )
        self.tokenizer = tokenizer
        self.metric = metric
        self.tolerance = tolerance
        self.every_n_steps = every_n_steps
        self.min_k = min_k
        self.restore_best = restore_best
        if rescore_margin is not None and rescore_margin < 0:
            raise ValueError(f"rescore_margin must be >= 0 or None, got {rescore_margin}.")
        self.rescore_margin = rescore_margin
        self.refine_overshoot = refine_overshoot and restore_best
        self.refine_max_mib = refine_max_mib
        self._trail: dict[int, dict[str, torch.Tensor]] = {}  # step -> trainable weights since the last evaluation
        self.refined = 0
        self._nonmember_scores: tuple[list[float], list[float]] | None = None
        self.batch_size = batch_size
        self.trainer = trainer
        self._forget = tokenize_rows(forget, tokenizer, system_prompt=system_prompt)
        self._nonmember = tokenize_rows(nonmember, tokenizer, system_prompt=system_prompt)
        self._special = set(getattr(tokenizer, "all_special_ids", []) or []) | {tokenizer.eos_token_id}
        self.history: list[dict[str, float]] = []
        self.best: dict[str, float] | None = None
        self._best_weights: dict[str, torch.Tensor] | None = None
        self._last_step = -1
        self.stopped: str | None = None
        self.restored_step: int | None = None
        self.seconds = 0.0  # time spent measuring (the callback's overhead)

    # -- measurement --------------------------------------------------------------------------------------------
    def _scores(self, model: Any, rows: list[dict]) -> tuple[list[float], list[float]]:
        """Per row: the attack score (higher = less likely a member) and the answer probability."""
        s = score_sequences(
            model,
            rows,
            pad_token_id=self.tokenizer.pad_token_id,
            batch_size=self.batch_size,
            token_stats=self.metric == "min_k",  # LOSS and probability need sums only
        )
        probs = s.normalized_prob.tolist()
        if self.metric != "min_k":  # the AUC logged with metric="prob" is LOSS's
            return s.avg_nll.tolist(), probs
        attack = [
            M.min_k_score(content_tokens(s.token_logps[i], rows[i]["labels"], self._special), self.min_k)
            for i in range(len(rows))
        ]
        return attack, probs

    def _distance(self, forget: tuple[list[float], list[float]], nonmember: tuple[list[float], list[float]]) -> dict:
        (f_attack, f_prob), (n_attack, n_prob) = forget, nonmember
        out = {"forget_prob": sum(f_prob) / len(f_prob), "nonmember_prob": sum(n_prob) / len(n_prob)}
        out["auc"] = M.auc(f_attack, n_attack)
        out["distance"] = out["forget_prob"] - out["nonmember_prob"] if self.metric == "prob" else out["auc"] - 0.5
        return out

    def measure(self, model: Any) -> dict[str, float]:
        """Score the forget rows and, when needed (see the class docstring), the non-member rows: the distance ``d``
        and what it is computed from (``nonmember_rescored``: 1 when the non-members were scored now)."""
        forget = self._scores(model, self._forget)
        if self._nonmember_scores is not None and self.rescore_margin is not None:
            out = self._distance(forget, self._nonmember_scores)
            if out["distance"] > self.tolerance + self.rescore_margin:  # far from the target: no decision here
                return {**out, "nonmember_rescored": 0.0}
        self._nonmember_scores = self._scores(model, self._nonmember)
        return {**self._distance(forget, self._nonmember_scores), "nonmember_rescored": 1.0}

    # -- callback -----------------------------------------------------------------------------------------------
    @staticmethod
    def _trainable(model: Any) -> dict[str, torch.Tensor]:
        return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad}

    @staticmethod
    def _load(model: Any, weights: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name in weights:
                    p.copy_(weights[name].to(p.device, p.dtype))

    def _record(self, state: Any, step: int, values: dict, weights: Any, **extra: float) -> None:
        """Keep one evaluation (``weights``: the evaluated parameters, or a callable giving them when needed)."""
        entry = {"step": step, **values, **extra}
        self.history.append(entry)
        if self.best is None or abs(values["distance"]) < abs(self.best["distance"]):
            self.best = entry
            if self.restore_best:
                self._best_weights = weights() if callable(weights) else weights
        logged = {**values, **extra, **({"evaluated_step": float(step)} if extra else {})}
        self.log_metrics({f"calibration/{k}": v for k, v in logged.items()}, state)

    def _refine(self, state: Any, model: Any) -> None:
        """Bisect the kept steps between the last evaluation (before the target) and this one (past it)."""
        steps, current = sorted(self._trail), self._trainable(model)
        lo, hi = 0, len(steps) - 1
        while lo <= hi:
            mid = (lo + hi) // 2
            self._load(model, self._trail[steps[mid]])
            values = self.measure(model)
            self.refined += 1
            self._record(state, steps[mid], values, self._trail[steps[mid]], refined=1.0)
            if abs(values["distance"]) <= self.tolerance:
                self.stopped = "reached"
                break
            lo, hi = (mid + 1, hi) if values["distance"] > 0 else (lo, mid - 1)
        self._load(model, current)  # training ends at this step; on_train_end restores the best weights

    def _evaluate(self, state: Any, model: Any, control: Any) -> None:
        if state.global_step == self._last_step or self.stopped:
            return
        self._last_step = state.global_step
        start = time.perf_counter()
        values = self.measure(model)
        self._record(state, state.global_step, values, lambda: self._trainable(model))
        if abs(values["distance"]) <= self.tolerance:
            self.stopped = "reached"
        elif values["distance"] < -self.tolerance:
            self.stopped = "overshot"
            self._trail.pop(state.global_step, None)  # at the end of training the last step was kept too
            if self._trail:
                self._refine(state, model)
        self._trail = {}
        self.seconds += time.perf_counter() - start
        if self.stopped:  # at step 0 too: a model already at the non-member level has nothing to unlearn
            control.should_training_stop = True

    def _keep_step(self, state: Any, model: Any) -> None:
        """Keep this step's trainable weights for a refinement, within ``refine_max_mib``."""
        if not self.refine_overshoot or self.stopped:
            return
        size = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad) / 2**20
        if size * (len(self._trail) + 1) > self.refine_max_mib:
            warnings.warn(
                f"ForgetTargetCallback: keeping {len(self._trail) + 1} copies of {size:.0f} MiB of trainable weights "
                f"exceeds refine_max_mib={self.refine_max_mib:g}; overshoots are not refined. Train an adapter, "
                "lower every_n_steps or raise refine_max_mib.",
                UserWarning,
                stacklevel=2,
            )
            self.refine_overshoot, self._trail = False, {}
            return
        self._trail[state.global_step] = self._trainable(model)

    def _restore(self, model: Any, step: int) -> None:
        if self.restore_best and self.stopped and self._best_weights and self.best["step"] != step:
            self._load(model, self._best_weights)
            self.restored_step = self.best["step"]
        self._best_weights, self._trail = None, {}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every_n_steps == 0:  # step 0; a resume between two checks waits for the next
            self._evaluate(state, model, control)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every_n_steps == 0:
            self._evaluate(state, model, control)
        else:
            self._keep_step(state, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._evaluate(state, model, control)  # the final weights count too (skipped once stopped)
        self._restore(model, state.global_step)

    # -- state (saved with checkpoints by hf_unlearn trainers) and card ----------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The evaluations so far, the best weights and those kept for a refinement: a resumed run stops, refines
        and restores exactly as the uninterrupted one."""
        meta = {
            "history": self.history,
            "best": self.best,
            "stopped": self.stopped,
            "refined": self.refined,
            "last_step": self._last_step,
            "seconds": self.seconds,
            "refine_overshoot": self.refine_overshoot,
        }
        state = {"meta": json_state(meta)}
        state.update({f"best.{name}": t for name, t in (self._best_weights or {}).items()})
        for step, weights in self._trail.items():
            state.update({f"trail.{step}.{name}": t for name, t in weights.items()})
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        meta = from_json_state(state["meta"])
        self.history, self.best, self.stopped = meta["history"], meta["best"], meta["stopped"]
        self.refined, self._last_step, self.seconds = meta["refined"], meta["last_step"], meta["seconds"]
        self.refine_overshoot = meta["refine_overshoot"]
        best = {k.removeprefix("best."): v for k, v in state.items() if k.startswith("best.")}
        self._best_weights = best or None
        self._trail = {}
        for key, value in state.items():
            if key.startswith("trail."):
                _, step, name = key.split(".", 2)
                self._trail.setdefault(int(step), {})[name] = value

    def card_entries(self) -> dict[str, str]:
        """The stopping rule and where training stopped, for the model card."""
        s = self.summary
        return {
            "calibrated_stopping": (
                f"{s['rule']} with d = {s['distance']} ({s['metric']}) every {s['every_n_steps']} steps; "
                f"{s['stopped']}, best step {s['best_step']}"
                + (f" ({s['refined_evaluations']} refined evaluations)" if s["refined_evaluations"] else "")
                + (f", weights of step {s['restored_step']} restored" if s["restored_step"] is not None else "")
            )
        }

    @property
    def summary(self) -> dict[str, Any]:
        """The stopping rule and where it stopped (for logs and model cards)."""
        return {
            "rule": f"stop when |d| <= {self.tolerance} or d < -{self.tolerance}",
            "metric": self.metric,
            "distance": "forget_prob - nonmember_prob" if self.metric == "prob" else "AUC - 0.5",
            "every_n_steps": self.every_n_steps,
            "stopped": self.stopped or "not reached",
            "best_step": None if self.best is None else self.best["step"],
            "best_distance": None if self.best is None else self.best["distance"],
            "restored_step": self.restored_step,
            "evaluations": len(self.history),
            "refined_evaluations": self.refined,
            "seconds": round(self.seconds, 1),
        }


def _check_overlap(rows: Sequence[Mapping[str, Any]], nonmember: Sequence[Mapping[str, Any]], name: str) -> None:
    questions = {r.get("question") for r in rows} - {None}
    same = [r["question"] for r in nonmember if r.get("question") in questions]
    if same:
        raise ValueError(
            f"{len(same)} non-member rows share a question with the {name} set (e.g. {same[0]!r}); non-members must "
            "be data the model never trained on - remove them from the non-member set."
        )
    authors = {r.get("author") for r in rows} - {None}
    shared = sorted({r["author"] for r in nonmember if r.get("author") in authors})
    if shared:
        raise ValueError(
            f"Non-member rows name authors of the {name} set ({', '.join(shared[:3])}); facts about the same person "
            "are not non-members - use authors the model never saw (e.g. the benchmark's holdout split)."
        )
