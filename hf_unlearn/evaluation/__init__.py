"""Evaluation: scoring primitives (label-position log-probs), TOFU / MUSE / MCQ / MIA / robustness / reasoning
suites, results and reports."""

from .answers import classify_answer
from .decoding import GreedyDecoder
from .documents import evaluate_documents
from .generation import generate_answers, generate_ids, generate_texts
from .mcq import evaluate_mcq, format_mcq
from .metrics import (
    auc,
    exact_memorization,
    extraction_strength,
    forget_quality,
    harmonic_mean,
    min_k_score,
    privleak,
    rouge_l,
    truth_ratio,
    truth_ratio_aggregate,
)
from .mia import evaluate_mia
from .muse import builtin_muse_splits, evaluate_muse, protocol_forget_sets
from .ranking import RankingResult, rank_answers
from .reasoning import DECODINGS, evaluate_reasoning, reasoning_prompt
from .report import EvalResult, ReferenceMismatchError, check_reference, plot_forget_vs_utility
from .robustness import evaluate_robustness, robustness_table
from .scoring import SequenceScores, label_logprobs, next_token_logprobs, score_sequences
from .tofu import builtin_tofu_splits, evaluate_tofu

__all__ = [
    "DECODINGS",
    "EvalResult",
    "GreedyDecoder",
    "RankingResult",
    "ReferenceMismatchError",
    "SequenceScores",
    "auc",
    "builtin_muse_splits",
    "builtin_tofu_splits",
    "check_reference",
    "classify_answer",
    "evaluate_documents",
    "evaluate_mcq",
    "evaluate_mia",
    "evaluate_muse",
    "evaluate_reasoning",
    "evaluate_robustness",
    "evaluate_tofu",
    "exact_memorization",
    "extraction_strength",
    "forget_quality",
    "format_mcq",
    "generate_answers",
    "generate_ids",
    "generate_texts",
    "harmonic_mean",
    "label_logprobs",
    "min_k_score",
    "next_token_logprobs",
    "plot_forget_vs_utility",
    "privleak",
    "protocol_forget_sets",
    "rank_answers",
    "reasoning_prompt",
    "robustness_table",
    "rouge_l",
    "score_sequences",
    "truth_ratio",
    "truth_ratio_aggregate",
]
