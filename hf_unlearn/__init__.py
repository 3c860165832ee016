"""hf_unlearn: LLM unlearning for the Hugging Face stack.

The public API is listed explicitly below (as in ``transformers``); anything not re-exported here is internal.
"""

__version__ = "0.1.0.dev0"

from typing import TYPE_CHECKING

from ._logging import get_verbosity, set_verbosity  # first: filters misleading third-party notices
from .callbacks import EvalCallback, ForgetTargetCallback
from .data import (
    DataCollatorForUnlearning,
    FictitiousAuthors,
    FictitiousAuthorsConfig,
    ForgetRetainDataset,
    HubDatasetUnavailableError,
    Schema,
    build_fictitious_authors,
    detect_schema,
    encode_completion,
    encode_prompt,
    encode_qa,
    load_muse,
    load_tofu,
    load_wmdp,
    tokenize_rows,
)
from .evaluation import (
    EvalResult,
    RankingResult,
    ReferenceMismatchError,
    SequenceScores,
    evaluate_documents,
    evaluate_mcq,
    evaluate_mia,
    evaluate_muse,
    evaluate_reasoning,
    evaluate_robustness,
    evaluate_tofu,
    generate_answers,
    label_logprobs,
    rank_answers,
    score_sequences,
)
from .hub import build_model_card, push_unlearned
from .models import (
    BUNDLED_MODEL_NAME,
    BundledModelMissingError,
    bundled_model_path,
    disable_bnb_cpu_repacking,
    load_model,
    load_tokenizer,
)
from .objective import (
    LossTerm,
    NonFiniteLossError,
    PrepareContext,
    SequenceLogps,
    StepContext,
    UnlearningObjective,
    check_objectives,
    requirements,
)
from .registry import METHODS, get_method
from .report import write_report
from .search import SearchResult, search_settings
from .unlearned import load_unlearned

# Trainers import TRL (several seconds); load them on first use, as transformers does for its models. Every
# registered method's Config and Trainer are public names.
_LAZY = {f"{spec.prefix}{kind}": spec.module for spec in METHODS.values() for kind in ("Config", "Trainer")}

if TYPE_CHECKING:
    from .trainers import (
        CEUConfig,
        CEUTrainer,
        GradAscentConfig,
        GradAscentTrainer,
        GradDiffConfig,
        GradDiffTrainer,
        IdkDPOConfig,
        IdkDPOTrainer,
        IdkSFTConfig,
        IdkSFTTrainer,
        NPOConfig,
        NPOTrainer,
        O3Config,
        O3Trainer,
        PDUConfig,
        PDUTrainer,
        ReasonedIDKConfig,
        ReasonedIDKTrainer,
        SatImpConfig,
        SatImpTrainer,
        SimNPOConfig,
        SimNPOTrainer,
        UNDIALConfig,
        UNDIALTrainer,
        WGAConfig,
        WGATrainer,
    )


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hf_unlearn' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)


__all__ = [
    "BUNDLED_MODEL_NAME",
    "METHODS",
    "BundledModelMissingError",
    "CEUConfig",
    "CEUTrainer",
    "DataCollatorForUnlearning",
    "EvalCallback",
    "EvalResult",
    "FictitiousAuthors",
    "FictitiousAuthorsConfig",
    "ForgetRetainDataset",
    "ForgetTargetCallback",
    "GradAscentConfig",
    "GradAscentTrainer",
    "GradDiffConfig",
    "GradDiffTrainer",
    "HubDatasetUnavailableError",
    "IdkDPOConfig",
    "IdkDPOTrainer",
    "IdkSFTConfig",
    "IdkSFTTrainer",
    "LossTerm",
    "NPOConfig",
    "NPOTrainer",
    "NonFiniteLossError",
    "O3Config",
    "O3Trainer",
    "PDUConfig",
    "PDUTrainer",
    "PrepareContext",
    "RankingResult",
    "ReasonedIDKConfig",
    "ReasonedIDKTrainer",
    "ReferenceMismatchError",
    "SatImpConfig",
    "SatImpTrainer",
    "Schema",
    "SearchResult",
    "SequenceLogps",
    "SequenceScores",
    "SimNPOConfig",
    "SimNPOTrainer",
    "StepContext",
    "UNDIALConfig",
    "UNDIALTrainer",
    "UnlearningObjective",
    "WGAConfig",
    "WGATrainer",
    "__version__",
    "build_fictitious_authors",
    "build_model_card",
    "bundled_model_path",
    "check_objectives",
    "detect_schema",
    "disable_bnb_cpu_repacking",
    "encode_completion",
    "encode_prompt",
    "encode_qa",
    "evaluate_documents",
    "evaluate_mcq",
    "evaluate_mia",
    "evaluate_muse",
    "evaluate_reasoning",
    "evaluate_robustness",
    "evaluate_tofu",
    "generate_answers",
    "get_method",
    "get_verbosity",
    "label_logprobs",
    "load_model",
    "load_muse",
    "load_tofu",
    "load_tokenizer",
    "load_unlearned",
    "load_wmdp",
    "push_unlearned",
    "rank_answers",
    "requirements",
    "score_sequences",
    "search_settings",
    "set_verbosity",
    "tokenize_rows",
    "write_report",
]
