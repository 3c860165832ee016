"""Answer ranking: does the model prefer the true answer over same-type wrong ones?

Every option of every item (the ``answer`` and each ``perturbed_answer``) is tokenised with the chat template and
scored in one shared, length-sorted pass. The score of an option is its length-normalised probability
``P(y|x)^(1/|y|)`` (TOFU's ``Prob``; raw ``P`` would favour short options), and an item counts as known when the true
answer scores highest. This is the utility check the built-in ``general_knowledge`` split is curated for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data.tokenization import encode_qa
from .scoring import score_sequences

__all__ = ["RankingResult", "rank_answers"]


@dataclass
class RankingResult:
    """Per-item option scores (true answer first) and the share of items whose true answer ranks first."""

    option_probs: list[list[float]] = field(default_factory=list)
    correct_first: list[bool] = field(default_factory=list)
    true_prob: list[float] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return sum(self.correct_first) / max(len(self.correct_first), 1)

    @property
    def mean_true_prob(self) -> float:
        return sum(self.true_prob) / max(len(self.true_prob), 1)


def rank_answers(
    model: torch.nn.Module,
    tokenizer: Any,
    rows: Sequence[Mapping[str, Any]],
    *,
    answer_key: str = "answer",
    system_prompt: str | None = None,
    max_length: int = 512,
    batch_size: int = 32,
    progress: bool | str = False,
) -> RankingResult:
    """Rank ``answer_key`` against ``perturbed_answer`` for each QA row (MCQ rows use their ``choices``)."""
    encoded, owners = [], []
    for i, row in enumerate(rows):
        if "choices" in row:
            options = [row["choices"][row["answer"]]] + [c for j, c in enumerate(row["choices"]) if j != row["answer"]]
        else:
            options = [row[answer_key], *row["perturbed_answer"]]
        for option in options:
            ex = encode_qa(tokenizer, row["question"], option, system_prompt=system_prompt, max_length=max_length)
            if ex.num_labels == 0:
                raise ValueError(f"Row {i}: option {option!r} has no token left within max_length={max_length}.")
            encoded.append(ex.to_dict())
            owners.append(i)
    probs = score_sequences(
        model, encoded, pad_token_id=tokenizer.pad_token_id, batch_size=batch_size, progress=progress
    )
    probs = probs.normalized_prob.tolist()
    result = RankingResult()
    grouped: dict[int, list[float]] = {}
    for owner, p in zip(owners, probs, strict=True):
        grouped.setdefault(owner, []).append(p)
    for i in range(len(rows)):
        ps = grouped[i]
        result.option_probs.append(ps)
        result.true_prob.append(ps[0])
        result.correct_first.append(ps[0] > max(ps[1:]))
    return result
