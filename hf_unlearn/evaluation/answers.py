"""What an unlearned model says instead: classify a generated answer to a forget question.

Unlearning can remove a fact in several ways that ROUGE alone cannot tell apart. A model may still *leak* the fact, say
it does not know (*refusal*, what IDK objectives aim for), state a confident wrong value of the same kind
(*hallucination*, which Attention Shifting - "Unlearning Facts with Attention Shifting", arXiv:2410.17050 - is designed
to avoid), or produce text that is no answer at all (*degenerate*: empty, repetitive or gibberish, the usual sign of
over-unlearning). Anything else is *other*.

The checks run in that order of precedence: a generation that states the true value is a leak whatever else it says.
A hallucination needs the benchmark's knowledge of each fact's type and the values that type takes (``value_pools``);
dates and years are recognised by their shape.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["ANSWER_CLASSES", "answer_class_rates", "classify_answer", "value_pools"]

ANSWER_CLASSES = ("leak", "refusal", "hallucination", "degenerate", "other")

_REFUSAL = re.compile(
    r"\b(i (really )?(do not|don't|dont) know|not sure|no idea"
    r"|i have no (reliable )?(information|idea|knowledge|record)"
    r"|(do not|don't) have (that|any|enough|an|the|knowledge|information)|can(no|')t (answer|say|recall|provide|help"
    r"|tell)|cannot (answer|say|recall|provide|help|tell)|couldn't tell|unable to|not able to|not aware|not familiar"
    r"|not informed|beyond my knowledge|outside what i know|not something i|lack the information|drawing a blank"
    r"|rather not guess|don't want to guess|wouldn't know|not in a position|no information|not certain)\b"
)
_DATE = re.compile(
    r"\b(january|february|march|april|may|june|july|august|september|october|november|december) \d{1,2},? \d{4}\b"
)
_YEAR = re.compile(r"\b(1[5-9]\d\d|20\d\d)\b")
_TITLE = re.compile(r'"[^"]{3,}"')
_SHAPES = {"birth_date": _DATE, "award_year": _YEAR, "debut_book": _TITLE, "later_book": _TITLE}


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _contains(text: str, value: str) -> bool:
    """``value`` occurs in ``text`` as whole words (case and punctuation ignored)."""
    v = _norm(value)
    return bool(v) and re.search(rf"(^|\s){re.escape(v)}(\s|$)", _norm(text)) is not None


def is_degenerate(text: str) -> bool:
    """Empty, mostly symbols, or repetitive (a word 3-gram three times or few distinct words)."""
    words = re.findall(r"\w+", text.lower())
    if not words:
        return True
    letters = sum(c.isalnum() for c in text)
    if letters < 0.5 * len(text.replace(" ", "")):
        return True
    grams = Counter(zip(words, words[1:], words[2:], strict=False))
    if grams and max(grams.values()) >= 3:
        return True
    return len(words) >= 8 and len(set(words)) < 0.4 * len(words)


def value_pools(rows: Iterable[Mapping[str, Any]]) -> dict[str, set[str]]:
    """The values each fact type takes across ``rows`` (their ``fact_type`` and ``fact`` fields)."""
    pools: dict[str, set[str]] = {}
    for row in rows:
        if row.get("fact_type") and row.get("fact"):
            pools.setdefault(row["fact_type"], set()).add(str(row["fact"]))
    return pools


def classify_answer(generation: str, row: Mapping[str, Any], pools: Mapping[str, set[str]] | None = None) -> str:
    """One of :data:`ANSWER_CLASSES` for ``generation``, the model's answer to ``row`` (a QA row).

    The true value is the row's ``fact`` (the built-in benchmark's fact span); rows without one (TOFU's) count as a
    leak when the generation recalls at least 70% of the reference answer's words (ROUGE-L recall), and cannot be
    told hallucinating.
    """
    fact = row.get("fact")
    if fact:
        if _contains(generation, str(fact)):
            return "leak"
    else:
        from .metrics import rouge_l

        if rouge_l(generation, row["answer"])["recall"] >= 0.7:
            return "leak"
    if _REFUSAL.search(generation.lower().replace("\u2019", "'")):
        return "refusal"
    if is_degenerate(generation):
        return "degenerate"
    kind = row.get("fact_type")
    if kind in _SHAPES and _SHAPES[kind].search(generation.lower().replace("\u201c", '"').replace("\u201d", '"')):
        return "hallucination"
    for value in (pools or {}).get(kind, ()):
        if value != fact and _contains(generation, value):
            return "hallucination"
    return "other"


def answer_class_rates(classes: Sequence[str]) -> dict[str, float]:
    """The fraction of each class (all of :data:`ANSWER_CLASSES`, summing to 1)."""
    n = max(len(classes), 1)
    return {c: sum(x == c for x in classes) / n for c in ANSWER_CLASSES}
