"""WGA: weighted gradient ascent (Wang, Zhou, Zhou, Shin, Han, Weinberger 2025, arXiv 2502.19301)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..objective import LossTerm, UnlearningObjective
from ..papers import PAPERS
from .base import UnlearnConfig, UnlearnTrainer
from .losses import wga_weights

__all__ = ["WGAConfig", "WGAObjective", "WGATrainer"]


@dataclass
class WGAConfig(UnlearnConfig):
    r"""Configuration for [`WGATrainer`].

    The loss is `forget_coeff * mean_t [w_t * log p(y_t)] + retain_coeff * R`, with the detached weight
    `w_t = p(y_t)^beta`: gradient ascent on the forget answer tokens, each weighted by how likely the model still
    finds it, so tokens already forgotten stop pulling (GA's collapse is slowed, as NPO does per sequence).
    Defaults: open-unlearning's `WGA.yaml` (beta 1, both weights 1, NLL retain term, lr 1e-5, 5 epochs).

    Parameters:
        > Parameters that control the objective

        beta (`float`, *optional*, defaults to `1.0`):
            Exponent of the token weight; `0` is plain gradient ascent (GradDiff).
        forget_coeff, retain_coeff, retain_loss_type, kl_all_positions:
            See [`~hf_unlearn.trainers.base.UnlearnConfigMixin`].

        > Other parameters

        system_prompt, retain_per_forget, pairing_seed:
            See [`~hf_unlearn.trainers.base.UnlearnConfigMixin`]. Other defaults as in [`NPOConfig`].
    """

    beta: float = field(default=1.0, metadata={"help": "Exponent of the token weight p(y_t)^beta."})
    learning_rate: float = field(default=1e-5, metadata={"help": "Initial learning rate (WGA.yaml: 1e-5)."})
    num_train_epochs: float = field(default=5.0, metadata={"help": "Passes over the forget set (WGA.yaml: 5)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}.")


class WGAObjective(UnlearningObjective):
    """``coeff`` times the token mean of ``p(y_t)^beta * log p(y_t)`` (weights detached) on the forget answers:
    minimising it ascends the NLL of the tokens the model still predicts (Wang et al. 2025, arXiv 2502.19301)."""

    name = "wga"
    logp_groups = ("forget",)

    def __init__(self, beta: float = 1.0, coeff: float = 1.0) -> None:
        self.beta, self.coeff = beta, coeff

    def describe(self) -> str:
        return f"WGAObjective(beta={self.beta})"

    def loss_terms(self, batch, ctx):
        forget = ctx.logps["forget"]
        weights = wga_weights(forget.token_logps, self.beta)[forget.label_mask]
        total = (weights * forget.token_logps[forget.label_mask]).sum()
        metrics = {"logps/forget": forget.logps.detach().mean(), "wga/weight": weights.mean()}
        return {"forget": LossTerm(self.coeff * total, "forget", "tokens")}, metrics


class WGATrainer(UnlearnTrainer):
    """Unlearning by weighted gradient ascent: token-level ascent on the forget answers, each token weighted by its
    current probability, with a retain NLL term (GradDiff's form)."""

    config_class = WGAConfig
    _tag_names = ["trl", "hf_unlearn", "unlearning", "wga"]
    _name = "WGA"
    _paper = PAPERS["wga"]

    @classmethod
    def build_objectives(cls, args):
        return [WGAObjective(args.beta, args.forget_coeff)]
