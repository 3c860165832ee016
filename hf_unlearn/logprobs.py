"""Label-position log-probabilities: the primitive shared by training and evaluation.

The decoder's final hidden states are gathered at the positions that predict a label *before* the LM head, so the
``(B, T, V)`` logits tensor is never built (for a 49k vocabulary that is most of the memory of a forward). Log-softmax
runs in float32 on the gathered rows, in chunks, so bf16 models lose no precision.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .data.tokenization import IGNORE_INDEX

__all__ = [
    "LabelGather",
    "LabelLogprobOutput",
    "decoder_and_head",
    "gather_label_logprobs",
    "install_label_logprob_forward",
    "supports_label_gather",
]


def decoder_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not hasattr(base, "get_decoder") or base.get_output_embeddings() is None:
        raise TypeError(f"{type(base).__name__} is not a causal LM with a decoder and an output embedding.")
    return base.get_decoder(), base.get_output_embeddings()


# Configs that rescale logits before the softmax in ways this module does not reproduce; such models keep TRL's head.
_LOGIT_SCALING_ATTRS = ("logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")


def supports_label_gather(model: torch.nn.Module) -> bool:
    """Whether :func:`gather_label_logprobs` reproduces this model's next-token distribution exactly."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
    if any(getattr(config, a, None) not in (None, 1, 1.0) for a in _LOGIT_SCALING_ATTRS):
        return False
    return hasattr(base, "get_decoder") and base.get_output_embeddings() is not None


class LabelGather(NamedTuple):
    """Result of :func:`gather_label_logprobs` (``N`` = number of labelled positions, row-major)."""

    logps: torch.Tensor  # (N,) float32 log p(label | prefix)
    rows: torch.Tensor  # (N,) batch row of each position
    select: torch.Tensor  # (B, T-1) bool, positions that predict a label
    is_argmax: torch.Tensor | None = None  # (N,) bool, label is the most likely token (EM, ES)
    minkpp_z: torch.Tensor | None = None  # (N,) float32, (log p - mu) / sigma over the vocabulary (Min-K%++)


def gather_label_logprobs(
    hidden: torch.Tensor,
    head: torch.nn.Module,
    labels: torch.Tensor,
    *,
    softcap: float | None = None,
    chunk_size: int = 4096,
    stats: bool = False,
) -> LabelGather:
    """Label log-probs from final hidden states: gather the predicting positions first, then apply the LM head.

    Only ``N x V`` logits exist at a time (in chunks), never ``B x T x V``. With ``stats=True`` the same float32
    chunk also yields whether each label is the argmax and its Min-K%++ score ``z = (log p(y) - mu) / sigma`` with
    ``mu = E_p[log p]`` and ``sigma^2 = Var_p[log p]`` (clamped at 1e-6), at no extra forward.
    """
    target = labels[:, 1:]
    select = target != IGNORE_INDEX
    h = hidden[:, :-1][select]
    tokens = target[select]
    out, hits, zs = [], [], []
    for start in range(0, h.shape[0], chunk_size):
        logits = head(h[start : start + chunk_size]).float()
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        logp = torch.log_softmax(logits, dim=-1)
        tok = tokens[start : start + chunk_size, None]
        picked = logp.gather(-1, tok).squeeze(-1)
        out.append(picked)
        if stats:
            p = logp.exp()
            mu = (p * logp).sum(-1)
            var = (p * logp.square()).sum(-1) - mu.square()
            zs.append((picked - mu) / var.clamp(min=1e-6).sqrt())
            hits.append(logits.argmax(-1) == tok.squeeze(-1))
    empty = hidden.new_zeros(0, dtype=torch.float32)
    logps = torch.cat(out) if out else empty
    if not stats:
        return LabelGather(logps, select.nonzero()[:, 0], select)
    is_argmax = torch.cat(hits) if hits else empty.bool()
    return LabelGather(logps, select.nonzero()[:, 0], select, is_argmax, torch.cat(zs) if zs else empty)


@dataclass
class LabelLogprobOutput:
    """Output of the compact label path: per-token label log-probs (float32), the mask of labelled positions and,
    when asked for, the float32 logits ``(N, V)`` at those positions (row-major, as ``label_mask.nonzero()``)."""

    token_logps: torch.Tensor
    label_mask: torch.Tensor
    logits: torch.Tensor | None = None


def install_label_logprob_forward(model: torch.nn.Module) -> bool:
    """Add a compact label-log-prob path to ``model.forward``: ``model(..., labels=l, label_logprobs=True)`` returns
    per-token log-probs ``(B, T-1)`` (zero where unlabelled) computed by :func:`gather_label_logprobs`; with
    ``label_logits=True`` also the logits at the labelled positions only, for objectives that need the whole
    next-token distribution of the answer (UNDIAL, CE-U, PDU) - still no ``(B, T, V)`` tensor.

    It goes through ``forward`` - the method DDP/FSDP wrappers call - so distributed training stays correct, unlike
    calling the decoder directly. Other calls (generation, plain logits) run the class's own forward, so a deep copy
    of the model stays independent.
    Under PEFT patch the base model: ``PeftModel.forward`` passes extra keyword arguments down to it. Returns
    ``False`` (and changes nothing) for models whose logits are rescaled in ways the gather does not reproduce.
    """
    if not supports_label_gather(model) or getattr(model, "_hf_unlearn_label_forward", False):
        return getattr(model, "_hf_unlearn_label_forward", False)
    softcap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)
    class_forward = type(model).forward

    # The class's forward, not the previous bound method: a closure over the instance would make copy.deepcopy(model)
    # run the *original* model's weights. Other calls never need TRL's fused head (which passes them through anyway).
    @functools.wraps(class_forward)
    def forward(self, *args, label_logprobs: bool = False, label_logits: bool = False, **kwargs):
        if not label_logprobs:
            return class_forward(self, *args, **kwargs)
        labels = kwargs.pop("labels")
        # PEFT passes return_dict/output_* as None; the decoder needs only the inputs.
        kwargs = {k: v for k, v in kwargs.items() if v is not None and k not in ("return_dict", "num_items_in_batch")}
        kwargs["use_cache"] = False
        hidden = self.get_decoder()(*args, **kwargs).last_hidden_state
        head = self.get_output_embeddings()
        if label_logits:
            labels = labels.to(head.weight.device)
            select = labels[:, 1:] != IGNORE_INDEX
            logits = head(hidden.to(head.weight.device)[:, :-1][select]).float()
            if softcap:
                logits = torch.tanh(logits / softcap) * softcap
            picked = torch.log_softmax(logits, -1).gather(-1, labels[:, 1:][select][:, None]).squeeze(-1)
            token_logps = picked.new_zeros(select.shape).masked_scatter(select, picked)
            return LabelLogprobOutput(token_logps=token_logps, label_mask=select, logits=logits)
        logps, _, select, *_ = gather_label_logprobs(
            hidden.to(head.weight.device), head, labels.to(head.weight.device), softcap=softcap
        )
        # masked_scatter keeps the result connected to the graph even when a micro-batch has no label at all.
        token_logps = logps.new_zeros(select.shape).masked_scatter(select, logps)
        return LabelLogprobOutput(token_logps=token_logps, label_mask=select)

    model.forward = types.MethodType(forward, model)
    model._hf_unlearn_label_forward = True
    return True
