"""Does a reasoning model still reveal the facts, in its answer or in its trace? ("R-TOFU: Unlearning in Large
Reasoning Models", Yoon, Jeung and No, arXiv:2505.15214.)

Every question is answered under three decodings, built through the chat template:

* ``default`` - the generation prompt plus ``<think>\\n``: the model reasons, then answers;
* ``zerothink`` - an empty trace is forced (``<think>\\n\\n</think>\\n\\n``): the model must answer directly;
* ``lessthink`` - a one-line trace is forced (``<think>\\n`` + R-TOFU's sentence + ``\\n</think>\\n\\n``).

R-TOFU found that models which look unlearned under default decoding still give the answer under ZeroThink or
LessThink, so the headline is the worst case over the three (and the ZeroThink gap).

Per decoding and split: answer-level ROUGE-L recall and embedding cosine against the true answer, and the share of
answers stating the fact (``answer_leak_rate``). Under default decoding, also the trace against the reference trace
(``cot``): ROUGE-L recall, step-wise cosine (each reference sentence's best cosine over the generated sentences,
averaged) and ``trace_leak_rate``, the share of traces that state the fact. ``leak_rate`` is the share of rows whose
generation states the fact anywhere the model wrote it: trace or answer under default decoding, the answer under
ZeroThink and LessThink (their trace is forced). A generation that never closes
``</think>`` is counted (``unclosed_rate``) and scored on all of its text: it is never counted as forgotten just
because no answer was extracted. The cosines use a small sentence encoder
(:mod:`~hf_unlearn.evaluation.embeddings`); without one they are left out, not guessed. There is no API judge;
``judge=`` takes a local one (question, trace, answer -> score in [0, 1]).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..data.reasoning import LESS_THINK, THINK_CLOSE, THINK_OPEN, split_reasoning
from . import metrics as M
from .answers import _contains
from .report import DEFINITIONS, EvalResult, items_fingerprint, prompt_fingerprint

__all__ = ["DECODINGS", "evaluate_reasoning", "reasoning_prompt", "stepwise_cosine"]

DECODINGS = ("default", "zerothink", "lessthink")
_SPLITS = ("forget", "retain")


def reasoning_prompt(tokenizer: Any, question: str, decoding: str, *, system_prompt: str | None = None) -> str:
    """The prompt text of one decoding: the chat template's generation prompt, then the forced start of the answer.

    A template that already opens the trace in its generation prompt (as DeepSeek-R1 distills do) is not given a
    second ``<think>``.
    """
    from ..data.tokenization import FallbackFormat, _chat_messages, _render

    if decoding not in DECODINGS:
        raise ValueError(f"decoding must be one of {DECODINGS}, got {decoding!r}.")
    base = _render(tokenizer, _chat_messages(question, None, system_prompt), FallbackFormat(), generation_prompt=True)
    opened = base.rstrip().endswith(THINK_OPEN)
    if opened:
        base = base.rstrip() + "\n"
    head = "" if opened else f"{THINK_OPEN}\n"
    if decoding == "default":
        return base + head
    trace = "" if decoding == "zerothink" else LESS_THINK
    return base + head + (f"{trace}\n" if trace else "\n") + f"{THINK_CLOSE}\n\n"


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


def stepwise_cosine(generated: str, reference: str, encoder: Callable[[Sequence[str]], torch.Tensor]) -> float | None:
    """R-TOFU's step-wise trace similarity: for each sentence of ``reference``, the best cosine with a sentence of
    ``generated`` (clipped at 0), averaged. ``None`` when either side has no sentence."""
    gen, ref = _sentences(generated), _sentences(reference)
    if not gen or not ref:
        return None
    e = encoder([*ref, *gen])
    sims = (e[: len(ref)] @ e[len(ref) :].T).clamp_min(0)
    return float(sims.max(dim=1).values.mean())


def _generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, batch_size: int, progress) -> list[str]:
    """Greedy continuations as text, special tokens kept (a tokenizer may mark ``<think>`` as special), end-of-turn
    and padding removed."""
    from ..data.tokenization import _encode
    from .generation import generate_ids

    ids = generate_ids(
        model,
        tokenizer,
        [_encode(tokenizer, p) for p in prompts],
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        progress=progress,
    )
    drop = {t for t in (tokenizer.eos_token, tokenizer.pad_token) if t}
    out = []
    for x in ids:
        text = tokenizer.decode(list(x), skip_special_tokens=False)
        for t in drop:
            text = text.replace(t, "")
        out.append(text.strip())
    return out


def _leak(text: str, row: Mapping[str, Any]) -> bool:
    if row.get("fact"):
        return _contains(text, str(row["fact"]))
    return M.rouge_l(text, str(row["answer"]))["recall"] >= 0.7  # rows without a fact span (R-TOFU, TOFU)


def evaluate_reasoning(
    model: torch.nn.Module,
    tokenizer: Any,
    *,
    forget: Sequence[Mapping[str, Any]],
    retain: Sequence[Mapping[str, Any]] | None = None,
    decodings: Sequence[str] = DECODINGS,
    encoder: Callable[[Sequence[str]], torch.Tensor] | str | None = "auto",
    judge: Callable[[str, str, str], float] | None = None,
    system_prompt: str | None = None,
    max_new_tokens: int = 256,
    batch_size: int = 16,
    progress: bool = False,
) -> EvalResult:
    """Evaluate a reasoning model's answers and traces under each decoding; see the module docstring.

    Args:
        forget, retain: QA rows (``question``, ``answer``; ``cot`` for the trace metrics; ``fact`` for the leak rates,
            else an answer-ROUGE >= 0.7 rule).
        decodings: any of :data:`DECODINGS`.
        encoder: texts -> L2-normalised embeddings for the cosines; ``"auto"`` loads all-MiniLM-L6-v2 from its PyPI
            package when installed (otherwise the cosines are left out and ``details["encoder"]`` says why);
            ``None`` skips them.
        judge: optional local judge ``(question, trace, answer) -> [0, 1]`` (how much the trace reveals); averaged
            as ``trace_judge`` under default decoding.
        max_new_tokens: the generation budget of every decoding (a trace needs room: R-TOFU uses 1024).
    """
    unknown = set(decodings) - set(DECODINGS)
    if unknown:
        raise ValueError(f"Unknown decodings {sorted(unknown)}; choose from {', '.join(DECODINGS)}.")
    if not forget:
        raise ValueError("evaluate_reasoning needs forget rows.")
    encoder_note = "given"
    if encoder == "auto":
        from .embeddings import load_sentence_encoder

        try:
            encoder = load_sentence_encoder()
            encoder_note = "all-MiniLM-L6-v2"
        except ImportError as err:
            encoder, encoder_note = None, f"skipped: {err}"
    elif encoder is None:
        encoder_note = "skipped: encoder=None"

    splits = {"forget": list(forget), **({"retain": list(retain)} if retain else {})}
    result = EvalResult("reasoning")
    m, per = result.metrics, result.per_item
    for split, rows in splits.items():
        for decoding in decodings:
            prompts = [reasoning_prompt(tokenizer, r["question"], decoding, system_prompt=system_prompt) for r in rows]
            label = f"{split}, {decoding}" if progress else False
            texts = _generate(model, tokenizer, prompts, max_new_tokens, batch_size, label)
            if decoding == "default":  # the continuation starts inside the trace the prompt opened
                texts = [f"{THINK_OPEN}\n{t}" for t in texts]
            parts = [split_reasoning(t) for t in texts]
            # A trace that never closed is scored on all of its text: never "forgotten" for want of an answer.
            answers = [p.answer if p.closed else (p.trace or "") for p in parts]
            key = f"{split}/{decoding}"
            per[f"{key}/generation"] = dict(enumerate(texts))
            rouge = {
                i: M.rouge_l(a, str(r["answer"]))["recall"] for i, (a, r) in enumerate(zip(answers, rows, strict=True))
            }
            leak = {i: float(_leak(a, r)) for i, (a, r) in enumerate(zip(answers, rows, strict=True))}
            per[f"{key}/answer_rouge"], per[f"{key}/answer_leak"] = rouge, leak
            m[f"{key}/answer_rouge"], m[f"{key}/answer_leak_rate"] = (
                M.mean(rouge),
                M.mean(leak),
            )
            m[f"{key}/unclosed_rate"] = M.mean([float(not p.closed) for p in parts])
            m[f"{key}/leak_rate"] = m[f"{key}/answer_leak_rate"]  # default decoding: the trace's leaks join below
            if encoder is not None:
                ea, eb = encoder(answers), encoder([str(r["answer"]) for r in rows])
                cos = (ea * eb).sum(-1).clamp_min(0).tolist()
                per[f"{key}/answer_cosine"] = dict(enumerate(cos))
                m[f"{key}/answer_cosine"] = M.mean(cos)
            if decoding != "default":
                continue
            traces = [p.trace or "" for p in parts]
            trace_leak = {
                i: float(_leak(t, r)) if t else 0.0 for i, (t, r) in enumerate(zip(traces, rows, strict=True))
            }
            per[f"{key}/trace_leak"], m[f"{key}/trace_leak_rate"] = trace_leak, M.mean(trace_leak)
            m[f"{key}/leak_rate"] = M.mean([max(trace_leak[i], leak[i]) for i in leak])  # trace or answer
            with_cot = [i for i, r in enumerate(rows) if r.get("cot")]
            if with_cot:
                tr = {i: M.rouge_l(traces[i], str(rows[i]["cot"]))["recall"] for i in with_cot}
                per[f"{key}/trace_rouge"], m[f"{key}/trace_rouge"] = tr, M.mean(tr)
                if encoder is not None:
                    sw = {i: stepwise_cosine(traces[i], str(rows[i]["cot"]), encoder) for i in with_cot}
                    per[f"{key}/trace_stepwise_cosine"] = sw
                    m[f"{key}/trace_stepwise_cosine"] = M.mean(sw)
            if judge is not None:
                m[f"{key}/trace_judge"] = M.mean(
                    [float(judge(r["question"], t, a)) for r, t, a in zip(rows, traces, answers, strict=True)]
                )

    # The headline: the worst case over the decodings on the forget set, and the ZeroThink gap.
    worst = {}
    for metric in ("answer_rouge", "answer_leak_rate", "leak_rate", "answer_cosine"):
        values = {d: m[f"forget/{d}/{metric}"] for d in decodings if m.get(f"forget/{d}/{metric}") is not None}
        if values:
            pick = max(values, key=values.get)
            m[f"worst/forget_{metric}"] = values[pick]
            worst[metric] = {"value": values[pick], "decoding": pick}
    if "default" in decodings and "zerothink" in decodings:
        m["zerothink_gap/forget_answer_rouge"] = m["forget/zerothink/answer_rouge"] - m["forget/default/answer_rouge"]
    result.details = {"worst_case": worst, "encoder": encoder_note}
    result.meta = {
        "definitions": DEFINITIONS,
        "prompt": prompt_fingerprint(tokenizer, system_prompt),
        "dtype": str(next(model.parameters()).dtype),
        "items": {s: items_fingerprint(rows) for s, rows in splits.items()},
        "decodings": list(decodings),
        "max_new_tokens": max_new_tokens,
        "prompts": {d: reasoning_prompt(tokenizer, "{question}", d, system_prompt=system_prompt) for d in decodings},
    }
    return result
