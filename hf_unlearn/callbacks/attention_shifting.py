"""Attention Shifting (Tan et al. 2025, "Wisdom is Knowing What not to Say", arXiv 2510.17210) as a callback.

No reference code is public, so parts of this module are one reading of the paper. The paper states two attention-level
interventions trained jointly - importance-aware *suppression* of attention to fact-bearing tokens on forget data and
attention-guided *retention* on retain data - plus response shaping that discourages fabricated answers. This module
implements that reading:

* **suppression** (forget rows): on the chosen layers, the attention mass that answer positions put on fact-bearing
  tokens, averaged over layers and heads, summed over answer positions, is minimised;
* **retention** (retain rows): ``KL(A_frozen || A)`` between the frozen model's and the current attention
  distributions on the same layers, per head and real query position;
* **abstention** (forget questions): NLL of a refusal (hf_unlearn's IDK pool, one per row, fixed), so the model
  learns to decline instead of inventing - the hallucination-free goal of the method.

Fact-bearing tokens come from the data's ``fact_span`` (the built-in benchmark records one per QA; mapped to tokens
through the tokenizer's offsets) and, for rows without one, from a saliency fallback: the ``saliency_top_p`` share of
answer tokens with the largest ``|grad . embedding|`` of the frozen model's answer NLL.

Mechanics: a custom attention function is registered (with its mask function - without the mask registration a
custom implementation runs *without a causal mask*). On the chosen layers, while the trainer's forward runs, it
computes eager attention and records the probabilities; everywhere else it delegates to SDPA with the same mask.
Default trained parameters under full fine-tuning are the query and key projections of the chosen layers (the
attention logits); under PEFT the adapter trains, and the frozen attention is the adapter-disabled model's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..data.idk import refusal_columns
from ..data.tokenization import IGNORE_INDEX, encode_qa
from ..objective import LossTerm
from .base import RepresentationCallback, decoder_layers

__all__ = ["ATTENTION_NAME", "AttentionShiftingCallback"]

ATTENTION_NAME = "hf_unlearn_attention_shifting"
_REGISTERED = False


def _repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    if n_rep == 1:
        return x
    b, h, t, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, t, d).reshape(b, h * n_rep, t, d)


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Eager attention with recorded probabilities on layers being shifted; SDPA elsewhere (same mask)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    owner = getattr(module, "_hf_unlearn_shift", None)
    if owner is None:  # not a shifted layer. Shifted layers always take the eager path below, so that the backward
        # recompute of activation checkpointing runs the same operations as the forward did.
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    n_rep = query.shape[1] // key.shape[1]
    k, v = _repeat_kv(key, n_rep), _repeat_kv(value, n_rep)
    scaling = scaling if scaling is not None else 1.0 / math.sqrt(query.shape[-1])
    logits = torch.matmul(query, k.transpose(2, 3)) * scaling
    if attention_mask is not None:
        mask = attention_mask[:, :, :, : k.shape[-2]]
        logits = logits + (mask if mask.dtype != torch.bool else torch.zeros_like(logits).masked_fill(~mask, -1e9))
    probs = torch.softmax(logits.float(), dim=-1)
    if owner._recording is not None:  # only during the trainer's forward, never in the backward recompute
        owner._recording[module.layer_idx] = probs
    out = torch.matmul(probs.to(v.dtype), v).transpose(1, 2).contiguous()
    return out, probs


def _register() -> None:
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(ATTENTION_NAME, _attention)
    AttentionMaskInterface.register(ATTENTION_NAME, eager_mask)  # required: else no causal mask at all
    _REGISTERED = True


class AttentionShiftingCallback(RepresentationCallback):
    """Attention Shifting: suppress attention to fact-bearing tokens on forget data, keep retain attention, abstain.

    Args:
        layers: decoder layers whose attention is shifted (default: the middle third of the model).
        suppress_coeff: weight of the suppression term (forget). The term is an attention mass (a fraction of one)
            while the refusal NLL is several nats, so at 1 the refusal dominates the update; raise it by one to two
            orders of magnitude for the fact attention itself to drop.
        retain_coeff: weight of the attention-retention KL term (retain).
        abstain_coeff: weight of the refusal NLL on forget questions; 0 disables it.
        saliency_top_p: share of answer tokens marked as fact-bearing by saliency when a row has no ``fact_span``.
        params: regexes of parameters to train under full fine-tuning (default: q/k projections of ``layers``).
        idk_responses: refusal pool for the abstention term (default: the built-in one).
        seed: seed of the refusal draw.
    """

    def __init__(
        self,
        layers: Sequence[int] | None = None,
        *,
        suppress_coeff: float = 1.0,
        retain_coeff: float = 1.0,
        abstain_coeff: float = 1.0,
        saliency_top_p: float = 0.2,
        params: list[str] | None = None,
        idk_responses: Sequence[str] | None = None,
        seed: int = 0,
    ) -> None:
        self.layers = sorted(set(layers)) if layers else None
        super().__init__(max(self.layers) if self.layers else 0, params)
        if not 0 < saliency_top_p <= 1:
            raise ValueError(f"saliency_top_p must be in (0, 1], got {saliency_top_p}.")
        self.suppress_coeff, self.retain_coeff, self.abstain_coeff = suppress_coeff, retain_coeff, abstain_coeff
        self.saliency_top_p = saliency_top_p
        self.idk_responses = list(idk_responses) if idk_responses else None
        self.seed = seed
        self._recording: dict[int, torch.Tensor] | None = None
        self._original_attn: str | None = None

    def default_params(self, num_layers: int) -> list[str]:
        return [rf"(^|\.)layers\.{i}\.self_attn\.(q|k)_proj\.weight$" for i in self.layers]

    # ------------------------------------------------------------------------------------------ set-up

    @property
    def hooked_layers(self) -> tuple[int, ...]:
        return tuple(self.layers or ())

    def describe(self) -> str:
        return f"AttentionShiftingCallback(layers={self.layers})"

    def setup(self, model, args):
        n = len(decoder_layers(model))
        if self.layers is None:
            self.layers = list(range(n // 3, 2 * n // 3)) or [0]
            self.layer = max(self.layers)
        bad = [i for i in self.layers if not 0 <= i < n]
        if bad:
            raise ValueError(
                f"AttentionShiftingCallback: layers {bad} are out of range; this model has decoder layers 0..{n - 1}."
            )
        for i in self.layers:
            attn = getattr(decoder_layers(model)[i], "self_attn", None)
            if attn is None or not hasattr(attn, "layer_idx"):
                raise ValueError(
                    f"AttentionShiftingCallback: decoder layer {i} has no standard `self_attn` (with `layer_idx`) "
                    "that goes through transformers' attention interface; this architecture cannot be shifted."
                )
        super().setup(model, args)
        _register()
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self._original_attn = base.config._attn_implementation
        if self._original_attn not in ("sdpa", "eager", ATTENTION_NAME):
            raise ValueError(
                f"AttentionShiftingCallback needs attention probabilities, which {self._original_attn!r} does not "
                "expose, and replaces it with eager/SDPA attention; load the model with attn_implementation='sdpa'."
            )
        base.set_attn_implementation(ATTENTION_NAME)
        for i in self.layers:
            decoder_layers(model)[i].self_attn._hf_unlearn_shift = self

    def on_train_end(self, args, state, control, model=None, **kwargs):
        super().on_train_end(args, state, control, model=model, **kwargs)
        for i in self.layers:
            decoder_layers(model)[i].self_attn._hf_unlearn_shift = None
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        if self._original_attn:
            base.set_attn_implementation(self._original_attn)

    def prepare(self, ctx):
        """Columns ``span_mask`` (fact-bearing tokens) and the refusal sequence ``abstain_*`` of each forget row."""
        rows, args, tokenizer = ctx.rows, ctx.args, ctx.tokenizer
        masks, need_saliency = [], []
        for ex in ctx.forget:
            row = rows[ex["index"]]
            mask = [0] * len(ex["input_ids"])
            if row.get("fact_span") is not None and "question" in row:
                again = encode_qa(
                    tokenizer,
                    row["question"],
                    row["answer"],
                    system_prompt=args.system_prompt,
                    max_length=args.max_length,
                    answer_spans=[row["fact_span"]],
                )
                if again.input_ids == ex["input_ids"]:
                    mask = again.span_mask
            if not any(mask):
                need_saliency.append(len(masks))
            masks.append(mask)
        if need_saliency:
            salient = self._saliency(ctx.model, [ctx.forget[i] for i in need_saliency], ctx.device)
            for i, mask in zip(need_saliency, salient, strict=True):
                masks[i] = mask
        columns: dict[str, list] = {"span_mask": masks}
        if self.abstain_coeff:
            columns |= refusal_columns(
                rows,
                ctx.forget["index"],
                tokenizer,
                responses=self.idk_responses,
                seed=self.seed,
                max_length=args.max_length,
                system_prompt=args.system_prompt,
                prefix="abstain",
            )
        return columns

    def _saliency(self, model: Any, rows: list[dict], device: Any) -> list[list[int]]:
        """Mark the top answer tokens by |grad . embedding| of the answer NLL (frozen model, one row at a time)."""
        emb_layer = model.get_input_embeddings()
        was_training = model.training
        model.eval()
        masks = []
        try:
            for ex in rows:
                ids = torch.tensor([ex["input_ids"]], device=device)
                labels = torch.tensor([ex["labels"]], device=device)
                emb = emb_layer(ids).detach().requires_grad_(True)
                logits = model(inputs_embeds=emb, use_cache=False).logits[:, :-1].float()
                loss = torch.nn.functional.cross_entropy(
                    logits.transpose(1, 2), labels[:, 1:], ignore_index=IGNORE_INDEX
                )
                (grad,) = torch.autograd.grad(loss, emb)
                score = (grad * emb).sum(-1).abs()[0]
                answer = (labels[0] != IGNORE_INDEX).nonzero().flatten()
                k = max(1, math.ceil(self.saliency_top_p * len(answer)))
                top = answer[score[answer].topk(min(k, len(answer))).indices]
                mask = [0] * len(ex["input_ids"])
                for t in top.tolist():
                    mask[t] = 1
                masks.append(mask)
        finally:
            model.train(was_training)
        return masks

    # -------------------------------------------------------------------------------------------- loss

    def capturing(self, model):
        import contextlib

        base = super().capturing(model)

        @contextlib.contextmanager
        def ctx():
            self._recording = {}
            with base as captured:
                try:
                    yield captured
                finally:  # the attention probabilities of the hooked layers reach the loss with the captures
                    captured["attention_probs"], self._recording = self._recording, None

        return ctx()

    @torch.no_grad()
    def _frozen_probs(self, ctx, rows: slice) -> dict[int, torch.Tensor]:
        self._recording = {}
        try:
            if self._peft:
                self.frozen_activations(ctx, ctx.batch["retain_input_ids"], ctx.batch["retain_attention_mask"])
                return dict(self._recording)
            self.frozen_activations(ctx)  # all rows of the captured forward
            return {k: v[rows] for k, v in self._recording.items()}
        finally:
            self._recording = None

    def loss_terms(self, batch, ctx):
        probs = ctx.capture_of(self)["attention_probs"]
        terms, metrics = {}, {}
        f = ctx.slices["forget"]
        wf = batch["forget_input_ids"].shape[1]
        span = batch["forget_span_mask"][:, :wf].float()
        queries = (batch["forget_labels"][:, :wf] != IGNORE_INDEX).float()
        mass = torch.stack(
            [(probs[i][f, :, :wf, :wf] * span[:, None, None, :]).sum(-1).mean(1) for i in self.layers]
        ).mean(0)  # (B_f, T): attention mass on fact tokens, averaged over layers and heads
        terms["as_suppress"] = LossTerm(self.suppress_coeff * (mass * queries).sum(), "forget", "tokens")
        metrics["as/fact_attention"] = (mass * queries).sum().detach() / queries.sum().clamp(min=1)
        if "retain" in ctx.slices and self.retain_coeff:
            r = ctx.slices["retain"]
            wr = batch["retain_input_ids"].shape[1]
            frozen = self._frozen_probs(ctx, r)
            real = batch["retain_attention_mask"][:, :wr].float()
            kls = []
            for i in self.layers:
                p = frozen[i][:, :, :wr, :wr].float()
                q = probs[i][r, :, :wr, :wr].float()
                kls.append((torch.xlogy(p, p) - torch.xlogy(p, q.clamp(min=1e-30))).sum(-1).mean(1))
            kl = torch.stack(kls).mean(0)
            terms["as_retain"] = LossTerm(self.retain_coeff * (kl * real).sum(), "retain", "positions")
            metrics["as/retain_kl"] = (kl * real).sum().detach() / real.sum().clamp(min=1)
        if self.abstain_coeff and "forget_abstain_input_ids" in batch:
            out = ctx.sequence_logps(["forget_abstain"])["forget_abstain"]
            terms["as_abstain"] = LossTerm(-self.abstain_coeff * out.logps.sum(), "forget_abstain", "tokens")
            metrics["logps/forget_abstain"] = out.logps.detach().mean()
        return terms, metrics
