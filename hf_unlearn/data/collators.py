"""Dynamic-padding collators whose attention masks come from sequence lengths.

``input_ids != pad_token_id`` would hide real EOS tokens whenever ``pad == eos`` (SmolLM2, Llama-3 instruct), so the
mask is built from each row's length instead. Scoring and training pad on the right; generation pads on the left.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from .tokenization import IGNORE_INDEX

__all__ = ["DataCollatorForUnlearning", "pad_sequences"]


def pad_sequences(
    sequences: Sequence[Sequence[int]],
    pad_value: int,
    *,
    padding_side: Literal["right", "left"] = "right",
    pad_to_multiple_of: int | None = None,
    dtype: torch.dtype = torch.long,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad ``sequences`` into a ``(B, T)`` tensor (long by default); return it with the length-based attention mask."""
    longest = max((len(s) for s in sequences), default=0)
    if pad_to_multiple_of:
        longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    ids = torch.full((len(sequences), longest), pad_value, dtype=dtype)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for i, seq in enumerate(sequences):
        n = len(seq)
        if n == 0:
            continue
        sl = slice(longest - n, longest) if padding_side == "left" else slice(0, n)
        ids[i, sl] = torch.as_tensor(seq, dtype=dtype)
        mask[i, sl] = 1
    return ids, mask


def _flatten(values: list[Any], nested: bool) -> list[Any]:
    """Rows of a nested group carry several entries each (a forget row paired with k retain rows)."""
    return [v for row in values for v in row] if nested else values


@dataclass
class DataCollatorForUnlearning:
    """Pad every ``<prefix>input_ids`` group of a batch (``input_ids``, ``forget_input_ids``, ...).

    For each group it returns ``<prefix>input_ids``, ``<prefix>attention_mask`` (from lengths) and, when present,
    ``<prefix>labels`` padded with ``-100``. Other numeric per-row fields (``index``, ``prompt_length``,
    precomputed reference log-probs, ...) become tensors; non-numeric ones are dropped.

    Args:
        pad_token_id: id written into padding positions (never used to build the mask).
        padding_side: ``"right"`` for training and scoring, ``"left"`` for batched generation.
        pad_to_multiple_of: round the padded length up (helps tensor cores on GPU).
    """

    pad_token_id: int
    padding_side: Literal["right", "left"] = "right"
    pad_to_multiple_of: int | None = None

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("Cannot collate an empty batch.")
        keys = list(features[0].keys())
        prefixes = [k[: -len("input_ids")] for k in keys if k.endswith("input_ids")]
        # A group is nested when each row holds a list of sequences rather than one sequence.
        nested = {
            p: bool(features[0][f"{p}input_ids"]) and isinstance(features[0][f"{p}input_ids"][0], list)
            for p in prefixes
        }
        batch: dict[str, torch.Tensor] = {}
        handled: set[str] = set()
        for p in prefixes:
            ids = _flatten([f[f"{p}input_ids"] for f in features], nested[p])
            batch[f"{p}input_ids"], batch[f"{p}attention_mask"] = pad_sequences(
                ids,
                self.pad_token_id,
                padding_side=self.padding_side,
                pad_to_multiple_of=self.pad_to_multiple_of,
            )
            handled |= {f"{p}input_ids", f"{p}attention_mask"}
            if f"{p}labels" in features[0]:
                labels = _flatten([f[f"{p}labels"] for f in features], nested[p])
                batch[f"{p}labels"], _ = pad_sequences(
                    labels,
                    IGNORE_INDEX,
                    padding_side=self.padding_side,
                    pad_to_multiple_of=self.pad_to_multiple_of,
                )
                handled.add(f"{p}labels")
        for k in keys:
            if k in handled:
                continue
            group = max((p for p in prefixes if k.startswith(p)), key=len, default=None)
            first = features[0][k]
            if (
                group is not None
                and isinstance(first, list)
                and (nested[group] or not first or not isinstance(first[0], list))
            ):
                seqs = _flatten([f[k] for f in features], nested[group])
                if seqs and all(isinstance(x, list) for x in seqs):  # per-token field: pad like the ids, with 0
                    floats = any(isinstance(v, float) for x in seqs for v in x[:1])
                    batch[k], _ = pad_sequences(
                        seqs,
                        0,
                        padding_side=self.padding_side,
                        pad_to_multiple_of=self.pad_to_multiple_of,
                        dtype=torch.float32 if floats else torch.long,
                    )
                    continue
            group = max((p for p in prefixes if k.startswith(p)), key=len, default=None)
            values = _flatten([f[k] for f in features], group is not None and nested[group])
            if all(isinstance(v, bool | int | float) for v in values):
                batch[k] = torch.tensor(values)
        return batch
