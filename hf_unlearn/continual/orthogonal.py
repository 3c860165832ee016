"""O3's orthogonal regulariser ("On Large Language Model Continual Unlearning", Gao et al., ICLR 2025,
arXiv:2407.10223).

One LoRA adapter is trained continually, request after request. While request ``t`` trains, the ``lora_A`` matrices
of every earlier request are frozen snapshots, and

    O_t = (1 / n_layers) * sum_layers sum_modules sum_{i < t} || A_i A_t^T ||_F^2

keeps the new ``lora_A`` rows orthogonal to the earlier requests' subspaces (``A`` is ``r x d_in``, so each product
is ``r x r``; only ``lora_A`` is constrained, ``lora_B`` is free). The first request has no penalty.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..objective import LossTerm, UnlearningObjective

__all__ = ["OrthogonalLoRAObjective", "lora_A_snapshot", "orthogonal_penalty"]

_LAYER = re.compile(r"\.layers\.(\d+)\.")


def _lora_A_params(model: torch.nn.Module, adapter: str = "default") -> dict[str, torch.nn.Parameter]:
    """``lora_A`` weights of ``adapter`` by module name (the PEFT prefix stripped, so names survive wrapping)."""
    out = {}
    for name, module in model.named_modules():
        lora_A = getattr(module, "lora_A", None)
        if isinstance(lora_A, torch.nn.ModuleDict) and adapter in lora_A:
            out[name.split("base_model.model.", 1)[-1]] = lora_A[adapter].weight
    if not out:
        raise ValueError(f"The model has no LoRA adapter {adapter!r}: O3 trains a PEFT LoRA adapter (peft_config=).")
    return out


def lora_A_snapshot(model: torch.nn.Module, adapter: str = "default") -> dict[str, torch.Tensor]:
    """Frozen float32 CPU copies of the adapter's ``lora_A`` matrices (one request's subspace)."""
    return {name: p.detach().float().cpu().clone() for name, p in _lora_A_params(model, adapter).items()}


def orthogonal_penalty(
    current: Mapping[str, torch.Tensor], previous: Sequence[Mapping[str, torch.Tensor]]
) -> torch.Tensor:
    """``O_t`` for the current ``lora_A`` matrices against earlier snapshots (0 without any)."""
    names = list(current)
    first = next(iter(current.values()))
    total = first.new_zeros((), dtype=torch.float32)
    if not previous:
        return total
    layers = {m.group(1) for n in names if (m := _LAYER.search(f".{n}."))} or {"0"}
    for snapshot in previous:
        missing = [n for n in names if n not in snapshot]
        if missing:
            raise ValueError(
                f"An earlier request's snapshot has no lora_A for {missing[0]} ({len(missing)} modules): every request "
                "must train the same LoRA target modules."
            )
        for n in names:
            a_t = current[n].float()
            a_i = snapshot[n].to(device=a_t.device, dtype=torch.float32)
            total = total + (a_i @ a_t.T).pow(2).sum()
    return total / len(layers)


class OrthogonalLoRAObjective(UnlearningObjective):
    """``weight * O_t`` once per optimizer step, added to any trainer with ``objectives=[...]`` (O3's default
    ``weight`` is 0.1)."""

    name = "o3_orthogonal"

    def __init__(self, previous: Sequence[Mapping[str, torch.Tensor]], weight: float = 0.1, adapter: str = "default"):
        self.previous, self.weight, self.adapter = list(previous), weight, adapter
        self._current: dict[str, torch.nn.Parameter] = {}

    def setup(self, model: Any, args: Any) -> None:
        self._current = _lora_A_params(model, self.adapter)
        orthogonal_penalty({n: p.detach() for n, p in self._current.items()}, self.previous)  # names/shapes check

    def loss_terms(self, batch, ctx):
        penalty = orthogonal_penalty(self._current, self.previous)
        rows = batch["forget_input_ids"].shape[0]  # a sum over the window's forget rows: once per optimizer step
        return {"orthogonal": LossTerm(self.weight * penalty * rows, "forget", "rows")}, {
            "o3/orthogonal": penalty.detach()
        }

    def describe(self) -> str:
        return f"O3 orthogonal LoRA (weight {self.weight}, {len(self.previous)} earlier requests)"
