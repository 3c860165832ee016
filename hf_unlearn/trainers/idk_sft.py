"""IdkSFT: fine-tune forget questions towards refusals (TOFU's "idk" / "PO"; R-TOFU's IDK1)."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import KTOConfig, KTOTrainer

from ..data.tokenization import tokenize_rows
from .base import KTOLossTypeGuard, LossTerm, UnlearnConfigMixin, UnlearnTrainerMixin
from .idk import TOFU_PAPER, with_refusals

__all__ = ["IdkSFTConfig", "IdkSFTTrainer"]


@dataclass
class IdkSFTConfig(UnlearnConfigMixin, KTOLossTypeGuard, KTOConfig):
    r"""Configuration for [`IdkSFTTrainer`].

    The loss is `forget_coeff * NLL_bar(refusal | forget question) + retain_coeff * R`: plain supervised learning
    of a refusal on forget questions, no preference term and no reference model (spec methods.md section 4). Both
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


class IdkSFTTrainer(UnlearnTrainerMixin, KTOTrainer):
    """Unlearning by teaching the model to answer forget questions with a refusal instead of the fact."""

    config_class = IdkSFTConfig
    _tag_names = ["trl", "hf_unlearn", "unlearning", "idk"]
    _name = "IdkSFT"
    _paper = TOFU_PAPER

    def tokenize_forget(self, rows, tokenizer, args):
        refusals = with_refusals(rows, args.idk_responses, args.seed)
        return tokenize_rows(refusals, tokenizer, max_length=args.max_length, system_prompt=args.system_prompt)

    def loss_terms(self, model, inputs):
        outs = self.policy_forward(model, inputs)
        forget = outs["forget"]
        terms = {"forget": LossTerm(-self.args.forget_coeff * forget.logps.sum(), "forget", "tokens")}
        metrics = {"logps/forget_idk": forget.logps.detach().mean()}
        return self.add_retain(model, inputs, outs, terms, metrics)
