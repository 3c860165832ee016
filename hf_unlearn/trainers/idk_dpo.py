"""IdkDPO: DPO with a refusal as the chosen answer and the forget answer as the rejected one."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import DPOConfig, DPOTrainer

from ..data.tokenization import tokenize_rows
from .base import LossTerm, UnlearnConfigMixin, UnlearnTrainerMixin
from .idk import TOFU_PAPER, with_refusals
from .losses import dpo_loss

__all__ = ["IdkDPOConfig", "IdkDPOTrainer"]


@dataclass
class IdkDPOConfig(UnlearnConfigMixin, DPOConfig):
    r"""Configuration for [`IdkDPOTrainer`].

    The loss is `forget_coeff * L_DPO + retain_coeff * R` with
    `L_DPO = -(scale) * mean_b logsigmoid(beta * ((log pi(y_idk) - log ref(y_idk)) - (log pi(y_f) - log ref(y_f))))`
    (spec methods.md section 4, open-unlearning `DPO.yaml` defaults). The refusal of each forget row is drawn once
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


class IdkDPOTrainer(UnlearnTrainerMixin, DPOTrainer):
    """Unlearning by preferring a refusal over the forget answer, relative to the reference model."""

    config_class = IdkDPOConfig
    _needs_reference = True
    _reference_groups = ("forget", "forget_idk")
    _tag_names = ["trl", "hf_unlearn", "unlearning", "idk-dpo"]
    _name = "IdkDPO"
    _paper = TOFU_PAPER

    def tokenize_forget(self, rows, tokenizer, args):
        kwargs = {"max_length": args.max_length, "system_prompt": args.system_prompt}
        originals = tokenize_rows(rows, tokenizer, **kwargs)
        refusals = {
            r["index"]: r
            for r in tokenize_rows(with_refusals(rows, args.idk_responses, args.seed), tokenizer, **kwargs)
        }
        paired = []
        for row in originals:
            idk = refusals.get(row["index"])
            if idk is None:
                continue
            paired.append({**row, "idk_input_ids": idk["input_ids"], "idk_labels": idk["labels"]})
        return paired

    def loss_terms(self, model, inputs):
        outs = self.policy_forward(model, inputs, ("forget_idk", "forget"))
        chosen, rejected = outs["forget_idk"], outs["forget"]
        if "forget_ref_logps" in inputs:
            ref_rejected = inputs["forget_ref_logps"].to(rejected.logps)
            ref_chosen = inputs["forget_idk_ref_logps"].to(chosen.logps)
        else:
            ref_rejected = self.reference_logps(
                model, inputs["forget_input_ids"], inputs["forget_attention_mask"], inputs["forget_labels"]
            )
            ref_chosen = self.reference_logps(
                model, inputs["forget_idk_input_ids"], inputs["forget_idk_attention_mask"], inputs["forget_idk_labels"]
            )
        a = self.args
        per_row = dpo_loss(chosen.logps, rejected.logps, ref_chosen, ref_rejected, a.beta, a.loss_scale)
        terms = {"forget": LossTerm(a.forget_coeff * per_row.sum(), "forget", "rows")}
        margin = (chosen.logps.detach() - ref_chosen) - (rejected.logps.detach() - ref_rejected)
        metrics = {
            "logps/forget": rejected.logps.detach().mean(),
            "logps/forget_idk": chosen.logps.detach().mean(),
            "rewards/margin": (a.beta * margin).mean(),
            "rewards/accuracy": (margin > 0).float().mean(),
        }
        return self.add_retain(model, inputs, outs, terms, metrics)
