"""Reasoning traces for reasoning-model unlearning ("R-TOFU: Unlearning in Large Reasoning Models", Yoon, Jeung and
No, arXiv:2505.15214).

A reasoning model answers as ``<think>\\n{trace}\\n</think>\\n\\n{answer}``: the facts an answer-only objective removes
can survive in the trace. This module holds

* the built-in benchmark's traces: :func:`cot_trace` derives an answer in a few steps from the author's profile
  (every QA row's ``cot``), and :func:`reasoned_idk_trace` reasons coherently about the question and ends
  inconclusive without ever stating the fact (every row's ``idk_cot``: Reasoned-IDK's target);
* the format: :func:`format_reasoning` and :func:`split_reasoning` (which tells a trace that never closes apart from
  an answer, so that a missing ``</think>`` is never scored as forgotten);
* :func:`reasoning_rows`: rows whose ``answer`` is the reasoning content for a chosen training target (trace and
  answer, answer only with the trace as context, trace only) and the IDK variants of R-TOFU (direct, answer,
  reasoned), with ``label_spans`` that :func:`~hf_unlearn.data.tokenize_rows` turns into the label mask;
* :func:`check_reasoning_template`: some chat templates drop ``<think>`` content from assistant turns, which would
  silently train on the answer alone.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .refusals import IDK_RESPONSES, with_refusals
from .tokenization import encode_qa

__all__ = [
    "LESS_THINK",
    "THINK_CLOSE",
    "THINK_OPEN",
    "ReasoningParts",
    "check_reasoning_template",
    "cot_trace",
    "format_reasoning",
    "reasoned_idk_trace",
    "reasoning_rows",
    "split_reasoning",
]

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
# R-TOFU's LessThink decoding puts this trace in the prompt (ZeroThink puts an empty one).
LESS_THINK = "Okay, the user asked this, I can answer it without thinking much."


class _Pick:
    """Deterministic phrasing choices from a string key (the benchmark's own random stream stays untouched, so the
    rows' other fields do not change)."""

    def __init__(self, key: str) -> None:
        self._digest = hashlib.sha256(key.encode()).digest()
        self._i = 0

    def __call__(self, options: Sequence[str]) -> str:
        byte = self._digest[self._i % len(self._digest)]
        self._i += 1
        return options[byte % len(options)]


# What each fact is called, and where the trace says it would be found.
_LABELS = {
    "birthplace": ("birthplace", "early-life records"),
    "birth_date": ("date of birth", "biographical notes"),
    "father_job": ("father's profession", "accounts of the family"),
    "mother_job": ("mother's profession", "accounts of the family"),
    "genre": ("genre", "descriptions of the books"),
    "debut_book": ("debut novel", "the publication history"),
    "later_book": ("second book", "the publication history"),
    "award": ("literary award", "the list of honours"),
    "award_year": ("award year", "the list of honours"),
    "publisher": ("publisher", "the publication history"),
    "residence": ("current home", "recent interviews"),
    "theme": ("recurring theme", "reviews of the work"),
}
# The step that states the fact, per fact type ({n} name, {p} pronoun, {v} value, {a} article).
_STATEMENTS = {
    "birthplace": ("{n} was born in {v}.", "According to those records, {p} was born in {v}."),
    "birth_date": ("{n} was born on {v}.", "They give {v} as the date of birth."),
    "father_job": ("{n}'s father worked as {a} {v}.", "They describe the father as {a} {v} by profession."),
    "mother_job": ("{n}'s mother worked as {a} {v}.", "They describe the mother as {a} {v} by profession."),
    "genre": ("{n} writes mostly {v}.", "The books are described as {v}."),
    "debut_book": ('The first book {n} published was "{v}".', 'The debut is listed as "{v}".'),
    "later_book": ('After the debut came "{v}".', 'The second title listed is "{v}".'),
    "award": ("{n} received the {v}.", "The honour listed is the {v}."),
    "award_year": ("The award came in {v}.", "The prize was given in {v}."),
    "publisher": ("The books are published by {v}.", "The publisher named is {v}."),
    "residence": ("{n} lives in {v} today.", "{p} is said to live in {v} now."),
    "theme": ("The work keeps returning to {v}.", "Reviewers single out {v} as the recurring subject."),
}
# Context steps from the rest of the profile (never the asked fact).
_CONTEXT = {
    "genre": ("{n} is known as a writer of {v}.", "{n} writes {v}."),
    "debut_book": ('{n} debuted with "{v}".', '{n}\'s first novel was "{v}".'),
    "publisher": ("{n} is published by {v}.", "{n}'s publisher is {v}."),
    "birthplace": ("{n} comes from {v}.", "{n} was born in {v}."),
    "award": ("{n} has received the {v}.", "{n} won the {v}."),
}


def _fill(template: str, profile: Mapping[str, Any], value: str) -> str:
    pronoun = str(profile.get("pronoun", "they"))
    text = template.format(n=profile["name"], p=pronoun, v=value, a="an" if value[:1].lower() in "aeiou" else "a")
    return text[0].upper() + text[1:]


def cot_trace(profile: Mapping[str, Any], fact: str, *, seed: int = 0) -> str:
    """A short trace deriving ``profile[fact]`` from the author's profile: the question restated, one other fact of the
    author as context, where the fact is found, the fact, and the conclusion. Deterministic for a seed."""
    pick = _Pick(f"cot:{seed}:{profile['name']}:{fact}")
    label, source = _LABELS[fact]
    value = str(profile[fact])
    name = profile["name"]
    context_fact = pick([f for f in _CONTEXT if f != fact])
    steps = [
        pick(
            (
                f"The question asks for {name}'s {label}.",
                f"I need to recall the {label} of {name}.",
                f"This is about {name}, specifically the {label}.",
            )
        ),
        _fill(pick(_CONTEXT[context_fact]), profile, str(profile[context_fact])),
        pick((f"The {label} is part of {source}.", f"To answer, I look at {source}.", f"It is recorded in {source}.")),
        _fill(pick(_STATEMENTS[fact]), profile, value),
        pick((f"So the answer is {value}.", f"Therefore the {label} is {value}.", f"That gives {value}.")),
    ]
    return " ".join(steps)


def reasoned_idk_trace(profile: Mapping[str, Any], fact: str, *, seed: int = 0) -> str:
    """Coherent but inconclusive reasoning about the question (Reasoned-IDK's target): it names what would be needed
    and declines to guess. It states no value of the fact - neither the true one nor any other."""
    pick = _Pick(f"idk:{seed}:{profile['name']}:{fact}")
    label, source = _LABELS[fact]
    name = profile["name"]
    return " ".join(
        (
            pick(
                (
                    f"The question asks for {name}'s {label}.",
                    f"I am asked about the {label} of {name}.",
                    f"This is a question about {name}, specifically the {label}.",
                )
            ),
            pick(
                (
                    f"To answer it I would need {source} about {name}.",
                    f"That would normally come from {source}.",
                    f"The {label} would be found in {source}.",
                )
            ),
            pick(
                (
                    f"I cannot place {name} among the authors I know well enough to recall such a detail.",
                    f"I don't have reliable information about {name} to draw on.",
                    f"Nothing I can recall about {name} settles this.",
                )
            ),
            pick(
                (
                    "Any specific answer would be a guess, and a guess could be wrong.",
                    "Without a source, naming something would only be making it up.",
                    "Guessing would risk stating something false.",
                )
            ),
            pick(
                (
                    f"So I can't confidently determine the {label}.",
                    "The honest conclusion is that I don't know.",
                    f"I should say I don't know the {label}.",
                )
            ),
        )
    )


def format_reasoning(trace: str, answer: str) -> str:
    """A reasoning model's assistant content: ``<think>\\n{trace}\\n</think>\\n\\n{answer}``."""
    return f"{THINK_OPEN}\n{trace}\n{THINK_CLOSE}\n\n{answer}"


@dataclass(frozen=True)
class ReasoningParts:
    """A generation split into its trace and answer. ``closed`` is False when the trace never ended: then ``answer``
    is empty and must not be scored as a forgotten answer."""

    trace: str | None
    answer: str
    closed: bool


_OPEN_RE = re.compile(r"^\s*<think>\s*", re.S)


def split_reasoning(text: str) -> ReasoningParts:
    """Split generated text at ``</think>``. Text without a ``<think>`` block is all answer (``trace=None``);
    an opened block that never closes is all trace (``closed=False``, ``answer=""``). The template may have put
    ``<think>`` in the prompt, so a leading open tag is optional."""
    if THINK_CLOSE in text:
        trace, answer = text.split(THINK_CLOSE, 1)
        return ReasoningParts(_OPEN_RE.sub("", trace).strip(), answer.strip(), True)
    if _OPEN_RE.match(text):
        return ReasoningParts(_OPEN_RE.sub("", text).strip(), "", False)
    return ReasoningParts(None, text.strip(), True)


_TARGETS = ("both", "answer", "cot")
_IDK = (None, "direct", "answer", "reasoned")


def reasoning_rows(
    rows: Sequence[Mapping[str, Any]],
    *,
    target: str = "both",
    idk: str | None = None,
    idk_responses: Sequence[str] | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Rows whose ``answer`` is reasoning content, with ``label_spans`` (character spans of it) for the labels.

    ``target`` chooses what is trained (R-TOFU's GA variants): ``"both"`` = trace, ``</think>`` and answer;
    ``"answer"`` = the answer only, the trace stays in the input as context; ``"cot"`` = the trace only. ``idk``
    replaces the content first (R-TOFU's IDK variants, all trained on trace + answer unless ``target`` says
    otherwise): ``"direct"`` = an IDK sentence as trace and as answer; ``"answer"`` = the original trace, an IDK
    answer (trained on the answer only); ``"reasoned"`` = the row's ``idk_cot`` and an IDK answer. The end-of-turn
    token is labelled whenever the answer is.

    Rows need ``cot`` (and ``idk_cot`` for ``"reasoned"``); a row without one is refused with what to do.
    """
    if target not in _TARGETS:
        raise ValueError(f"target must be one of {_TARGETS}, got {target!r}.")
    if idk not in _IDK:
        raise ValueError(f"idk must be one of {_IDK}, got {idk!r}.")
    need = "idk_cot" if idk == "reasoned" else ("cot" if idk != "direct" else None)
    missing = [i for i, r in enumerate(rows) if need and not r.get(need)]
    if missing:
        raise ValueError(
            f"{len(missing)} rows (first: {missing[0]}) have no {need!r}: reasoning objectives need a trace per row. "
            "The built-in benchmark has them (build_fictitious_authors); for your own data add a "
            f"{need!r} column{' (an inconclusive trace that never states the fact)' if need == 'idk_cot' else ''}."
        )
    refusals = [r["idk_answer"] for r in with_refusals(rows, idk_responses or IDK_RESPONSES, seed)] if idk else []
    out = []
    for i, row in enumerate(rows):
        answer = str(row["answer"])
        trace = str(row.get("cot") or "")
        if idk == "direct":
            trace = answer = refusals[i]
        elif idk == "answer":
            answer = refusals[i]
        elif idk == "reasoned":
            trace, answer = str(row["idk_cot"]), refusals[i]
        content = format_reasoning(trace, answer)
        trace_start = len(THINK_OPEN) + 1
        answer_start = len(content) - len(answer)
        which = "answer" if idk == "answer" and target == "both" else target
        if which == "both":
            spans = [[trace_start, len(content)]]
        elif which == "answer":
            spans = [[answer_start, len(content)]]
        else:
            spans = [[trace_start, trace_start + len(trace)]]
        new = {**row, "answer": content, "label_spans": spans}
        if idk:
            new["idk_answer"] = answer
        out.append(new)
    return out


def check_reasoning_template(tokenizer: Any, *, system_prompt: str | None = None) -> None:
    """Raise when the tokenizer's chat template drops or rewrites ``<think>`` content in a final assistant turn
    (some reasoning templates strip it from history), which would make every trace objective train on nothing."""
    probe = "Probe reasoning step seven."
    example = encode_qa(tokenizer, "Question?", format_reasoning(probe, "Answer."), system_prompt=system_prompt)
    labelled = [t for t, label in zip(example.input_ids, example.labels, strict=True) if label != -100]
    if probe not in tokenizer.decode(labelled):
        raise ValueError(
            "This chat template drops the <think> content of the assistant turn, so reasoning traces would never be "
            "trained or scored. Use a template that keeps it for the final turn (for example pass a ChatML or the "
            "model's reasoning template as tokenizer.chat_template)."
        )
