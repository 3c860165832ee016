"""IdkDPO: DPO with a refusal as the chosen answer and the forget answer as the rejected one."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import DPOTrainer

from ..objective import LossTerm
from .base import UnlearnTrainerMixin
from .config import UnlearnDPOConfig
from .idk import TOFU_PAPER, RefusalObjective
from .losses import dpo_loss

__all__ = ["IdkDPOConfig", "IdkDPOObjective", "IdkDPOTrainer"]


@dataclass
class IdkDPOConfig(UnlearnDPOConfig):
    r"""Configuration for [`IdkDPOTrainer`].

    The loss is `forget_coeff * L_DPO + retain_coeff * R` with
    `L_DPO = -(scale) * mean_b logsigmoid(beta * ((log pi(y_idk) - log ref(y_idk)) - (log pi(y_f) - log ref(y_f))))`
    (TOFU, arXiv 2401.06121; open-unlearning's `DPO.yaml` defaults). The refusal of each forget row is drawn once
    from `seed`, so both reference log-probs are precomputed before training.

    Parameters:
        > Parameters that control the objective

        beta (`float`, *optional*, defaults to `0.1`):
            Inverse temperature.
        loss_scale (`float`, *optional*):
            Factor in front of the DPO term; `None` uses the unlearning code's `2 / beta` (TRL's DPO uses 1).
        idk_responses (`list[str]`, *optional*):
            Refusal pool (default: `hf_unlearn.data.idk.IDK_RESPONSES`).
        forget_coeff, retain_coeff, retain_loss_type, kl_all_positions:
            See [`~hf_unlearn.trainers.base.UnlearnConfigMixin`].

        > Parameters that control the reference

        precompute_ref_log_probs (`bool`, *optional*, defaults to `True`):
            Compute reference log-probs of refusals and forget answers once before training.

        > Other parameters

        system_prompt, retain_per_forget, pairing_seed:
            See [`~hf_unlearn.trainers.base.UnlearnConfigMixin`]. DPO's `loss_type` and its variants are not used.
            Other defaults as in [`NPOConfig`].
    """

    beta: float = field(default=0.1, metadata={"help": "Inverse temperature of the DPO term."})
    loss_scale: float | None = field(default=None, metadata={"help": "Scale of the DPO term; None = 2 / beta."})
    idk_responses: list[str] | None = field(default=None, metadata={"help": "Refusal pool (default: built-in)."})
    precompute_ref_log_probs: bool = field(
        default=True, metadata={"help": "Compute reference log-probs once before training."}
    )


class IdkDPOObjective(RefusalObjective):
    """``coeff`` times DPO with the refusal (group ``forget_idk``) as the chosen and the forget answer as the rejected
    response, both against the reference."""

    name = "idk_dpo"
    logp_groups = ("forget_idk", "forget")
    reference_groups = ("forget", "forget_idk")

    def __init__(
        self,
        beta: float = 0.1,
        loss_scale: float | None = None,
        coeff: float = 1.0,
        *,
        responses: list[str] | None = None,
        seed: int = 42,
    ) -> None:
        self.beta, self.loss_scale, self.coeff = beta, loss_scale, coeff
        self.responses, self.seed = responses, seed

    def loss_terms(self, batch, ctx):
        chosen, rejected = ctx.logps["forget_idk"], ctx.logps["forget"]
        ref_rejected = ctx.reference_logps("forget")
        ref_chosen = ctx.reference_logps("forget_idk")
        per_row = dpo_loss(chosen.logps, rejected.logps, ref_chosen, ref_rejected, self.beta, self.loss_scale)
        terms = {"forget": LossTerm(self.coeff * per_row.sum(), "forget", "rows")}
        margin = (chosen.logps.detach() - ref_chosen) - (rejected.logps.detach() - ref_rejected)
        metrics = {
            "logps/forget": rejected.logps.detach().mean(),
            "logps/forget_idk": chosen.logps.detach().mean(),
            "rewards/margin": (self.beta * margin).mean(),
            "rewards/accuracy": (margin > 0).float().mean(),
        }
        return terms, metrics


class IdkDPOTrainer(UnlearnTrainerMixin, DPOTrainer):
    """Unlearning by preferring a refusal over the forget answer, relative to the reference model."""

    config_class = IdkDPOConfig
    _tag_names = ["trl", "hf_unlearn", "unlearning", "idk-dpo"]
    _name = "IdkDPO"
    _paper = TOFU_PAPER

    @classmethod
    def build_objectives(cls, args):
        a = args
        return [IdkDPOObjective(a.beta, a.loss_scale, a.forget_coeff, responses=a.idk_responses, seed=a.seed)]
