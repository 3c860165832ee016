"""IdkSFT: fine-tune forget questions towards refusals (TOFU's "idk" / "PO"; R-TOFU's IDK1)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..objective import LossTerm
from .base import UnlearnConfig, UnlearnTrainer
from .idk import TOFU_PAPER, RefusalObjective

__all__ = ["IdkSFTConfig", "IdkSFTObjective", "IdkSFTTrainer"]


@dataclass
class IdkSFTConfig(UnlearnConfig):
    r"""Configuration for [`IdkSFTTrainer`].

    The loss is `forget_coeff * NLL_bar(refusal | forget question) + retain_coeff * R`: plain supervised learning
    of a refusal on forget questions, no preference term and no reference model (TOFU, arXiv 2401.06121). Both
    NLLs are token means, forget and retain rows share one forward.

    Parameters:
        > Parameters that control the objective

        idk_responses (`list[str]`, *optional*):
            Refusal pool; one response per forget row is drawn from `seed` and kept for the run. Defaults to
            `hf_unlearn.data.idk.IDK_RESPONSES` (40 responses).
        forget_coeff, retain_coeff, retain_loss_type, kl_all_positions:
            See [`~hf_unlearn.trainers.base.UnlearnConfigMixin`].

        > Other parameters

        system_prompt, retain_per_forget, pairing_seed:
            See [`~hf_unlearn.trainers.base.UnlearnConfigMixin`]. Other defaults as in [`NPOConfig`].
    """

    idk_responses: list[str] | None = field(default=None, metadata={"help": "Refusal pool (default: built-in)."})


class IdkSFTObjective(RefusalObjective):
    """``coeff`` times the token-mean NLL of a refusal to each forget question (group ``forget_idk``: one refusal
    per forget row, drawn once from ``seed``)."""

    name = "idk_sft"
    logp_groups = ("forget_idk",)

    def __init__(self, coeff: float = 1.0, *, responses: list[str] | None = None, seed: int = 42) -> None:
        self.coeff, self.responses, self.seed = coeff, responses, seed

    def loss_terms(self, batch, ctx):
        idk = ctx.logps["forget_idk"]
        terms = {"forget": LossTerm(-self.coeff * idk.logps.sum(), "forget_idk", "tokens")}
        return terms, {"logps/forget_idk": idk.logps.detach().mean()}


class IdkSFTTrainer(UnlearnTrainer):
    """Unlearning by teaching the model to answer forget questions with a refusal instead of the fact."""

    config_class = IdkSFTConfig
    _tag_names = ["trl", "hf_unlearn", "unlearning", "idk"]
    _name = "IdkSFT"
    _paper = TOFU_PAPER

    @classmethod
    def build_objectives(cls, args):
        return [IdkSFTObjective(args.forget_coeff, responses=args.idk_responses, seed=args.seed)]
