"""Never train on NaN: a non-finite loss term stops training before its backward pass, a finite loss with a
non-finite gradient before the optimizer step; both name the step, and the weights stay those of the step before."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import TrainerCallback

from ..objective import NonFiniteLossError

__all__ = ["FiniteGradients", "raise_if_not_finite"]


def raise_if_not_finite(names: Sequence[str], values: torch.Tensor, step: int) -> None:
    """Raise :class:`~hf_unlearn.objective.NonFiniteLossError` naming the step and every term when ``values`` (one
    per term of ``names``) holds NaN or infinity."""
    if torch.isfinite(values).all():
        return
    shown = ", ".join(f"{n}={v:.4g}" for n, v in zip(names, values.tolist(), strict=True))
    raise NonFiniteLossError(
        f"Non-finite loss at optimizer step {step} ({shown}). Training stopped before this step's update; the weights "
        f"are those after step {step - 1}. Lower the learning rate, check the data, or avoid fp16."
    )


class FiniteGradients(TrainerCallback):
    """Stops training before an optimizer step whose gradients hold NaN or infinity (a finite loss can still have
    them), so that the weights are never corrupted: they stay those of the previous step."""

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads:  # e.g. DeepSpeed keeps gradients inside its engine
            return
        norm = torch.nn.utils.get_total_norm(grads, error_if_nonfinite=False)
        if not torch.isfinite(norm):
            step = state.global_step + 1
            raise NonFiniteLossError(
                f"Non-finite gradient at optimizer step {step} (norm {float(norm)}), from a finite loss. Training "
                f"stopped before this step's update; the weights are those after step {step - 1}. Lower the learning "
                "rate, check the data, or avoid fp16."
            )
