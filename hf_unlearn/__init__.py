"""hf_unlearn: LLM unlearning for the Hugging Face stack.

The public API is listed explicitly below (as in ``transformers``); anything not re-exported here is internal.
"""

__version__ = "0.1.0.dev0"

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
    RankingResult,
    SequenceScores,
    generate_answers,
    label_logprobs,
    rank_answers,
    score_sequences,
)
from .models import (
    BUNDLED_MODEL_NAME,
    BundledModelMissingError,
    bundled_model_path,
    disable_bnb_cpu_repacking,
    load_model,
    load_tokenizer,
)

__all__ = [
    "BUNDLED_MODEL_NAME",
    "BundledModelMissingError",
    "DataCollatorForUnlearning",
    "FictitiousAuthors",
    "FictitiousAuthorsConfig",
    "ForgetRetainDataset",
    "HubDatasetUnavailableError",
    "RankingResult",
    "Schema",
    "SequenceScores",
    "__version__",
    "build_fictitious_authors",
    "bundled_model_path",
    "detect_schema",
    "disable_bnb_cpu_repacking",
    "encode_completion",
    "encode_prompt",
    "encode_qa",
    "generate_answers",
    "label_logprobs",
    "load_model",
    "load_muse",
    "load_tofu",
    "load_tokenizer",
    "load_wmdp",
    "rank_answers",
    "score_sequences",
    "tokenize_rows",
]
