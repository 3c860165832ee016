"""Data layer: schemas, chat-template tokenisation, collators, forget/retain pairing, Hub loaders and the built-in
``fictitious-authors`` benchmark."""

from .collators import DataCollatorForUnlearning, pad_sequences
from .documents import CHUNKING_MODES, DocumentBlocks, chunk_documents
from .fictitious_authors import (
    FACT_TYPES,
    FictitiousAuthors,
    FictitiousAuthorsConfig,
    build_fictitious_authors,
)
from .general_knowledge import GENERAL_KNOWLEDGE
from .hub import (
    MUSE_CONFIGS,
    TOFU_CONFIGS,
    WMDP_CONFIGS,
    HubDatasetUnavailableError,
    load_muse,
    load_rtofu,
    load_tofu,
    load_wmdp,
    map_muse_row,
    map_rtofu_row,
    map_tofu_row,
    map_wmdp_row,
)
from .loading import load_rows, source_name
from .pairing import ForgetRetainDataset
from .reasoning import (
    ReasoningParts,
    check_reasoning_template,
    format_reasoning,
    reasoning_rows,
    split_reasoning,
)
from .schemas import Schema, completion_parts, detect_schema, validate_rows
from .tokenization import (
    IGNORE_INDEX,
    FallbackFormat,
    TokenizedExample,
    encode_completion,
    encode_prompt,
    encode_qa,
    tokenize_rows,
)

__all__ = [
    "CHUNKING_MODES",
    "FACT_TYPES",
    "GENERAL_KNOWLEDGE",
    "IGNORE_INDEX",
    "MUSE_CONFIGS",
    "TOFU_CONFIGS",
    "WMDP_CONFIGS",
    "DataCollatorForUnlearning",
    "DocumentBlocks",
    "FallbackFormat",
    "FictitiousAuthors",
    "FictitiousAuthorsConfig",
    "ForgetRetainDataset",
    "HubDatasetUnavailableError",
    "ReasoningParts",
    "Schema",
    "TokenizedExample",
    "build_fictitious_authors",
    "check_reasoning_template",
    "chunk_documents",
    "completion_parts",
    "detect_schema",
    "encode_completion",
    "encode_prompt",
    "encode_qa",
    "format_reasoning",
    "load_muse",
    "load_rows",
    "load_rtofu",
    "load_tofu",
    "load_wmdp",
    "map_muse_row",
    "map_rtofu_row",
    "map_tofu_row",
    "map_wmdp_row",
    "pad_sequences",
    "reasoning_rows",
    "source_name",
    "split_reasoning",
    "tokenize_rows",
    "validate_rows",
]
