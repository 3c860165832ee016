"""Greedy decoding for evaluation with a continuously refilled batch.

``model.generate`` decodes a batch until its longest row ends: a row that stops after 8 tokens keeps decoding padding
while another rambles to the token limit, and the next batch waits. :class:`GreedyDecoder` keeps up to ``batch_size``
rows in flight instead: a row leaves the batch at its end-of-turn token or its own token budget, and waiting prompts
take its place. Rows are admitted in prompt-length order and the key/value columns no remaining row attends to are
dropped, so little compute goes to padding.

A prompt is encoded without its last token (the prefix) and that token is fed as the first decoding input. The prefix
is exactly what the scoring pass of an evaluation already encodes for each question
(:func:`~hf_unlearn.evaluation.scoring.score_sequences` with ``prefix_sink``), so its key/value cache can be handed
over with :meth:`GreedyDecoder.submit_prefilled` and the prompt is not encoded twice.

Outputs are the greedy continuations ``model.generate(do_sample=False)`` produces; rows are independent, so only float
rounding of a different batch composition can differ, as between two batch sizes of ``generate`` itself.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .._compat import cache_kwarg, output_cache
from ..data.collators import pad_sequences

__all__ = ["DecodingStats", "GreedyDecoder", "select_cache_rows", "supports_greedy_decoder"]

# GenerationConfig fields that change greedy decoding, with the value that leaves it unchanged.
_NEUTRAL_GENERATION = {
    "repetition_penalty": (None, 1.0),
    "encoder_repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0),
    "encoder_no_repeat_ngram_size": (None, 0),
    "bad_words_ids": (None,),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "sequence_bias": (None,),
    "min_new_tokens": (None, 0),
    "min_length": (None, 0),
    "exponential_decay_length_penalty": (None,),
    "guidance_scale": (None, 1.0),
    "watermarking_config": (None,),
}


def supports_greedy_decoder(model: torch.nn.Module) -> bool:
    """Whether :class:`GreedyDecoder` reproduces ``model.generate``'s greedy decoding for ``model``: a decoder-only LM
    whose generation config adds no logits processor. Sliding-window and other non-plain caches are detected at the
    first prefill (:class:`GreedyDecoder` then raises ``NotImplementedError`` and callers fall back)."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return False
    gen = getattr(model, "generation_config", None)
    if gen is None:
        return True
    return all(getattr(gen, name, None) in neutral for name, neutral in _NEUTRAL_GENERATION.items())


def select_cache_rows(cache: Any, rows: torch.Tensor | Sequence[int]) -> Any:
    """A new cache object holding ``rows`` (batch indices) of ``cache``'s keys and values; ``cache`` is unchanged."""
    index = torch.as_tensor(rows, device=cache.layers[0].keys.device)
    out = copy.copy(cache)
    out.layers = [copy.copy(layer) for layer in cache.layers]
    for layer in out.layers:
        layer.keys, layer.values = layer.keys[index], layer.values[index]
    return out


@dataclass
class _Block:
    """Rows in the same key/value cache: in flight (the active block) or prefilled and waiting to be admitted."""

    keys: list[Hashable]
    cache: Any  # DynamicCache, batch = rows
    mask: torch.Tensor  # (rows, width) long
    next_token: torch.Tensor  # (rows,) the input of the next decoding step
    position: torch.Tensor  # (rows,) its position id

    def select(self, rows: torch.Tensor | list[int], *, inplace: bool = False) -> _Block:
        """The block of ``rows``: its own cache, or this block's cache cut down layer by layer (``inplace``), so the
        whole cache never exists twice - the copy would set the peak memory of long generations."""
        index = torch.as_tensor(rows, device=self.mask.device)
        if inplace:
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[index], layer.values[index]
        return _Block(
            [self.keys[j] for j in index.tolist()],
            self.cache if inplace else select_cache_rows(self.cache, index),
            self.mask[index],
            self.next_token[index],
            self.position[index],
        )

    def left_pad(self, width: int) -> None:
        extra = width - self.mask.shape[1]
        if extra <= 0:
            return
        for layer in self.cache.layers:
            b, h, _, d = layer.keys.shape
            layer.keys = torch.cat([layer.keys.new_zeros(b, h, extra, d), layer.keys], dim=2)
            layer.values = torch.cat([layer.values.new_zeros(b, h, extra, d), layer.values], dim=2)
        self.mask = torch.cat([self.mask.new_zeros(self.mask.shape[0], extra), self.mask], dim=1)

    def drop_unattended(self) -> None:
        """Drop leading key/value columns that no row attends to (padding of rows that have left)."""
        lead = int((self.mask.sum(0) == 0).long().cumprod(0).sum())
        if lead:
            self.mask = self.mask[:, lead:]
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[:, :, lead:], layer.values[:, :, lead:]


