"""Cheap periodic evaluation during unlearning, logged through the Trainer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from transformers import TrainerCallback

from ..data.tokenization import tokenize_rows
from ..evaluation.ranking import rank_answers
from ..evaluation.scoring import score_sequences
from ..objective import TrainerBoundCallback

__all__ = ["EvalCallback"]


class EvalCallback(TrainerCallback, TrainerBoundCallback):
    """Every ``every_n_steps`` optimizer steps (and at the end), log forget/retain answer probability and
    general-knowledge accuracy: the three curves that show forgetting, collateral damage and utility.

    The numbers go through ``trainer.log`` (progress bar, log history, every reporting integration) as
    ``eval/forget_prob``, ``eval/retain_prob`` and ``eval/general_knowledge_accuracy``. Rows are tokenised once. The
    model is scored in eval mode without gradients and put back in train mode; with QLoRA on CPU this relies on the
    bitsandbytes fix applied by :func:`~hf_unlearn.load_model`.

    Args:
        tokenizer: the model's tokenizer.
        forget, retain: QA rows whose answer probability is tracked (keep them small: tens of rows).
        general_knowledge: QA rows with ``perturbed_answer`` (ranking accuracy), e.g. the built-in split.
        every_n_steps: evaluation interval in optimizer steps.
        trainer: the trainer to log through; hf_unlearn trainers bind themselves, others pass it here.
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        forget: Sequence[Mapping[str, Any]] = (),
        retain: Sequence[Mapping[str, Any]] = (),
        general_knowledge: Sequence[Mapping[str, Any]] = (),
        every_n_steps: int = 10,
        system_prompt: str | None = None,
        batch_size: int = 32,
        trainer: Any = None,
    ) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}.")
        if not (forget or retain or general_knowledge):
            raise ValueError("EvalCallback needs at least one of forget, retain or general_knowledge rows.")
        self.tokenizer = tokenizer
        self.every_n_steps = every_n_steps
        self.batch_size = batch_size
        self.system_prompt = system_prompt
        self.trainer = trainer
        self._sets = {
            name: tokenize_rows(rows, tokenizer, system_prompt=system_prompt)
            for name, rows in (("forget", forget), ("retain", retain))
            if rows
        }
        self._general = list(general_knowledge)
        self._last_step = -1

    def evaluate(self, model: Any) -> dict[str, float]:
        out = {}
        for name, rows in self._sets.items():
            s = score_sequences(model, rows, pad_token_id=self.tokenizer.pad_token_id, batch_size=self.batch_size)
            out[f"eval/{name}_prob"] = float(s.normalized_prob.mean())
        if self._general:
            res = rank_answers(
                model, self.tokenizer, self._general, system_prompt=self.system_prompt, batch_size=self.batch_size
            )
            out["eval/general_knowledge_accuracy"] = res.accuracy
        return out

    def _run(self, state, model) -> None:
        if state.global_step == self._last_step:
            return
        self._last_step = state.global_step
        self.log_metrics(self.evaluate(model), state)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._run(state, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every_n_steps == 0:
            self._run(state, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._run(state, model)
