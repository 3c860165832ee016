"""The loss-term type shared by trainers and representation callbacks (kept free of heavy imports)."""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["LossTerm"]


class LossTerm(NamedTuple):
    """A weighted loss term as a sum over rows or tokens of ``group``, normalised by the count ``what`` of that group
    (``rows``, ``tokens``, ``positions`` or ``padded``) - per micro-batch for logging, per window for the gradient."""

    total: torch.Tensor
    group: str
    what: str
