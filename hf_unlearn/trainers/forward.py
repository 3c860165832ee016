"""The shared policy forward: label log-probs of several groups in one pass, gathered before the LM head (never the
``(B, T, V)`` logits unless an objective asks for them), and the forward that stops after a hooked layer."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from accelerate.utils import is_peft_model

from ..data.tokenization import IGNORE_INDEX
from ..layers import stop_after
from ..logprobs import install_label_logprob_forward
from ..objective import SequenceLogps

__all__ = ["ForwardMixin"]


def _pad_to(x: torch.Tensor, length: int, value: int) -> torch.Tensor:
    return torch.nn.functional.pad(x, (0, length - x.shape[1]), value=value) if x.shape[1] < length else x


def _base_of(model: Any) -> Any:
    return model.get_base_model() if is_peft_model(model) else model


def _label_token_logps(model: Any, compact: bool, input_ids, attention_mask, labels) -> torch.Tensor:
    """Per-token label log-probs ``(B, T-1)`` (0 where unlabelled) through ``model``'s forward."""
    if compact:
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, label_logprobs=True)
        return out.token_logps
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True, use_cache=False)
    return out.log_probs[:, -(input_ids.shape[1] - 1) :].float()


class ForwardMixin:
    """The trainer's forwards (see the module docstring)."""

    def _compact_path(self, reference: bool = False) -> bool:
        """Install (once) the label path on the policy or the reference model; ``False`` = TRL's fused head.

        Label log-probs then go through forward (DDP-safe) but are gathered before the LM head on every device: TRL's
        fused head is compact only under Triton and scores every position (prompt included) elsewhere.
        """
        model = self.ref_model if reference and self.ref_model is not None else self.model
        return install_label_logprob_forward(_base_of(self.accelerator.unwrap_model(model)))

    def sequence_logps(
        self,
        model: Any,
        inputs: Mapping[str, torch.Tensor],
        groups: Sequence[str],
        *,
        logits_for: Sequence[str] = (),
        label_logits_for: Sequence[str] = (),
    ) -> dict[str, SequenceLogps]:
        """Policy log-probs of several groups in ONE forward (rows concatenated along the batch).

        Log-probs are gathered at label positions before the LM head (no ``(B, T, V)`` logits; TRL's fused head for
        models with logit scaling) unless ``logits_for`` names groups whose full logits are needed (the KL retain
        term); then one ordinary forward serves all groups and label log-probs are gathered from the logits at label
        positions only. ``label_logits_for`` names groups whose float32 logits at label positions are returned
        (``(N, V)``; the LM head still runs at label positions only).
        """
        ids, mask, labels = self._concat_groups(inputs, groups)
        target = labels[:, 1:]
        select = target != IGNORE_INDEX
        logits = label_logits = None
        compact = self._compact_path()
        if not logits_for and not (label_logits_for and not compact):
            if label_logits_for:
                out = model(input_ids=ids, attention_mask=mask, labels=labels, label_logprobs=True, label_logits=True)
                token_logps, label_logits = out.token_logps, out.logits
            else:
                token_logps = _label_token_logps(model, compact, ids, mask, labels)
        else:
            logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
            label_logits = logits[:, :-1][select].float()
            picked = torch.log_softmax(label_logits, -1).gather(-1, target[select][:, None])
            token_logps = torch.zeros(select.shape, dtype=torch.float32, device=ids.device)
            token_logps = token_logps.masked_scatter(select, picked.squeeze(-1))
        sizes = [inputs[f"{g}_input_ids"].shape[0] for g in groups]
        selects = select.split(sizes)
        if label_logits is not None:
            per_group = label_logits.split([int(sel.sum()) for sel in selects])
        else:
            per_group = [None] * len(groups)
        result = {}
        for g, tl, sel, lg, ll in zip(
            groups,
            token_logps.split(sizes),
            selects,
            logits.split(sizes) if logits is not None else [None] * len(groups),
            per_group,
            strict=True,
        ):
            width = inputs[f"{g}_input_ids"].shape[1]
            result[g] = SequenceLogps(
                logps=tl.sum(-1),
                num_tokens=sel.sum(-1),
                token_logps=tl[:, : width - 1],
                logits=lg[:, :width] if lg is not None and g in logits_for else None,
                label_mask=sel[:, : width - 1],
                label_logits=ll if g in label_logits_for else None,
            )
        return result

    def _concat_groups(self, inputs: Mapping[str, torch.Tensor], groups: Sequence[str]):
        """Rows of several groups as one right-padded batch."""
        length = max(inputs[f"{g}_input_ids"].shape[1] for g in groups)
        pad = self._tokenizer.pad_token_id
        ids = torch.cat([_pad_to(inputs[f"{g}_input_ids"], length, pad) for g in groups])
        mask = torch.cat([_pad_to(inputs[f"{g}_attention_mask"], length, 0) for g in groups])
        labels = torch.cat([_pad_to(inputs[f"{g}_labels"], length, IGNORE_INDEX) for g in groups])
        return ids, mask, labels

    def _truncated_forward(
        self, model: Any, inputs: Mapping[str, torch.Tensor], groups: Sequence[str], layer: int
    ) -> None:
        """Forward for hook-only objectives: the rows of ``groups``, stopped after decoder layer ``layer`` (no later
        layer, LM head or logits)."""
        ids, mask, _ = self._concat_groups(inputs, groups)
        with stop_after(model, layer):
            model(input_ids=ids, attention_mask=mask, use_cache=False)

    def _table_batches(self, table: Any, batch_size: int, prefix: str = "") -> Iterator[dict[str, torch.Tensor]]:
        """The ``<prefix>input_ids``/``<prefix>labels`` sequences of a tokenised table, collated, on the device."""
        device = self.accelerator.device
        for start in range(0, len(table), batch_size):
            chunk = table[start : start + batch_size]
            ids, labels = chunk[f"{prefix}input_ids"], chunk[f"{prefix}labels"]
            batch = self.data_collator([{"input_ids": i, "labels": lab} for i, lab in zip(ids, labels, strict=True)])
            yield {k: v.to(device) for k, v in batch.items()}

    def _stop_training(self) -> None:
        self.control.should_training_stop = True
