"""Exact gradient accumulation: every loss term is normalised by counts over the *whole* accumulation window (rows,
label tokens, attended positions, padded positions, and objectives' own counts), summed across processes, so
accumulating micro-batches gives the gradient of one large batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..data.tokenization import IGNORE_INDEX

__all__ = ["AccumulationMixin", "WindowCounts"]


class WindowCounts(dict):
    """Rows, label tokens and positions per group over one gradient-accumulation window (summed across ranks).

    Keys are ``"<group>/<what>"`` with ``what`` in ``rows``, ``tokens``, ``positions`` (attended) and ``padded``.
    ``processes`` is the factor that turns globally normalised per-rank losses back into DDP's gradient mean.
    """

    processes: int = 1

    def get_count(self, group: str, what: str) -> torch.Tensor:
        return self[f"{group}/{what}"].clamp(min=1)


def _groups(batch: Mapping[str, Any]) -> list[str]:
    return [k[: -len("_input_ids")] for k in batch if k.endswith("_input_ids")]


class AccumulationMixin:
    """``get_batch_samples`` hands ``compute_loss`` the window's counts (as ``num_items_in_batch``)."""

    def _count_window(
        self, batches: Sequence[Mapping[str, torch.Tensor]], device: Any, *, across_ranks: bool = True
    ) -> WindowCounts:
        names, values = [], []
        for group in _groups(batches[0]) if batches else []:
            for what in ("rows", "tokens", "positions", "padded"):
                names.append(f"{group}/{what}")
            per_batch = [
                torch.stack(
                    [
                        torch.tensor(b[f"{group}_input_ids"].shape[0], device=b[f"{group}_input_ids"].device),
                        (b[f"{group}_labels"][:, 1:] != IGNORE_INDEX).sum(),
                        b[f"{group}_attention_mask"].sum(),
                        torch.tensor(b[f"{group}_input_ids"].numel(), device=b[f"{group}_input_ids"].device),
                    ]
                )
                for b in batches
            ]
            values.append(torch.stack(per_batch).sum(0).float())
        for objective in self.objectives if batches else ():
            own = [objective.counts(b) for b in batches]
            for key in own[0]:
                names.append(key)
                values.append(torch.stack([torch.as_tensor(c[key], device=device).float() for c in own]).sum()[None])
        counts = WindowCounts()
        if not values:
            return counts
        totals = torch.cat(values).to(device)
        if across_ranks and self.args.world_size > 1 and self.args.average_tokens_across_devices:
            totals = self.accelerator.reduce(totals, reduction="sum")
            counts.processes = self.accelerator.num_processes
        counts.update(zip(names, totals, strict=True))
        return counts

    def get_batch_samples(self, epoch_iterator, num_batches: int, device: Any):
        batch_samples, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        return batch_samples, self._count_window(batch_samples, device)
