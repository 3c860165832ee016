"""Tokenisation that follows the model's chat template and labels exactly the answer.

Labels are the answer tokens plus the token that ends the assistant turn (``<|im_end|>``, ``<|eot_id|>``, ...;
EOS when the template puts nothing after the answer). Everything else, prompt and template tail, is masked or cut.
The prompt is rendered with ``add_generation_prompt=True`` exactly as at inference, so scores and training see the
same context a user's generation does.

Rows whose answer keeps no label token after truncation (or after a template/tokeniser mismatch) are dropped
and counted in one warning: passing them on gives NaN (0/0) in token means and silent zero gradients in NPO.

Attention masks are never derived from ``input_ids != pad_token_id``: with ``pad == eos`` (SmolLM2, Llama-3
style tokenizers) that hides every real end-of-turn token. The collators build masks from lengths.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .schemas import Schema, completion_parts, detect_schema

__all__ = [
    "IGNORE_INDEX",
    "FallbackFormat",
    "TokenizedExample",
    "encode_completion",
    "encode_prompt",
    "encode_qa",
    "tokenize_rows",
]

IGNORE_INDEX = -100


@dataclass(frozen=True)
class FallbackFormat:
    """Plain-text QA format for tokenizers without a chat template (base models).

    The prompt ends with ``answer_prefix`` and the answer follows after ``separator``; the tokenizer's EOS is appended
    and labelled. The default matches the TOFU base-model format ("Question: ...\\nAnswer: ...").
    """

    question_prefix: str = "Question: "
    answer_prefix: str = "\nAnswer:"
    separator: str = " "


@dataclass
class TokenizedExample:
    """One encoded row: ``input_ids``, ``labels`` (``-100`` outside the answer) and ``prompt_length``."""

    input_ids: list[int]
    labels: list[int]
    prompt_length: int
    span_mask: list[int] | None = None  # 1 on tokens overlapping the requested answer spans (e.g. the fact)
    cut_labels: int = 0  # label tokens lost to max_length (reported by tokenize_rows, never silently)

    @property
    def num_labels(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE_INDEX)

    def to_dict(self) -> dict[str, Any]:
        out = {"input_ids": self.input_ids, "labels": self.labels, "prompt_length": self.prompt_length}
        if self.span_mask is not None:
            out["span_mask"] = self.span_mask
        return out


def _has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _encode(tokenizer: Any, text: str) -> list[int]:
    # Chat templates render their own special tokens (BOS included where the model wants one).
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _special_ids(tokenizer: Any) -> set[int]:
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def _chat_messages(question: str, answer: str | None, system_prompt: str | None) -> list[dict[str, str]]:
    msgs = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
    msgs.append({"role": "user", "content": question})
    if answer is not None:
        msgs.append({"role": "assistant", "content": answer})
    return msgs


def _render(
    tokenizer: Any,
    messages: list[dict[str, str]],
    fallback: FallbackFormat,
    *,
    generation_prompt: bool,
) -> str:
    """Render a conversation to text; the fallback format supports one user turn plus an optional answer."""
    if _has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    users = [m["content"] for m in messages if m["role"] == "user"]
    system = "".join(m["content"] + "\n\n" for m in messages if m["role"] == "system")
    if len(users) != 1:
        raise ValueError(
            "This tokenizer has no chat template and the fallback format holds one user turn; "
            "set tokenizer.chat_template to render multi-turn conversations."
        )
    bos = tokenizer.bos_token or ""
    text = f"{bos}{system}{fallback.question_prefix}{users[0]}{fallback.answer_prefix}"
    if not generation_prompt:
        text += fallback.separator + messages[-1]["content"]
    return text


def encode_prompt(
    tokenizer: Any,
    question: str | list[dict[str, str]],
    *,
    system_prompt: str | None = None,
    fallback: FallbackFormat = FallbackFormat(),
) -> list[int]:
    """Token ids of the prompt exactly as a generation would see it (template + generation prompt)."""
    messages = question if isinstance(question, list) else _chat_messages(question, None, system_prompt)
    return _encode(tokenizer, _render(tokenizer, messages, fallback, generation_prompt=True))


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def encode_qa(
    tokenizer: Any,
    question: str | list[dict[str, str]],
    answer: str,
    *,
    system_prompt: str | None = None,
    max_length: int | None = None,
    fallback: FallbackFormat = FallbackFormat(),
    answer_spans: Sequence[Sequence[int]] | None = None,
    label_spans: Sequence[Sequence[int]] | None = None,
) -> TokenizedExample:
    """Encode one prompt/answer pair; ``question`` may be a string or the prompt's list of messages.

    ``answer_spans`` (``[start, end)`` character offsets in ``answer``, e.g. a QA row's ``fact_span``) adds
    ``span_mask``: 1 on every input token that overlaps a span (needs a fast tokenizer's offsets), else 0.

    ``label_spans`` (same form) restricts the labels to the answer tokens overlapping a span; the rest of the answer
    stays in the input as context (e.g. a reasoning trace when only the final answer is trained, see
    :func:`~hf_unlearn.data.reasoning.reasoning_rows`). The end-of-turn token stays labelled only when a span reaches
    the end of the answer.

    Labels cover the answer tokens and the end-of-turn token that follows them. The result may have zero answer
    labels (truncated away, empty answer, or a prompt/answer tokenisation mismatch): callers decide what to do,
    :func:`tokenize_rows` drops such rows and warns.
    """
    prompt_msgs = question if isinstance(question, list) else _chat_messages(question, None, system_prompt)
    full_msgs = [*prompt_msgs, {"role": "assistant", "content": answer}]
    prompt_text = _render(tokenizer, prompt_msgs, fallback, generation_prompt=True)
    full_text = _render(tokenizer, full_msgs, fallback, generation_prompt=False)

    prompt_ids = _encode(tokenizer, prompt_text)
    full_ids = _encode(tokenizer, full_text)
    offset = -1
    if full_text.startswith(prompt_text):
        # The answer text sits right after the prompt; some templates strip it, so locate it.
        offset = full_text.find(answer.strip(), len(prompt_text)) if answer.strip() else -1
        answer_end = offset + len(answer.strip()) if offset >= 0 else len(prompt_text)
        upto_answer = _encode(tokenizer, full_text[:answer_end])
    else:  # The template renders the prompt differently once an answer follows: nothing reliable to label.
        upto_answer = prompt_ids[: _common_prefix(prompt_ids, full_ids)]

    n_prompt = _common_prefix(prompt_ids, full_ids)
    n_upto = _common_prefix(upto_answer, full_ids)  # a token merged across the answer's end stays unlabelled
    answer_ids = full_ids[n_prompt:n_upto]
    tail = full_ids[n_upto:]
    if tail and tail[0] in _special_ids(tokenizer):
        end_ids = [tail[0]]  # the template's end-of-turn token
    elif tokenizer.eos_token_id is not None:
        end_ids = [tokenizer.eos_token_id]
    else:
        end_ids = []
    if not answer_ids:
        end_ids = []

    input_ids = full_ids[:n_prompt] + answer_ids + end_ids
    labels = [IGNORE_INDEX] * n_prompt + answer_ids + end_ids
    n_labels = len(answer_ids) + len(end_ids)
    if max_length is not None and len(input_ids) > max_length:
        input_ids, labels = input_ids[:max_length], labels[:max_length]
        # A truncated answer keeps its first tokens; the end-of-turn token went with the cut.
        if all(t == IGNORE_INDEX for t in labels[n_prompt:]):
            labels = [IGNORE_INDEX] * len(labels)
    if not answer_ids:
        labels = [IGNORE_INDEX] * len(labels)

    def overlap_mask(spans: Sequence[Sequence[int]]) -> list[int]:
        mask = [0] * len(input_ids)
        if offset >= 0:
            lead = len(answer) - len(answer.lstrip())  # the template may strip leading whitespace of the answer
            chars = [(offset + a - lead, offset + b - lead) for a, b in spans]
            offsets = tokenizer(full_text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
            for t, (a, b) in enumerate(offsets[: len(input_ids)]):
                if any(a < ce and b > cs for cs, ce in chars) and full_ids[t] == input_ids[t]:
                    mask[t] = 1
        return mask

    span_mask = overlap_mask(answer_spans) if answer_spans is not None else None
    if label_spans is not None and any(label != IGNORE_INDEX for label in labels):
        if offset < 0:
            raise ValueError(
                "label_spans need the answer's position in the rendered conversation, but this chat template "
                "rewrites the answer; train on the whole answer or use a template that renders it verbatim."
            )
        keep = overlap_mask(label_spans)
        to_end = any(b >= len(answer.rstrip()) for _, b in label_spans)
        n_answer_end = n_prompt + len(answer_ids)
        labels = [
            label if (keep[t] or (t >= n_answer_end and to_end)) else IGNORE_INDEX for t, label in enumerate(labels)
        ]
    kept = sum(t != IGNORE_INDEX for t in labels[: n_prompt + n_labels])
    return TokenizedExample(
        input_ids=input_ids,
        labels=labels,
        prompt_length=min(n_prompt, len(input_ids)),
        span_mask=span_mask,
        cut_labels=max(0, n_labels - kept) if answer_ids and label_spans is None else 0,
    )


def encode_completion(
    tokenizer: Any,
    prompt: str,
    text: str,
    *,
    insert_space: bool = False,
    add_eos: bool = False,
    max_length: int | None = None,
) -> TokenizedExample:
    """Encode raw text (no chat template): ``prompt`` is context, ``text`` is scored.

    The tokenizer adds its usual special tokens (BOS), as MUSE and the MIA literature do. With an empty prompt the
    first token is still unlabelled: nothing predicts it.
    """
    joined = prompt + (" " if insert_space and prompt else "") + text
    ids = list(tokenizer(joined, add_special_tokens=True)["input_ids"])
    n_prompt = len(tokenizer(prompt, add_special_tokens=True)["input_ids"]) if prompt else 0
    n_prompt = max(1, min(n_prompt, len(ids)))
    if add_eos and tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    labels = [IGNORE_INDEX] * n_prompt + ids[n_prompt:]
    cut = 0
    if max_length is not None and len(ids) > max_length:
        cut = sum(t != IGNORE_INDEX for t in labels[max_length:])
        ids, labels = ids[:max_length], labels[:max_length]
    return TokenizedExample(input_ids=ids, labels=labels, prompt_length=min(n_prompt, len(ids)), cut_labels=cut)


def _encode_row(
    tokenizer: Any,
    row: Mapping[str, Any],
    schema: Schema,
    *,
    answer_key: str,
    question_key: str,
    system_prompt: str | None,
    max_length: int | None,
    fallback: FallbackFormat,
) -> TokenizedExample:
    if schema == Schema.QA:
        return encode_qa(
            tokenizer,
            row[question_key],
            row[answer_key],
            system_prompt=system_prompt,
            max_length=max_length,
            fallback=fallback,
            label_spans=row.get("label_spans") if answer_key == "answer" else None,
        )
    if schema == Schema.MCQ:
        return encode_qa(
            tokenizer,
            row[question_key],
            row["choices"][row["answer"]],
            system_prompt=system_prompt,
            max_length=max_length,
            fallback=fallback,
        )
    if schema == Schema.MESSAGES:
        msgs = list(row["messages"])
        if msgs[-1]["role"] != "assistant":
            raise ValueError("The last message of a `messages` row must be the assistant turn to score.")
        return encode_qa(tokenizer, msgs[:-1], msgs[-1]["content"], max_length=max_length, fallback=fallback)
    if schema == Schema.PROMPT_COMPLETION:
        prompt = row["prompt"]
        if isinstance(prompt, str):
            prompt = _chat_messages(prompt, None, system_prompt)
        completion = row["completion"]
        if len(completion) != 1 or completion[0]["role"] != "assistant":
            raise ValueError("A conversational `completion` must hold exactly one assistant message.")
        return encode_qa(tokenizer, list(prompt), completion[0]["content"], max_length=max_length, fallback=fallback)
    prompt, text = completion_parts(row)
    return encode_completion(tokenizer, prompt, text, max_length=max_length)


def tokenize_rows(
    rows: Iterable[Mapping[str, Any]],
    tokenizer: Any,
    *,
    max_length: int | None = 512,
    system_prompt: str | None = None,
    answer_key: str = "answer",
    question_key: str = "question",
    fallback: FallbackFormat = FallbackFormat(),
) -> list[dict[str, Any]]:
    """Tokenise rows of any supported schema into ``input_ids``/``labels``/``prompt_length``/``index``.

    ``index`` is the row's position in ``rows``, so per-item results stay keyed by dataset index after drops.
    ``answer_key``/``question_key`` pick another QA field to score (e.g. ``paraphrased_answer``).
    Rows without any answer token after truncation are dropped and counted in a single ``UserWarning``.
    """
    out: list[dict[str, Any]] = []
    dropped: list[int] = []
    cut_rows, cut_tokens = 0, 0
    schema: Schema | None = None
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ValueError(
                f"Row {i} is a {type(row).__name__}, not a mapping of columns: pass rows as dicts such as "
                "{'question': ..., 'answer': ...}, or a datasets.Dataset."
            )
        try:
            kind = detect_schema(row)
        except ValueError as err:
            raise ValueError(f"Row {i}: {err}") from None
        if schema is not None and kind != schema:
            raise ValueError(
                f"Row {i} is a {kind.value} row but row 0 is a {schema.value} row; one dataset holds one schema."
            )
        schema = kind
        ex = _encode_row(
            tokenizer,
            row,
            schema,
            answer_key=answer_key,
            question_key=question_key,
            system_prompt=system_prompt,
            max_length=max_length,
            fallback=fallback,
        )
        if ex.cut_labels:
            cut_rows, cut_tokens = cut_rows + 1, cut_tokens + ex.cut_labels
        if ex.num_labels == 0:
            dropped.append(i)
            continue
        item = ex.to_dict()
        item["index"] = i
        out.append(item)
    if cut_tokens:
        fix = (
            "split them into blocks first with hf_unlearn.data.chunk_documents (the trainers and the recipe do)"
            if schema == Schema.COMPLETION
            else "a chat answer cannot be split into blocks: raise max_length or shorten the answers"
        )
        warnings.warn(
            f"{cut_rows} rows were longer than max_length={max_length}: {cut_tokens} of their target tokens were cut "
            f"and are neither trained nor scored; {fix}.",
            UserWarning,
            stacklevel=2,
        )
    if dropped:
        shown = ", ".join(map(str, dropped[:10])) + (" ..." if len(dropped) > 10 else "")
        warnings.warn(
            f"Dropped {len(dropped)} of {len(dropped) + len(out)} rows with no answer token left after "
            f"tokenisation (row indices: {shown}). Raise max_length (now {max_length}) or shorten the prompts.",
            UserWarning,
            stacklevel=2,
        )
    return out
