"""Scoring primitives: per-sequence log-probabilities at label positions only.

The decoder runs once per batch and log-probs are gathered at label positions before the LM head
(:mod:`hf_unlearn.logprobs`), so the ``(B, T, V)`` logits tensor is never built. Batches are formed from
length-sorted rows (dynamic padding) and results are returned in input order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from .._compat import cache_kwarg, output_cache
from ..data.collators import DataCollatorForUnlearning, pad_sequences
from ..data.tokenization import IGNORE_INDEX
from ..logprobs import LabelGather, decoder_and_head, gather_label_logprobs

__all__ = ["SequenceScores", "label_logprobs", "next_token_logprobs", "score_sequences"]


def label_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    *,
    chunk_size: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of the labelled tokens, without materialising full-vocabulary logits.

    Returns ``(logps, rows)``: ``logps`` (float32, shape ``(N,)``) holds ``log p(labels[b, t] | prefix)`` for every
    labelled position in row-major order, and ``rows`` (shape ``(N,)``) the batch row of each. Gradients flow when
    the caller has them enabled.
    """
    g = _gather(model, input_ids, attention_mask, labels, chunk_size=chunk_size)
    return g.logps, g.rows


def _gather(model, input_ids, attention_mask, labels, *, chunk_size: int = 4096, stats: bool = False) -> LabelGather:
    decoder, head = decoder_and_head(model)
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    cap = getattr(getattr(model, "config", None), "final_logit_softcapping", None)
    return gather_label_logprobs(hidden, head, labels, softcap=cap, chunk_size=chunk_size, stats=stats)


