"""SimNPO: reference-free, length-normalised NPO (Fan, Liu, Lin, Jia, Zhang, Mei, Liu 2025)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..objective import LossTerm, UnlearningObjective
from ..papers import PAPERS
from .base import UnlearnConfig, UnlearnTrainer
from .losses import simnpo_loss

__all__ = ["SimNPOConfig", "SimNPOObjective", "SimNPOTrainer"]


@dataclass
class SimNPOConfig(UnlearnConfig):
    r"""Configuration for [`SimNPOTrainer`].

    The loss is `forget_coeff * L_SimNPO + retain_coeff * R` with
    `L_SimNPO = -(scale) * mean_b logsigmoid(beta * S(b) / |y_b| - gamma)` (the form of the paper, arXiv 2410.07163).
    No reference model is loaded. Defaults are the TOFU forget10 setting of the reference code.

    Parameters:
        > Parameters that control the objective

        beta (`float`, *optional*, defaults to `4.5`):
            Inverse temperature. Much larger than NPO's because the argument is a per-token mean (~1 nat), not a sum.
        gamma (`float`, *optional*, defaults to `0.0`):
            Reward margin (`delta` in open-unlearning, `gamma` in the SimNPO code).
        margin_scaled_by_beta (`bool`, *optional*, defaults to `False`):
            Parity flag: the reference code computes `logsigmoid(beta * (S/|y| - gamma))`, i.e. `beta * gamma` as
            margin (open-unlearning issue 123). Both forms agree at the default `gamma=0`.
        loss_scale (`float`, *optional*):
            Factor in front of the SimNPO term; `None` uses `2 / beta`.
        forget_coeff (`float`, *optional*, defaults to `0.125`):
            Weight of the SimNPO term (`npo_coeff`; 0.1375 for TOFU forget05).
        retain_coeff, retain_loss_type, kl_all_positions:
            See [`~hf_unlearn.trainers.base.UnlearnConfigMixin`] (default retain NLL, weight 1).

        > Other parameters

        system_prompt, retain_per_forget, pairing_seed:
            See [`~hf_unlearn.trainers.base.UnlearnConfigMixin`]; [`~trl.KTOConfig`] parameters apply except KTO's
            loss options. Other defaults as in [`NPOConfig`].
    """

    beta: float = field(default=4.5, metadata={"help": "Inverse temperature of the SimNPO term."})
    gamma: float = field(default=0.0, metadata={"help": "Reward margin."})
    margin_scaled_by_beta: bool = field(
        default=False, metadata={"help": "Parity: margin beta * gamma as in the reference code."}
    )
    loss_scale: float | None = field(default=None, metadata={"help": "Scale of the SimNPO term; None = 2 / beta."})
    forget_coeff: float = field(default=0.125, metadata={"help": "Weight of the SimNPO term."})


class SimNPOObjective(UnlearningObjective):
    """``coeff * L_SimNPO`` on the forget rows: ``-(scale) * logsigmoid(beta * S / |y| - gamma)`` per row, no
    reference (Fan et al. 2025, arXiv 2410.07163)."""

    name = "simnpo"
    logp_groups = ("forget",)

    def __init__(
        self,
        beta: float = 4.5,
        gamma: float = 0.0,
        *,
        margin_scaled_by_beta: bool = False,
        loss_scale: float | None = None,
        coeff: float = 0.125,
    ) -> None:
        self.beta, self.gamma, self.margin_scaled_by_beta = beta, gamma, margin_scaled_by_beta
        self.loss_scale, self.coeff = loss_scale, coeff

    def loss_terms(self, batch, ctx):
        forget = ctx.logps["forget"]
        per_row = simnpo_loss(
            forget.logps,
            forget.num_tokens,
            self.beta,
            self.gamma,
            margin_scaled_by_beta=self.margin_scaled_by_beta,
            scale=self.loss_scale,
        )
        terms = {"forget": LossTerm(self.coeff * per_row.sum(), "forget", "rows")}
        metrics = {
            "logps/forget": forget.logps.detach().mean(),
            "nll/forget": (-forget.logps / forget.num_tokens).mean(),
        }
        return terms, metrics


class SimNPOTrainer(UnlearnTrainer):
    """Unlearning with SimNPO: NPO without a reference model, on the length-normalised forget NLL, so short and
    long answers are pushed alike and no reference bias favours already-forgotten samples."""

    config_class = SimNPOConfig
    _tag_names = ["trl", "hf_unlearn", "unlearning", "simnpo"]
    _name = "SimNPO"
    _paper = PAPERS["simnpo"]

    @classmethod
    def build_objectives(cls, args):
        return [
            SimNPOObjective(
                args.beta,
                args.gamma,
                margin_scaled_by_beta=args.margin_scaled_by_beta,
                loss_scale=args.loss_scale,
                coeff=args.forget_coeff,
            )
        ]
