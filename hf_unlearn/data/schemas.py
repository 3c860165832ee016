"""Row schemas shared by every data source.

Field names follow TOFU so that one evaluator serves the built-in benchmark, TOFU, MUSE and WMDP alike:

* **QA** – ``question``, ``answer`` and optionally ``paraphrased_question``, ``paraphrased_answer``,
  ``perturbed_answer`` (list of wrong answers of the same type), ``fact`` (the fact-bearing substring of
  ``answer``) and ``fact_span`` (its ``[start, end)`` character offsets in ``answer``).
* **completion** (raw text, no chat template) – ``prompt`` (prefix, may be empty) and ``text`` (the scored
  continuation); TRL's language-modelling rows (``text`` alone) and standard prompt/completion rows (``prompt`` and
  ``completion`` as strings) are completion rows too (:func:`completion_parts` reads all three).
* **MCQ** – ``question``, ``choices`` (list of strings) and ``answer`` (index of the right choice).
* **conversational** – ``messages`` (list of ``{"role", "content"}``; the last message is the assistant
  turn that is scored), or TRL's conversational ``prompt``/``completion`` (both lists of messages).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any

__all__ = [
    "COMPLETION_FIELDS",
    "MCQ_FIELDS",
    "QA_FIELDS",
    "QA_OPTIONAL_FIELDS",
    "Schema",
    "completion_parts",
    "detect_schema",
    "validate_rows",
]

QA_FIELDS = ("question", "answer")
QA_OPTIONAL_FIELDS = (
    "paraphrased_question",
    "paraphrased_answer",
    "perturbed_answer",
    "fact",
    "fact_span",
)
COMPLETION_FIELDS = ("prompt", "text")
MCQ_FIELDS = ("question", "choices", "answer")


class Schema(str, Enum):
    """The kinds of rows the data layer understands."""

    QA = "qa"
    COMPLETION = "completion"
    MCQ = "mcq"
    MESSAGES = "messages"
    PROMPT_COMPLETION = "prompt_completion"


def _is_messages(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(m, Mapping) and "role" in m and "content" in m for m in value)
    )


ACCEPTED_FORMATS = (
    "language modelling (text), prompt/completion (prompt and completion as strings, or as lists of messages), "
    "conversational (messages), QA (question, answer), completion (prompt, text) or MCQ (question, choices, answer "
    "index)"
)


def completion_parts(row: Mapping[str, Any]) -> tuple[str, str]:
    """``(prompt, text)`` of a raw-text row: ``prompt``/``text``, TRL's ``prompt``/``completion`` strings, or ``text``
    alone (language modelling: every token is scored but the first)."""
    text = row["completion"] if "text" not in row else row["text"]
    return row.get("prompt") or "", text


def detect_schema(row: Mapping[str, Any]) -> Schema:
    """Return the schema of one row, or raise a ``ValueError`` that lists the accepted layouts."""
    keys = set(row)
    if "messages" in keys and _is_messages(row["messages"]):
        return Schema.MESSAGES
    if {"prompt", "completion"} <= keys and _is_messages(row["completion"]):
        return Schema.PROMPT_COMPLETION
    if {"question", "choices", "answer"} <= keys and isinstance(row["answer"], int):
        return Schema.MCQ
    if {"question", "answer"} <= keys and isinstance(row["answer"], str):
        if not isinstance(row["question"], str):
            raise ValueError(f"'question' must be a string in a QA row, got {type(row['question']).__name__}.")
        return Schema.QA
    if {"question", "answer"} <= keys and not isinstance(row["answer"], int | list):
        raise ValueError(
            f"'answer' must be a string in a QA row (or a choice index in an MCQ row), got "
            f"{type(row['answer']).__name__}: fill or drop rows with empty answers."
        )
    text_key = "text" if "text" in keys else ("completion" if {"prompt", "completion"} <= keys else None)
    if text_key is not None:
        for key in ("prompt", text_key):
            if key in keys and not isinstance(row[key], str) and not (key == "prompt" and row[key] is None):
                raise ValueError(
                    f"'{key}' must be a string in a raw-text row, got {type(row[key]).__name__}: fill or drop rows "
                    "with empty text."
                )
        return Schema.COMPLETION
    raise ValueError(
        f"Cannot tell the schema of a row with columns {sorted(keys)}. hf_unlearn accepts {ACCEPTED_FORMATS}. "
        "Rename the columns (datasets.Dataset.rename_column) or map them onto one of these."
    )


def validate_rows(rows: Iterable[Mapping[str, Any]], expected: Schema | None = None) -> Schema:
    """Check that all rows share one schema (and that it is ``expected`` when given); return it."""
    schema: Schema | None = None
    for i, row in enumerate(rows):
        s = detect_schema(row)
        if schema is None:
            schema = s
        elif s != schema:
            raise ValueError(f"Row {i} is a {s.value} row but earlier rows are {schema.value} rows.")
        if s == Schema.QA and "fact_span" in row and row["fact_span"] is not None:
            start, end = row["fact_span"]
            if row["answer"][start:end] != row.get("fact"):
                raise ValueError(f"Row {i}: fact_span {row['fact_span']} does not cover fact {row.get('fact')!r}.")
        if s == Schema.MCQ and not 0 <= row["answer"] < len(row["choices"]):
            raise ValueError(f"Row {i}: answer index {row['answer']} is outside its {len(row['choices'])} choices.")
    if schema is None:
        raise ValueError("The dataset is empty.")
    if expected is not None and schema != expected:
        raise ValueError(f"Expected {expected.value} rows, got {schema.value} rows.")
    return schema