def _merge(a: _Block, b: _Block) -> _Block:
    width = max(a.mask.shape[1], b.mask.shape[1])
    a.left_pad(width)
    b.left_pad(width)
    for la, lb in zip(a.cache.layers, b.cache.layers, strict=True):
        la.keys, la.values = torch.cat([la.keys, lb.keys]), torch.cat([la.values, lb.values])
    return _Block(
        a.keys + b.keys,
        a.cache,
        torch.cat([a.mask, b.mask]),
        torch.cat([a.next_token, b.next_token]),
        torch.cat([a.position, b.position]),
    )


def _check_plain_cache(cache: Any) -> None:
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        kinds = sorted({type(layer).__name__ for layer in layers or []}) or [type(cache).__name__]
        raise NotImplementedError(f"GreedyDecoder needs a plain DynamicCache; this model uses {kinds}.")


@dataclass
class DecodingStats:
    """What a :class:`GreedyDecoder` did: decoding steps, row-steps (tokens decoded), prompts it encoded itself,
    prompts whose prefix cache was handed over, the most rows decoded at once, and the seconds spent encoding and
    decoding."""

    steps: int = 0
    tokens: int = 0
    prefilled: int = 0
    reused: int = 0
    max_in_flight: int = 0
    seconds_prefill: float = 0.0
    seconds_decode: float = 0.0


