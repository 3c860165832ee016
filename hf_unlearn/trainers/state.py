"""Objective events and state: one checkpoint file for every objective and callback.

The trainer calls :meth:`~hf_unlearn.objective.UnlearningObjective.after_step` and ``after_epoch`` of its objectives
through :class:`ObjectiveEvents`, and saves what their ``state_dict()`` returns - and that of any callback with a
``state_dict`` (duck-typed, e.g. :class:`~hf_unlearn.callbacks.ForgetTargetCallback`) - in
``checkpoint-N/hf_unlearn_state.safetensors``. A resumed run loads it before its first step, so PDU's dual variable,
RMU's control vector and the calibration history continue exactly where the interrupted run stopped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from transformers import TrainerCallback

from ..objective import EventContext, UnlearningObjective, log_from_callback

__all__ = ["STATE_FILE", "ObjectiveEvents", "load_state", "save_state", "state_owners"]

STATE_FILE = "hf_unlearn_state.safetensors"


def state_owners(objectives: Sequence[UnlearningObjective], callbacks: Sequence[Any]) -> dict[str, Any]:
    """Every object whose state travels with checkpoints, by a stable name: ``objective.<i>.<Class>`` for the
    trainer's objectives (representation callbacks included), ``callback.<Class>`` for other callbacks that have a
    ``state_dict``."""
    owners = {f"objective.{i}.{type(o).__name__}": o for i, o in enumerate(objectives)}
    seen = {id(o) for o in objectives}
    for cb in callbacks:
        if id(cb) not in seen and callable(getattr(cb, "state_dict", None)):
            owners[f"callback.{type(cb).__name__}"] = cb
    return owners


def save_state(folder: str | os.PathLike[str], owners: dict[str, Any]) -> bool:
    """Write the state of ``owners`` to ``folder/hf_unlearn_state.safetensors``; ``False`` when none has state."""
    from safetensors.torch import save_file

    tensors = {
        f"{name}/{key}": value.detach().cpu().contiguous()
        for name, owner in owners.items()
        for key, value in owner.state_dict().items()
    }
    if not tensors:
        return False
    save_file(tensors, os.path.join(folder, STATE_FILE))
    return True


def load_state(folder: str | os.PathLike[str], owners: dict[str, Any]) -> None:
    """Restore ``owners`` from ``folder``'s state file; a clear error when a stateful owner finds nothing."""
    from safetensors.torch import load_file

    path = os.path.join(folder, STATE_FILE)
    stateful = [name for name, owner in owners.items() if owner.state_dict()]
    if not os.path.isfile(path):
        if stateful:
            raise FileNotFoundError(
                f"Resuming from {folder}, but it holds no {STATE_FILE} for {', '.join(stateful)}: resume from a "
                "checkpoint written by this version of hf_unlearn with the same objectives and callbacks."
            )
        return
    saved = load_file(path)
    for name, owner in owners.items():
        state = {k.removeprefix(f"{name}/"): v for k, v in saved.items() if k.startswith(f"{name}/")}
        if name in stateful and not state:
            raise ValueError(f"{path} holds no state for {name}; the run was made with other objectives or callbacks.")
        if state:
            owner.load_state_dict(state)


class ObjectiveEvents(TrainerCallback):
    """The trainer's own callback: objective events after steps and epochs, and the state saved with every
    checkpoint (the trainer restores it before a resumed run starts, before any callback's ``on_train_begin``)."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def _context(self, args, state) -> EventContext:
        trainer = self.trainer
        accelerator = trainer.accelerator

        def reduce(values: Sequence[float]) -> list[float]:
            t = torch.tensor(list(values), dtype=torch.float64, device=accelerator.device)
            if accelerator.num_processes > 1:
                t = accelerator.reduce(t, reduction="sum")
            return t.tolist()

        return EventContext(
            args=args,
            step=state.global_step,
            epoch=state.epoch or 0.0,
            training_rank_count=accelerator.num_processes,
            _reduce=reduce,
            _log=lambda logs: log_from_callback(trainer, logs),
            _paired_retain_nll=trainer.paired_retain_nll,
        )

    def owners(self) -> dict[str, Any]:
        return state_owners(self.trainer.objectives, self.trainer.callback_handler.callbacks)

    def on_step_end(self, args, state, control, **kwargs):
        ctx = self._context(args, state)
        for objective in self.trainer.objectives:
            objective.after_step(ctx)

    def on_epoch_end(self, args, state, control, **kwargs):
        ctx = self._context(args, state)
        for objective in self.trainer.objectives:
            objective.after_epoch(ctx)

    def on_save(self, args, state, control, **kwargs):
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if os.path.isdir(folder) and state.is_world_process_zero:
            save_state(folder, self.owners())
