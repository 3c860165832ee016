"""Forget/retain pairing for training.

An epoch is one pass over the forget set (as in TOFU, NPO and open-unlearning). Each forget row is paired with
``retain_per_forget`` retain rows, so every batch has the same forget:retain mix. Retain rows come from a seeded
stream of permutations of the retain set: within a stream window no retain row repeats, successive epochs walk
on through the stream (so a small forget set still sees the whole retain set over time), and the draw is a pure
function of ``(seed, epoch, index)`` - reproducible across runs, resumes and data-loader workers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from torch.utils.data import Dataset

__all__ = ["ForgetRetainDataset"]


@lru_cache(maxsize=8)
def _permutation(seed: int, cycle: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, cycle]).permutation(n)


class ForgetRetainDataset(Dataset):
    """Map-style dataset of forget rows paired with deterministically drawn retain rows.

    Items have the forget row's fields prefixed ``forget_`` and the retain rows' fields prefixed ``retain_``
    (a list of ``retain_per_forget`` values per field). :class:`~hf_unlearn.data.DataCollatorForUnlearning` pads
    both groups; the Trainer's sampler, distributed sharding and resume work unchanged because this is an ordinary
    map-style dataset. Pass it with ``remove_unused_columns=False``.

    Args:
        forget: tokenised forget rows (mappings with ``input_ids``, ``labels``, ...).
        retain: tokenised retain rows; may be ``None`` for methods without a retain term.
        retain_per_forget: retain rows drawn per forget row (the forget:retain mix of every batch is 1:k).
        seed: seed of the retain stream.
    """

    def __init__(
        self,
        forget: Sequence[Mapping[str, Any]],
        retain: Sequence[Mapping[str, Any]] | None = None,
        *,
        retain_per_forget: int = 1,
        seed: int = 42,
    ) -> None:
        if len(forget) == 0:
            raise ValueError("The forget set is empty: there is nothing to unlearn.")
        if retain is not None and len(retain) == 0:
            raise ValueError("The retain set is empty; pass retain=None for methods without a retain term.")
        if retain_per_forget < 1:
            raise ValueError(f"retain_per_forget must be >= 1, got {retain_per_forget}.")
        self.forget = forget
        self.retain = retain
        self.retain_per_forget = retain_per_forget
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by accelerate's data loader at each epoch start; selects the next window of the retain stream."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.forget)

    def retain_indices(self, index: int, epoch: int | None = None) -> list[int]:
        """Retain row indices paired with forget row ``index`` in ``epoch`` (default: the current epoch)."""
        if self.retain is None:
            return []
        epoch = self.epoch if epoch is None else epoch
        n, k = len(self.retain), self.retain_per_forget
        start = (epoch * len(self.forget) + index) * k
        return [int(_permutation(self.seed, pos // n, n)[pos % n]) for pos in range(start, start + k)]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = {f"forget_{k}": v for k, v in self.forget[index].items()}
        if self.retain is not None:
            rows = [self.retain[j] for j in self.retain_indices(index)]
            for key in rows[0]:
                item[f"retain_{key}"] = [r[key] for r in rows]
        return item
