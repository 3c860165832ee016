"""CE-U: cross-entropy unlearning (Bo Yang 2025, arXiv 2503.01224)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..data.tokenization import IGNORE_INDEX
from ..objective import LossTerm, UnlearningObjective
from ..papers import PAPERS
from .base import UnlearnConfig, UnlearnTrainer
from .losses import ceu_loss

__all__ = ["CEUConfig", "CEUObjective", "CEUTrainer"]


@dataclass
class CEUConfig(UnlearnConfig):
    r"""Configuration for [`CEUTrainer`].

    The loss is the cross-entropy of the model against its own detached next-token distribution with the true
    token's logit set to `-inf`, averaged over the forget answer tokens after the first `n`. Its gradient is
    `p - q`: the true token's probability is pushed to zero and the rest keep their proportions; unlike gradient
    ascent it is bounded and vanishes once the token is gone. Defaults: open-unlearning's `CEU.yaml` (n = 1, no
    retain term) with the TOFU recipe of the other trainers.

    Parameters:
        > Parameters that control the objective

        ignore_first_n_answer_tokens (`int`, *optional*, defaults to `1`):
            Answer tokens at the start of each answer left out of the loss (the paper's footnote: the first tokens
            of an answer are often generic).
        forget_coeff (`float`, *optional*, defaults to `1.0`):
            Weight of the CE-U term.
        retain_loss_type (`str`, *optional*, defaults to `"none"`):
            No retain term by default, as in the paper; `"nll"` or `"kl"` add one (see
            [`~hf_unlearn.trainers.base.UnlearnConfigMixin`]).
        retain_coeff, kl_all_positions:
            See [`~hf_unlearn.trainers.base.UnlearnConfigMixin`].

        > Other parameters

        system_prompt, retain_per_forget, pairing_seed:
            See [`~hf_unlearn.trainers.base.UnlearnConfigMixin`]. Other defaults as in [`NPOConfig`].

    > [!NOTE]
    > Rows whose answers have no token after the first `n` contribute nothing. open-unlearning divides by their
    > count and returns NaN when a whole batch has none; here such a batch has a zero CE-U term.
    """

    ignore_first_n_answer_tokens: int = field(
        default=1, metadata={"help": "Answer tokens at the start of each answer left out of the loss."}
    )
    retain_loss_type: str = field(default="none", metadata={"help": "Retain regulariser (CE-U: none)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ignore_first_n_answer_tokens < 0:
            raise ValueError(f"ignore_first_n_answer_tokens must be >= 0, got {self.ignore_first_n_answer_tokens}.")


def _kept(labels: torch.Tensor, skip: int) -> torch.Tensor:
    """Positions predicting an answer token after the first ``skip`` of its row, ``(B, T-1)``."""
    select = labels[:, 1:] != IGNORE_INDEX
    return select & (select.cumsum(-1) > skip)


class CEUObjective(UnlearningObjective):
    """``coeff`` times the mean CE-U loss over the forget answer tokens after the first ``skip`` of each answer
    (Yang 2025, arXiv 2503.01224)."""

    name = "ceu"
    logp_groups = ("forget",)
    label_logits_groups = ("forget",)

    def __init__(self, skip: int = 1, coeff: float = 1.0) -> None:
        self.skip, self.coeff = skip, coeff

    def describe(self) -> str:
        return f"CEUObjective(ignore_first_n_answer_tokens={self.skip})"

    def counts(self, batch):
        return {"forget/ceu_tokens": _kept(batch["forget_labels"], self.skip).sum()}

    def loss_terms(self, batch, ctx):
        forget = ctx.logps["forget"]
        labels = batch["forget_labels"]
        width = forget.label_mask.shape[1]
        tokens = labels[:, 1:][forget.label_mask]
        keep = _kept(labels, self.skip)[:, :width][forget.label_mask]
        per_token = ceu_loss(forget.label_logits[keep], tokens[keep])
        metrics = {"logps/forget": forget.logps.detach().mean()}
        return {"forget": LossTerm(self.coeff * per_token.sum(), "forget", "ceu_tokens")}, metrics


class CEUTrainer(UnlearnTrainer):
    """Unlearning with the CE-U loss: cross-entropy towards the model's own distribution without the true token,
    on the forget answers; needs no reference model and, by default, no retain data."""

    config_class = CEUConfig
    _tag_names = ["trl", "hf_unlearn", "unlearning", "ce-u"]
    _name = "CE-U"
    _paper = PAPERS["ceu"]

    @classmethod
    def build_objectives(cls, args):
        return [CEUObjective(args.ignore_first_n_answer_tokens, args.forget_coeff)]
