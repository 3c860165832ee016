"""Refusal targets for the IDK objectives: one response per forget row, drawn from a seed and fixed for the run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..data.idk import IDK_RESPONSES
from ..data.schemas import Schema, detect_schema

__all__ = ["TOFU_PAPER", "with_refusals"]

# The IDK objectives come from TOFU (IdkSFT is its "idk" baseline; IdkDPO its preference variant).
TOFU_PAPER = {
    "title": "TOFU: A Task of Fictitious Unlearning for LLMs",
    "id": "2401.06121",
    "citation": (
        "@inproceedings{maini2024tofu,\n    title        = {{TOFU: A Task of Fictitious Unlearning for LLMs}},\n"
        "    author       = {Pratyush Maini and Zhili Feng and Avi Schwarzschild and Zachary C. Lipton and J. Zico "
        "Kolter},\n    year         = 2024,\n    booktitle    = {First Conference on Language Modeling},\n}"
    ),
}


def with_refusals(
    rows: Sequence[Mapping[str, Any]], responses: Sequence[str] | None, seed: int
) -> list[dict[str, Any]]:
    """Copies of QA/conversational ``rows`` whose answer is a refusal (``idk_answer`` also keeps it for reference).

    The draw is fixed per row (not re-sampled every epoch as in the TOFU code), so reference log-probs of the refusal
    can be precomputed once.
    """
    pool = list(responses) if responses else list(IDK_RESPONSES)
    if not pool:
        raise ValueError("idk_responses is empty.")
    picks = np.random.default_rng(seed).integers(0, len(pool), size=len(rows))
    out = []
    for row, k in zip(rows, picks, strict=True):
        schema = detect_schema(row)
        new = dict(row)
        refusal = pool[int(k)]
        if schema == Schema.QA:
            new["answer"] = refusal
        elif schema == Schema.MESSAGES:
            new["messages"] = [*row["messages"][:-1], {"role": "assistant", "content": refusal}]
        elif schema == Schema.PROMPT_COMPLETION:
            new["completion"] = [{"role": "assistant", "content": refusal}]
        else:
            raise ValueError(f"Refusal targets need question/answer or conversational rows, not {schema.value} rows.")
        new["idk_answer"] = refusal
        out.append(new)
    return out