class GreedyDecoder:
    """Greedy decoding of many prompts with at most ``batch_size`` rows in flight (see the module docstring).

    Submit prompts (token ids, with a token budget each) with :meth:`submit`, or with their prefix cache already
    computed with :meth:`submit_prefilled`; :meth:`run` decodes while a full batch is available and :meth:`finish`
    decodes everything left and returns the generated token ids per key. ``refill_at`` is how many free slots
    trigger encoding waiting prompts (default a quarter of the batch): encoding a few prompts costs a forward pass of
    its own.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        stop_ids: Sequence[int],
        pad_token_id: int,
        batch_size: int = 32,
        refill_at: int | None = None,
        progress: Any = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.model = model
        self.device = next(model.parameters()).device
        self.stop = torch.tensor(sorted(set(stop_ids)), device=self.device)
        self.pad_token_id = pad_token_id
        self.batch_size = batch_size
        self.refill_at = refill_at or max(1, batch_size // 4)
        self.queue: list[tuple[Hashable, list[int], int]] = []
        self.waiting: list[_Block] = []
        self.active: _Block | None = None
        self.budget: dict[Hashable, int] = {}
        self.out: dict[Hashable, list[int]] = {}
        self.stats = DecodingStats()
        self.progress = progress  # a tqdm bar advanced by one per finished prompt
        self._sorted = True

    # -- submission ---------------------------------------------------------------------------------------------
    def _register(self, key: Hashable, budget: int) -> None:
        if key in self.budget:
            raise ValueError(f"Key {key!r} was submitted twice.")
        self.budget[key] = int(budget)
        self.out[key] = []
        if budget < 1 and self.progress is not None:
            self.progress.update(1)

    def submit(self, key: Hashable, prompt: Sequence[int], budget: int) -> None:
        """Queue ``prompt`` (token ids) for up to ``budget`` new tokens; it is encoded when there is room."""
        if not len(prompt):
            raise ValueError(f"Prompt {key!r} is empty; greedy decoding needs at least one token.")
        self._register(key, budget)
        if budget < 1:
            return
        self.queue.append((key, list(prompt), int(budget)))
        self._sorted = False

    def submit_prefilled(
        self,
        keys: Sequence[Hashable],
        prompts: Sequence[Sequence[int]],
        budgets: Sequence[int],
        cache: Any,
        mask: torch.Tensor,
    ) -> None:
        """Hand over rows whose prefix (each prompt without its last token) is already in ``cache`` with attention
        ``mask`` (any padding side); the decoder takes ownership of the cache."""
        _check_plain_cache(cache)
        live = []
        for j, (key, budget) in enumerate(zip(keys, budgets, strict=True)):
            self._register(key, budget)
            if budget >= 1:
                live.append(j)
        if not live:
            return
        block = _Block(
            list(keys),
            cache,
            mask.to(self.device).long(),
            torch.tensor([p[-1] for p in prompts], device=self.device),
            torch.tensor([len(p) - 1 for p in prompts], device=self.device),
        )
        if len(live) < len(keys):
            block = block.select(live, inplace=True)
        self.stats.reused += len(live)
        self.waiting.append(block)

    # -- decoding -----------------------------------------------------------------------------------------------
    def _prefill(self, items: list[tuple[Hashable, list[int], int]]) -> _Block | None:
        """Encode whole prompts (left-padded, as ``generate`` does); their first token comes from this pass."""
        start = time.perf_counter()
        ids, mask = pad_sequences([p for _, p, _ in items], self.pad_token_id, padding_side="left")
        mask = mask.to(self.device)
        out = self.model(
            input_ids=ids.to(self.device),
            attention_mask=mask,
            position_ids=(mask.cumsum(1) - 1).masked_fill(mask == 0, 1),
            use_cache=True,
            logits_to_keep=1,
        )
        kv = output_cache(out)
        _check_plain_cache(kv)
        keys = [k for k, _, _ in items]
        pos = torch.tensor([len(p) for _, p, _ in items], device=self.device)
        block = _Block(keys, kv, mask, out.logits[:, -1].argmax(-1), pos)
        self.stats.prefilled += len(items)
        self.stats.seconds_prefill += time.perf_counter() - start
        return self._emit(block)

    def _emit(self, block: _Block) -> _Block | None:
        """Record ``block.next_token`` for every row; return the rows that go on (``None`` when none do)."""
        stopped = torch.isin(block.next_token, self.stop).tolist()
        keep = []
        for j, (key, tok) in enumerate(zip(block.keys, block.next_token.tolist(), strict=True)):
            out = self.out[key]
            out.append(tok)
            if not stopped[j] and len(out) < self.budget[key]:
                keep.append(j)
        if self.progress is not None and len(keep) < len(block.keys):
            self.progress.update(len(block.keys) - len(keep))
        if not keep:
            return None
        if len(keep) < len(block.keys):
            block = block.select(keep, inplace=True)
            block.drop_unattended()
        return block

    def _admit(self) -> None:
        free = self.batch_size - self._in_flight()
        while free > 0 and self.waiting:
            block = self.waiting.pop(0)
            if len(block.keys) > free:
                block, rest = block.select(list(range(free))), block.select(list(range(free, len(block.keys))))
                self.waiting.insert(0, rest)
            self.active = block if self.active is None else _merge(self.active, block)
            free -= len(block.keys)
        if self.queue and free >= min(self.refill_at, len(self.queue)):
            if not self._sorted:
                self.queue.sort(key=lambda item: len(item[1]))
                self._sorted = True
            items, self.queue = self.queue[:free], self.queue[free:]
            block = self._prefill(items)
            if block is not None:
                self.active = block if self.active is None else _merge(self.active, block)

    def _step(self) -> None:
        block = self.active
        start = time.perf_counter()
        block.mask = torch.cat([block.mask, block.mask.new_ones(block.mask.shape[0], 1)], dim=1)
        logits = self.model(
            input_ids=block.next_token[:, None],
            attention_mask=block.mask,
            position_ids=block.position[:, None],
            use_cache=True,
            **{cache_kwarg(): block.cache},
            logits_to_keep=1,
        ).logits
        self.stats.steps += 1
        self.stats.tokens += len(block.keys)
        self.stats.max_in_flight = max(self.stats.max_in_flight, len(block.keys))
        block.next_token, block.position = logits[:, -1].argmax(-1), block.position + 1
        self.active = self._emit(block)
        self.stats.seconds_decode += time.perf_counter() - start

    def _pending(self) -> int:
        return len(self.queue) + sum(len(b.keys) for b in self.waiting)

    @torch.no_grad()
    def run(self) -> None:
        """Decode while a full batch is in flight or waiting (keeps memory bounded while prompts are submitted)."""
        while self._in_flight() + self._pending() >= self.batch_size:
            self._admit()
            if self.active is not None:
                self._step()

    @torch.no_grad()
    def finish(self) -> dict[Hashable, list[int]]:
        """Decode every submitted prompt to its end; returns the generated token ids per key (the stop token
        included when reached)."""
        while self.active is not None or self._pending():
            self._admit()
            if self.active is not None:
                self._step()
        return self.out

    def _in_flight(self) -> int:
        return len(self.active.keys) if self.active is not None else 0
