"""Greedy generation for evaluation: left padding with length-based masks, answers cut at the end of the turn."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..data.collators import pad_sequences
from ..data.tokenization import encode_prompt

__all__ = ["generate_answers", "generate_from_ids", "generate_texts"]


def _stop_ids(tokenizer: Any) -> list[int]:
    ids = {tokenizer.eos_token_id}
    vocab = tokenizer.get_vocab()
    for token in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
        if token in vocab:
            ids.add(vocab[token])
    return sorted(i for i in ids if i is not None)


@torch.no_grad()
def generate_from_ids(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    batch_size: int = 16,
    stop_strings: Sequence[str] = (),
    progress: bool | str = False,
) -> list[str]:
    """Greedy continuations of tokenised prompts (in order), decoded without special tokens, cut and stripped.

    ``progress`` shows a tqdm bar over prompts (a string is used as its description)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    stop = _stop_ids(tokenizer)
    out_texts: list[str] = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    bar = tqdm(
        total=len(prompts),
        desc=progress if isinstance(progress, str) else "generating",
        disable=not progress,
        leave=False,
    )
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            ids, mask = pad_sequences([prompts[i] for i in idx], tokenizer.pad_token_id, padding_side="left")
            out = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                eos_token_id=stop,
                pad_token_id=tokenizer.pad_token_id,
            )
            for row, i in enumerate(idx):
                text = tokenizer.decode(out[row, ids.shape[1] :], skip_special_tokens=True)
                for s in stop_strings:
                    text = text.split(s, 1)[0]
                out_texts[i] = text.strip()
            bar.update(len(idx))
    finally:
        bar.close()
        model.train(was_training)
    return out_texts


def generate_answers(
    model: torch.nn.Module,
    tokenizer: Any,
    questions: Sequence[str],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    system_prompt: str | None = None,
    stop_strings: Sequence[str] = (),
    progress: bool | str = False,
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
    )


def generate_texts(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 128,
    batch_size: int = 16,
    stop_strings: Sequence[str] = (),
) -> list[str]:
    """Greedy continuations of raw-text prompts (no chat template; the tokenizer adds BOS as usual), as MUSE does."""
    ids = [list(tokenizer(p, add_special_tokens=True)["input_ids"]) for p in prompts]
    return generate_from_ids(
        model, tokenizer, ids, max_new_tokens=max_new_tokens, batch_size=batch_size, stop_strings=stop_strings
    )
