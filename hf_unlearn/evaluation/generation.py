"""Greedy generation for evaluation: answers cut at the end of the turn or a token budget per prompt."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..data.collators import pad_sequences
from ..data.tokenization import encode_prompt

__all__ = [
    "decode_generation",
    "generate_answers",
    "generate_from_ids",
    "generate_ids",
    "generate_texts",
    "stop_token_ids",
]


def stop_token_ids(tokenizer: Any) -> list[int]:
    """End-of-sequence and end-of-turn token ids of ``tokenizer`` (greedy generation stops at any of them)."""
    ids = {tokenizer.eos_token_id}
    vocab = tokenizer.get_vocab()
    for token in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
        if token in vocab:
            ids.add(vocab[token])
    return sorted(i for i in ids if i is not None)


def greedy_decoder(model: torch.nn.Module, tokenizer: Any, *, batch_size: int, progress: Any = None) -> Any:
    """A :class:`~hf_unlearn.evaluation.decoding.GreedyDecoder` that stops at ``tokenizer``'s end-of-turn tokens."""
    from .decoding import GreedyDecoder

    return GreedyDecoder(
        model,
        stop_ids=stop_token_ids(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        batch_size=batch_size,
        progress=progress,
    )


def decode_generation(tokenizer: Any, ids: Sequence[int], stop_strings: Sequence[str] = ()) -> str:
    """Generated token ids as text: special tokens dropped, cut at the first stop string, stripped."""
    text = tokenizer.decode(list(ids), skip_special_tokens=True)
    for s in stop_strings:
        text = text.split(s, 1)[0]
    return text.strip()


def _budgets(max_new_tokens: int | Sequence[int], n: int) -> list[int]:
    if isinstance(max_new_tokens, int):
        budgets = [max_new_tokens] * n
    else:
        budgets = [int(b) for b in max_new_tokens]
        if len(budgets) != n:
            raise ValueError(f"max_new_tokens has {len(budgets)} budgets for {n} prompts; give one per prompt.")
    if any(b < 0 for b in budgets):
        raise ValueError("max_new_tokens must be >= 0.")
    return budgets


def _generate_ids_hf(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    budgets: list[int],
    batch_size: int,
    bar: Any,
    **generate_kwargs: Any,
) -> list[list[int]]:
    """``model.generate`` on length-sorted, left-padded batches; each row cut at its stop token and its budget."""
    device = next(model.parameters()).device
    stop = stop_token_ids(tokenizer)
    out: list[list[int]] = [[] for _ in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        longest = max(budgets[i] for i in idx)
        if longest > 0:
            ids, mask = pad_sequences([prompts[i] for i in idx], tokenizer.pad_token_id, padding_side="left")
            gen = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=longest,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                eos_token_id=stop,
                pad_token_id=tokenizer.pad_token_id,
                **generate_kwargs,
            )[:, ids.shape[1] :].tolist()
            for row, i in enumerate(idx):
                tokens = gen[row][: budgets[i]]
                ends = [j for j, t in enumerate(tokens) if t in stop]
                out[i] = tokens[: ends[0] + 1] if ends else tokens
        bar.update(len(idx))
    return out


@torch.no_grad()
def generate_ids(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int | Sequence[int],
    batch_size: int = 16,
    engine: str = "auto",
    progress: bool | str = False,
    **generate_kwargs: Any,
) -> list[list[int]]:
    """Greedy continuations (token ids, in order; the end-of-turn token kept when reached) of tokenised prompts.

    ``max_new_tokens`` is one budget for all prompts or one per prompt. ``engine="decoder"`` uses
    :class:`~hf_unlearn.evaluation.decoding.GreedyDecoder` (a continuously refilled batch: a row leaves at its
    end-of-turn token or budget and a waiting prompt takes its place); ``"generate"`` runs ``model.generate`` on fixed
    length-sorted batches (the implementation before the decoder, kept for comparison; ``generate_kwargs`` go to
    it); ``"auto"`` takes the decoder where it reproduces ``generate`` (decoder-only model, plain key/value cache,
    no logits processor in the generation config). ``progress`` shows a tqdm bar (a string is its description).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if engine not in ("auto", "decoder", "generate"):
        raise ValueError(f"engine must be 'auto', 'decoder' or 'generate', got {engine!r}.")
    from tqdm.auto import tqdm

    from .decoding import supports_greedy_decoder

    budgets = _budgets(max_new_tokens, len(prompts))
    was_training = model.training
    model.eval()
    bar = tqdm(
        total=len(prompts),
        desc=progress if isinstance(progress, str) else "generating",
        disable=not progress,
        leave=False,
    )
    try:
        if engine == "decoder" or (engine == "auto" and not generate_kwargs and supports_greedy_decoder(model)):
            decoder = greedy_decoder(model, tokenizer, batch_size=batch_size, progress=bar)
            try:
                for i, (prompt, budget) in enumerate(zip(prompts, budgets, strict=True)):
                    decoder.submit(i, prompt, budget)
                out = decoder.finish()
                return [out[i] for i in range(len(prompts))]
            except NotImplementedError:
                if engine == "decoder":
                    raise
                bar.reset()
        return _generate_ids_hf(model, tokenizer, prompts, budgets, batch_size, bar, **generate_kwargs)
    finally:
        bar.close()
        model.train(was_training)


def generate_from_ids(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int | Sequence[int],
    batch_size: int = 16,
    stop_strings: Sequence[str] = (),
    progress: bool | str = False,
    engine: str = "auto",
) -> list[str]:
    """Greedy continuations of tokenised prompts (in order), decoded without special tokens, cut and stripped; see
    :func:`generate_ids` for the budgets, the engine and ``progress``."""
    ids = generate_ids(
        model,
        tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        engine=engine,
        progress=progress,
    )
    return [decode_generation(tokenizer, x, stop_strings) for x in ids]


def generate_answers(
    model: torch.nn.Module,
    tokenizer: Any,
    questions: Sequence[str],
    *,
    max_new_tokens: int | Sequence[int] = 64,
    batch_size: int = 16,
    system_prompt: str | None = None,
    stop_strings: Sequence[str] = (),
    progress: bool | str = False,
    engine: str = "auto",
) -> list[str]:
    """Greedy answers to ``questions`` with the chat template (one string each, in order)."""
    prompts = [encode_prompt(tokenizer, q, system_prompt=system_prompt) for q in questions]
    return generate_from_ids(
        model,
        tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        stop_strings=stop_strings,
        progress=progress,
        engine=engine,
    )


def generate_texts(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int | Sequence[int] = 128,
    batch_size: int = 16,
    stop_strings: Sequence[str] = (),
    engine: str = "auto",
    progress: bool | str = False,
) -> list[str]:
    """Greedy continuations of raw-text prompts (no chat template; the tokenizer adds BOS as usual), as MUSE does."""
    ids = [list(tokenizer(p, add_special_tokens=True)["input_ids"]) for p in prompts]
    return generate_from_ids(
        model,
        tokenizer,
        ids,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        stop_strings=stop_strings,
        engine=engine,
        progress=progress,
    )
