"""The retain regularisers shared by the output-level methods: retain NLL ("RT", GradDiff) and forward KL to the
reference on retain sequences (NPO-KL, the KL baselines of TOFU, arXiv 2401.06121)."""

from __future__ import annotations

from typing import Any

from ..objective import LossTerm, UnlearningObjective
from .losses import forward_kl

__all__ = ["RetainKL", "RetainNLL", "retain_objectives"]


class RetainNLL(UnlearningObjective):
    """``retain_coeff`` times the token-mean NLL of the retain answers."""

    name = "retain"
    needs_retain = True
    logp_groups = ("retain",)

    def __init__(self, coeff: float = 1.0) -> None:
        self.coeff = coeff

    def loss_terms(self, batch, ctx):
        out = ctx.logps["retain"]
        return {"retain": LossTerm(-self.coeff * out.logps.sum(), "retain", "tokens")}, {
            "logps/retain": out.logps.detach().mean()
        }


class RetainKL(UnlearningObjective):
    """``retain_coeff`` times ``KL(ref || model)`` of the next-token distributions on retain sequences, averaged over
    real positions (``all_positions=True``: over every padded position, as the reference code does)."""

    name = "retain"
    needs_retain = True
    logp_groups = ("retain",)
    logits_groups = ("retain",)
    reference_logits_groups = ("retain",)

    def __init__(self, coeff: float = 1.0, all_positions: bool = False) -> None:
        self.coeff = coeff
        self.all_positions = all_positions

    def loss_terms(self, batch, ctx):
        out = ctx.logps["retain"]
        kl = forward_kl(out.logits, ctx.reference_logits("retain"))
        metrics = {"logps/retain": out.logps.detach().mean()}
        if self.all_positions:  # parity: every padded position, as the reference code
            return {"retain": LossTerm(self.coeff * kl.sum(), "retain", "padded")}, metrics
        mask = batch["retain_attention_mask"]
        return {"retain": LossTerm(self.coeff * (kl * mask).sum(), "retain", "positions")}, metrics


def retain_objectives(args: Any) -> list[UnlearningObjective]:
    """The retain term a config asks for (``retain_loss_type``, ``retain_coeff``, ``kl_all_positions``)."""
    if args.retain_loss_type == "none" or args.retain_coeff <= 0:
        return []
    if args.retain_loss_type == "nll":
        return [RetainNLL(args.retain_coeff)]
    return [RetainKL(args.retain_coeff, args.kl_all_positions)]
