"""Refusal responses used as targets by the IDK objectives (IdkDPO's chosen answer, IdkSFT's target).

Written for hf_unlearn (TOFU's ``idontknow.jsonl`` plays the same role upstream). Varied wording keeps the model from
collapsing onto one memorised sentence; each forget row gets one response drawn from a seed, fixed for the whole run,
so reference log-probs can be precomputed once.
"""

from __future__ import annotations

__all__ = ["IDK_RESPONSES"]

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
