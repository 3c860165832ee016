"""Refusal targets of the IDK objectives as tokenised columns (the pool itself is :mod:`hf_unlearn.data.refusals`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .reasoning import reasoning_rows
from .refusals import IDK_RESPONSES, with_refusals
from .tokenization import tokenize_rows

__all__ = ["IDK_RESPONSES", "refusal_columns", "with_refusals"]


def refusal_columns(
    rows: Sequence[Mapping[str, Any]],
    indices: Sequence[int],
    tokenizer: Any,
    *,
    responses: Sequence[str] | None = None,
    seed: int = 0,
    max_length: int | None = 512,
    system_prompt: str | None = None,
    prefix: str = "idk",
    reasoning: str | None = None,
) -> dict[str, list]:
    """Tokenised refusal sequences ``<prefix>_input_ids``/``<prefix>_labels`` for the source rows ``indices`` of
    ``rows`` (the ``index`` column of a tokenised table): the forget question answered with a refusal from the pool,
    drawn once per row from ``seed``. ``reasoning`` (``"reasoned"``, ``"direct"`` or ``"answer"``) gives the
    reasoning-format refusal of :func:`~hf_unlearn.data.reasoning.reasoning_rows` instead."""
    if reasoning is not None:
        refusals = reasoning_rows(rows, idk=reasoning, idk_responses=responses, seed=seed)
    else:
        refusals = with_refusals(rows, responses, seed)
    encoded = tokenize_rows(
        [refusals[i] for i in indices], tokenizer, max_length=max_length, system_prompt=system_prompt
    )
    if len(encoded) != len(indices):
        raise ValueError(
            f"{len(indices) - len(encoded)} refusal sequence(s) have no answer token left after truncation to "
            f"max_length={max_length}; raise max_length."
        )
    return {
        f"{prefix}_input_ids": [e["input_ids"] for e in encoded],
        f"{prefix}_labels": [e["labels"] for e in encoded],
    }