@torch.no_grad()
def next_token_logprobs(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    candidate_ids: Sequence[int],
    *,
    pad_token_id: int,
    batch_size: int = 32,
    progress: bool | str = False,
) -> torch.Tensor:
    """Log-probabilities ``(len(prompts), len(candidate_ids))`` of single-token continuations of each prompt.

    One forward per prompt yields every candidate (e.g. the option letters of an MCQ), instead of one sequence per
    candidate; only the last position of each prompt goes through the LM head. ``progress`` shows a tqdm bar (a
    string is its description).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    decoder, head = decoder_and_head(model)
    cand = torch.tensor(list(candidate_ids), device=device)
    out = torch.zeros(len(prompts), len(candidate_ids))
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    desc = progress if isinstance(progress, str) else "scoring"
    bar = tqdm(total=len(prompts), desc=desc, disable=not progress, leave=False)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            ids, mask = pad_sequences([prompts[i] for i in idx], pad_token_id)
            hidden = decoder(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
            last = hidden[torch.arange(len(idx), device=device), mask.sum(1).to(device) - 1]
            logp = torch.log_softmax(head(last).float(), dim=-1)
            out[torch.tensor(idx)] = logp[:, cand].cpu()
            bar.update(len(idx))
    finally:
        bar.close()
        model.train(was_training)
    return out


@dataclass
class SequenceScores:
    """Per-sequence results of :func:`score_sequences`, in input order."""

    sum_logprob: torch.Tensor  # (N,) float32: log p(y|x), summed over label tokens
    num_tokens: torch.Tensor  # (N,) long: label tokens per sequence
    # With token_stats=True: per sequence, over its label tokens in order (float32 / bool tensors).
    token_logps: list[torch.Tensor] | None = None
    is_argmax: list[torch.Tensor] | None = None
    minkpp_z: list[torch.Tensor] | None = None

    @property
    def avg_nll(self) -> torch.Tensor:
        """Mean negative log-likelihood per label token (TOFU's ``avg_loss``)."""
        return -self.sum_logprob / self.num_tokens.clamp(min=1)

    @property
    def normalized_prob(self) -> torch.Tensor:
        """Geometric-mean token probability ``P(y|x)^(1/|y|)`` (TOFU's ``Prob``)."""
        return torch.exp(-self.avg_nll)


def _prompt_groups(examples: Sequence[Mapping[str, Any]]) -> tuple[list[tuple[list[int], list[int]]], list[int]]:
    """Group rows that share a prompt (several answer variants of one question); return (groups, ungrouped rows).

    The shared prefix is the prompt minus its last token: the last prompt position must run with the answer, since
    its output predicts the first answer token.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    single = []
    for i, ex in enumerate(examples):
        cut = int(ex.get("prompt_length", 0)) - 1
        if cut < 1 or any(t != IGNORE_INDEX for t in ex["labels"][: cut + 1]):
            single.append(i)
            continue
        groups.setdefault(tuple(ex["input_ids"][:cut]), []).append(i)
    shared = []
    for key, members in groups.items():
        if len(members) > 1:
            shared.append((list(key), members))
        else:
            single.extend(members)
    return shared, single


def _gather_shared(
    model,
    chunk,
    examples,
    pad_token_id: int,
    device,
    stats: bool,
    prefix_sink: PrefixSink | None = None,
    chunk_size: int = 4096,
) -> tuple[list[int], LabelGather]:
    """Score the answer variants of several prompts: each prompt is encoded once, its key/value cache is repeated
    for its variants, and only the answers (plus the prompt's last token) run per variant."""
    decoder, head = decoder_and_head(model)
    prefix_ids, prefix_mask = pad_sequences([key for key, _ in chunk], pad_token_id)
    cache = output_cache(
        decoder(input_ids=prefix_ids.to(device), attention_mask=prefix_mask.to(device), use_cache=True)
    )
    if prefix_sink is not None:  # before the cache is repeated per variant
        prompts = [[*key, examples[members[0]]["input_ids"][len(key)]] for key, members in chunk]
        prefix_sink(prompts, cache, prefix_mask)
    rows = [(g, i) for g, (_, members) in enumerate(chunk) for i in members]
    owner = torch.tensor([g for g, _ in rows])
    cache.reorder_cache(owner.to(device))
    cut = torch.tensor([len(key) for key, _ in chunk])[owner]
    rem_ids, rem_mask = pad_sequences(
        [examples[i]["input_ids"][int(c) :] for (_, i), c in zip(rows, cut, strict=True)], pad_token_id
    )
    rem_labels, _ = pad_sequences(
        [examples[i]["labels"][int(c) :] for (_, i), c in zip(rows, cut, strict=True)], IGNORE_INDEX
    )
    mask = torch.cat([prefix_mask[owner], rem_mask], dim=1)
    positions = cut[:, None] + torch.arange(rem_ids.shape[1])[None]
    hidden = decoder(
        input_ids=rem_ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        **{cache_kwarg(): cache},
    ).last_hidden_state
    cap = getattr(getattr(model, "config", None), "final_logit_softcapping", None)
    g = gather_label_logprobs(hidden, head, rem_labels.to(device), softcap=cap, stats=stats, chunk_size=chunk_size)
    return [i for _, i in rows], g


PrefixSink = Callable[[list[list[int]], Any, torch.Tensor], None]

# Rows without a prompt of their own to share still share a template prefix (the chat template's system prompt is
# about a third of a short QA row's tokens); below this many tokens the extra cache bookkeeping is not worth it.
MIN_COMMON_PREFIX = 8


def _common_prefix(examples: Sequence[Mapping[str, Any]], idx: Sequence[int]) -> list[int]:
    """The longest token prefix that every row of ``idx`` starts with and that holds no label and none of its rows'
    last unlabelled position (whose output predicts the first label), so the rows can run from its cache."""
    if len(idx) < 2:
        return []
    first = examples[idx[0]]["input_ids"]
    n = len(first)
    for i in idx:
        ids, labels = examples[i]["input_ids"], examples[i]["labels"]
        labelled = next((t for t, y in enumerate(labels) if y != IGNORE_INDEX), len(labels))
        n = min(n, labelled - 1, len(ids) - 1)
        n = next((t for t in range(n) if ids[t] != first[t]), n)
        if n <= 0:
            return []
    return list(first[:n])


@torch.no_grad()
def score_sequences(
    model: torch.nn.Module,
    examples: Sequence[Mapping[str, Any]],
    *,
    pad_token_id: int,
    batch_size: int = 32,
    max_tokens_per_batch: int | None = 16384,
    progress: bool | str = False,
    token_stats: bool = False,
    share_prompts: bool = True,
    prefix_sink: PrefixSink | None = None,
    logit_rows: int = 64,
) -> SequenceScores:
    """Score tokenised examples (``input_ids`` + ``labels``) with ``model`` in eval mode.

    Rows are sorted by length and packed into batches of at most ``batch_size`` rows and ``max_tokens_per_batch``
    padded tokens, so little compute is spent on padding. Every example must have at least one label. ``progress``
    shows a tqdm bar (a string is used as its description). ``token_stats=True`` also keeps, per sequence, every
    label token's log-prob, argmax hit and Min-K%++ score (the inputs of MIA, exact memorisation and extraction
    strength).

    ``share_prompts`` (default) encodes a prompt once for all rows that share it (``prompt_length`` from the
    tokeniser): the answer, the paraphrase and every perturbed answer of a question cost one prompt plus their own
    tokens. The remaining rows share their common template prefix (the chat template's system prompt, when there is
    one) the same way. Results equal unshared scoring up to float rounding (checked in the tests).

    ``logit_rows`` bounds how many label positions go through the LM head at once: each holds a vocabulary-sized
    float32 row, several times over with ``token_stats``, which otherwise sets the evaluation's peak memory.

    ``prefix_sink(prompts, cache, mask)``, when given, is called for each batch of shared prompts with the prompts
    (token ids), the key/value cache of each prompt without its last token and its (right-padded) attention mask:
    the evaluation hands them to :class:`~hf_unlearn.evaluation.decoding.GreedyDecoder` so a prompt that is scored
    and generated is encoded once. The sink must not modify the cache in place.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    n = len(examples)
    sums = torch.zeros(n, dtype=torch.float32)
    counts = torch.zeros(n, dtype=torch.long)
    per_token: dict[str, list] = {"token_logps": [None] * n, "is_argmax": [None] * n, "minkpp_z": [None] * n}
    if n == 0:
        return SequenceScores(sums, counts, *(([] if token_stats else None),) * 3)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    collate = DataCollatorForUnlearning(pad_token_id=pad_token_id)
    shared, single = _prompt_groups(examples) if share_prompts else ([], list(range(n)))
    bar = tqdm(total=n, desc=progress if isinstance(progress, str) else "scoring", disable=not progress, leave=False)

    def record(idx: list[int], g: LabelGather) -> None:
        rows, logps = g.rows.cpu(), g.logps.cpu()
        per_count = torch.bincount(rows, minlength=len(idx))
        target = torch.tensor(idx)
        sums[target] = torch.zeros(len(idx), dtype=torch.float32).index_add_(0, rows, logps)
        counts[target] = per_count
        if token_stats:
            splits = per_count.tolist()
            for name, values in (
                ("token_logps", logps),
                ("is_argmax", g.is_argmax.cpu()),
                ("minkpp_z", g.minkpp_z.cpu()),
            ):
                for i, part in zip(idx, values.split(splits), strict=True):
                    per_token[name][i] = part
        bar.update(len(idx))

    try:
        common = _common_prefix(examples, single) if share_prompts else []
        if len(common) >= MIN_COMMON_PREFIX:  # e.g. a system prompt: encoded once, its cache repeated per row
            order = sorted(single, key=lambda i: len(examples[i]["input_ids"]))
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                record(
                    *_gather_shared(
                        model, [(common, idx)], examples, pad_token_id, device, token_stats, chunk_size=logit_rows
                    )
                )
            single = []
        order = sorted(single, key=lambda i: len(examples[i]["input_ids"]), reverse=True)
        start = 0
        while start < len(order):
            longest = len(examples[order[start]]["input_ids"])
            limit = batch_size
            if max_tokens_per_batch:
                limit = max(1, min(batch_size, max_tokens_per_batch // max(longest, 1)))
            idx = order[start : start + limit]
            start += len(idx)
            batch = collate([{"input_ids": examples[i]["input_ids"], "labels": examples[i]["labels"]} for i in idx])
            g = _gather(
                model,
                batch["input_ids"].to(device),
                batch["attention_mask"].to(device),
                batch["labels"].to(device),
                stats=token_stats,
                chunk_size=logit_rows,
            )
            record(idx, g)
        shared.sort(key=lambda item: len(item[0]))
        chunk: list = []
        for item in [*shared, None]:
            if item is not None:
                chunk.append(item)
            rows = sum(len(m) for _, m in chunk)
            if chunk and (item is None or rows >= batch_size):
                record(
                    *_gather_shared(
                        model, chunk, examples, pad_token_id, device, token_stats, prefix_sink, chunk_size=logit_rows
                    )
                )
                chunk = []
    finally:
        bar.close()
        model.train(was_training)
    if (counts == 0).any():
        bad = (counts == 0).nonzero().flatten().tolist()[:10]
        raise ValueError(f"Examples {bad} have no label tokens; tokenize_rows drops such rows - use its output.")
    if not token_stats:
        return SequenceScores(sums, counts)
    return SequenceScores(sums, counts, per_token["token_logps"], per_token["is_argmax"], per_token["minkpp_z"])
