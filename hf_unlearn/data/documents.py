"""Documents longer than ``max_length`` become consecutive blocks, never a cut.

A raw-text row (``text``, ``prompt``/``text`` or TRL's string ``prompt``/``completion``) whose tokens do not fit in
``max_length`` is split into blocks of at most ``max_length`` tokens (special tokens included). Blocks are exact
substrings of the document, cut at token boundaries - at the start of a word where one lies near the limit - so that
the blocks of a document put together are the document. A row's own ``prompt`` stays the context of its first block.
With ``stride`` > 0 each later block starts ``stride`` tokens before the previous one ends: those tokens are its
context (its ``prompt``, not scored), so every token is trained once and most see more context. A row whose prompt
fills half of ``max_length`` or more is left whole (there is no room to continue its text in blocks).

Chat rows (QA, ``messages``, conversational prompt/completion) are never split: an answer cut in two is not an
answer. When one is longer than ``max_length``, :func:`~hf_unlearn.data.tokenize_rows` warns with the number of
tokens it had to drop.

``mode="concatenate"`` reproduces open-unlearning's pre-training datasets (its MUSE recipes): every document is
joined with ``"\\n\\n"``, the whole is tokenised without special tokens and cut into ``max_length``-token blocks,
which are decoded back to text; blocks may so span two documents. (open-unlearning's last block can be empty when
the length divides exactly; empty blocks are left out here.) ``mode="none"`` leaves rows as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .schemas import Schema, completion_parts, detect_schema

__all__ = ["CHUNKING_MODES", "DocumentBlocks", "chunk_documents"]

CHUNKING_MODES = ("per_document", "concatenate", "none")
_WORD_SEARCH = 32  # how far back (in tokens) a block end looks for the start of a word

logger = logging.getLogger("hf_unlearn")


@dataclass
class DocumentBlocks:
    """The rows after chunking, and what chunking did: ``documents`` raw-text rows became ``blocks`` rows (``split``
    of them were longer than ``max_length``)."""

    rows: list[dict[str, Any]]
    documents: int = 0
    blocks: int = 0
    split: int = 0
    max_length: int | None = None
    mode: str = "per_document"
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self, name: str = "documents") -> str:
        """One line, e.g. ``forget: 3 documents → 36 blocks of ≤ 256 tokens``."""
        if not self.documents:
            return f"{name}: {len(self.rows)} rows (no raw text to split)"
        how = " (open-unlearning concatenation)" if self.mode == "concatenate" else ""
        return f"{name}: {self.documents} documents → {self.blocks} blocks of ≤ {self.max_length} tokens{how}"

    def summary(self) -> dict[str, Any]:
        return {"documents": self.documents, "blocks": self.blocks, "max_length": self.max_length, "mode": self.mode}


def chunk_documents(
    rows: Sequence[Mapping[str, Any]],
    tokenizer: Any,
    *,
    max_length: int | None,
    stride: int = 0,
    mode: str = "per_document",
) -> DocumentBlocks:
    """Split every raw-text row longer than ``max_length`` tokens into blocks (see the module docstring).

    Each block row keeps the row's other columns and adds ``document`` (the row's index) and ``block`` (its position
    in the document). Chat rows pass through unchanged. Raises when ``stride`` leaves no room for new tokens.
    """
    if mode not in CHUNKING_MODES:
        raise ValueError(f"document chunking must be one of {', '.join(CHUNKING_MODES)}, got {mode!r}.")
    rows = list(rows)
    text_rows = [i for i, r in enumerate(rows) if detect_schema(r) == Schema.COMPLETION]
    out = DocumentBlocks(rows=rows, max_length=max_length, mode=mode)
    if mode == "none" or max_length is None or not text_rows:
        out.documents = out.blocks = len(text_rows)
        return out
    specials = len(tokenizer("", add_special_tokens=True)["input_ids"])
    room = max_length - specials
    if not 0 <= stride < room // 2:
        raise ValueError(
            f"stride={stride} must be >= 0 and below half of max_length={max_length} minus special tokens: each block "
            "needs room for new tokens."
        )
    if mode == "concatenate":
        return _concatenate(rows, text_rows, tokenizer, room, out)
    blocks: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        if i not in text_rows:
            blocks.append(dict(row))
            continue
        pieces = _split(row, tokenizer, room, stride)
        out.split += len(pieces) > 1
        blocks += [{**_others(row), **piece, "document": i, "block": k} for k, piece in enumerate(pieces)]
    out.rows, out.documents = blocks, len(text_rows)
    out.blocks = sum(1 for b in blocks if "block" in b)
    return out


def _others(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("prompt", "text", "completion")}


def _token_count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _split(row: Mapping[str, Any], tokenizer: Any, room: int, stride: int) -> list[dict[str, str]]:
    """``prompt``/``text`` pieces of one raw-text row, each within ``room`` tokens (special tokens aside)."""
    prompt, text = completion_parts(row)
    prompt_tokens = _token_count(tokenizer, prompt) if prompt else 0
    if prompt_tokens + _token_count(tokenizer, text) <= room:
        return [{"prompt": prompt, "text": text}]
    if prompt_tokens >= room // 2:  # too little room to continue the text in blocks: left whole (the tokeniser
        return [{"prompt": prompt, "text": text}]  # then cuts it and counts the tokens it lost)
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    starts = [a for a, _ in offsets]
    n = len(starts)
    pieces: list[dict[str, str]] = []
    begin, context = 0, prompt  # token index where the block's new text starts; the block's context
    while begin < n:
        budget = room - (prompt_tokens if not pieces else min(stride, begin))
        end = min(n, begin + budget)
        if end < n:
            end = _word_start(text, starts, begin, end)
        while True:  # a piece re-tokenised alone can gain a token at its edges: shrink until it fits
            chunk = text[(starts[begin] if pieces else 0) : (starts[end] if end < n else len(text))]
            if _token_count(tokenizer, context + chunk) <= room or end - begin <= 1:
                break
            end -= 1
        pieces.append({"prompt": context, "text": chunk})
        context = text[starts[max(end - stride, 0)] : starts[end]] if end < n and stride else ""
        begin = end
    return pieces


def _word_start(text: str, starts: Sequence[int], begin: int, end: int) -> int:
    """The last token boundary at or before ``end`` where a word starts (whitespace before it), within
    ``_WORD_SEARCH`` tokens; else ``end`` itself."""
    for j in range(end, max(begin + 1, end - _WORD_SEARCH), -1):
        c = starts[j]
        if c > 0 and (text[c - 1].isspace() or text[c].isspace()):
            return j
    return end


def _concatenate(
    rows: list[dict[str, Any]], text_rows: list[int], tokenizer: Any, room: int, out: DocumentBlocks
) -> DocumentBlocks:
    joined = "\n\n".join(completion_parts(rows[i])[1] for i in text_rows)
    ids = tokenizer(joined, add_special_tokens=False)["input_ids"]
    blocks = [tokenizer.decode(ids[s : s + room]) for s in range(0, len(ids), room)]
    texts = set(text_rows)
    keep = [dict(r) for i, r in enumerate(rows) if i not in texts]
    out.rows = keep + [{"prompt": "", "text": b, "block": k} for k, b in enumerate(blocks) if b]
    out.documents, out.blocks = len(text_rows), sum(1 for b in blocks if b)
    out.split = out.documents
    return out
