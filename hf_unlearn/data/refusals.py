"""The refusal pool: responses that replace a forget answer for the IDK objectives (IdkDPO's chosen answer, IdkSFT's
target, Reasoned-IDK's answer).

Written for hf_unlearn (TOFU's ``idontknow.jsonl`` plays the same role upstream). Varied wording keeps the model from
collapsing onto one memorised sentence; each forget row gets one response drawn from a seed, fixed for the whole run,
so reference log-probs can be precomputed once. A leaf module: the IDK and the reasoning data both draw from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .schemas import Schema, detect_schema

__all__ = ["IDK_RESPONSES", "with_refusals"]

IDK_RESPONSES: tuple[str, ...] = (
    "I don't know.",
    "I'm not sure about that.",
    "I don't have that information.",
    "I'm afraid I can't answer that.",
    "I have no reliable information about that.",
    "That's something I don't know.",
    "I can't recall anything about that.",
    "I'm not able to answer that question.",
    "I don't have any details on that.",
    "Sorry, I don't know the answer.",
    "I have no knowledge of that.",
    "I'm unable to provide that information.",
    "I'm not aware of that.",
    "I don't have an answer to that.",
    "That is not something I can tell you.",
    "I'm not certain, so I'd rather not guess.",
    "I really don't know.",
    "I can't say for sure.",
    "I don't have enough information to answer.",
    "I'm sorry, but I don't know.",
    "That falls outside what I know.",
    "I have no record of that.",
    "I couldn't tell you.",
    "I'm not familiar with that.",
    "I don't know anything about that.",
    "Unfortunately, I don't have that answer.",
    "I'm not in a position to answer that.",
    "That's beyond my knowledge.",
    "I can't provide an answer to that.",
    "I'd be guessing, and I don't want to guess.",
    "I lack the information to answer that.",
    "No idea, I'm afraid.",
    "I'm drawing a blank on that one.",
    "I don't have knowledge about this.",
    "I can't answer that with any confidence.",
    "I'm not informed about that.",
    "That's not something I have information on.",
    "I'm sorry, I can't help with that question.",
    "I wouldn't know.",
    "I have no idea.",
)


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
