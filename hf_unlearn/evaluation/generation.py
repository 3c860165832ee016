"""Greedy generation for evaluation: chat-template prompts, left padding, answers cut at the end of the turn."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..data.collators import pad_sequences
from ..data.tokenization import encode_prompt

__all__ = ["generate_answers"]


@torch.no_grad()
def generate_answers(
    model: torch.nn.Module,
    tokenizer: Any,
    questions: Sequence[str],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    system_prompt: str | None = None,
    stop_strings: Sequence[str] = (),
) -> list[str]:
    """Greedy answers to ``questions`` (one string each, in order), decoded without special tokens.

    Prompts are left-padded with a length-based attention mask (pad may equal EOS). Generation stops at EOS or the
    template's end-of-turn token; the text is also cut at the first of ``stop_strings`` and stripped.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    prompts = [encode_prompt(tokenizer, q, system_prompt=system_prompt) for q in questions]
    eos = {tokenizer.eos_token_id}
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
    if end_of_turn is not None:
        eos.add(end_of_turn)
    answers: list[str] = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            ids, mask = pad_sequences([prompts[i] for i in idx], tokenizer.pad_token_id, padding_side="left")
            out = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=sorted(t for t in eos if t is not None),
                pad_token_id=tokenizer.pad_token_id,
            )
            for row, i in enumerate(idx):
                text = tokenizer.decode(out[row, ids.shape[1] :], skip_special_tokens=True)
                for stop in stop_strings:
                    text = text.split(stop, 1)[0]
                answers[i] = text.strip()
    finally:
        model.train(was_training)
    return answers
