"""Evaluation: scoring primitives (label-position log-probs) and answer ranking. The TOFU/MUSE/MCQ/MIA suites build
on these."""

from .generation import generate_answers
from .ranking import RankingResult, rank_answers
from .scoring import SequenceScores, label_logprobs, score_sequences

__all__ = [
    "RankingResult",
    "SequenceScores",
    "generate_answers",
    "label_logprobs",
    "rank_answers",
    "score_sequences",
]
