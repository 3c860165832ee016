"""Reasoned-IDK: unlearning for reasoning models by teaching a coherent but inconclusive trace followed by a refusal
("R-TOFU: Unlearning in Large Reasoning Models", Yoon, Jeung and No, arXiv:2505.15214)."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import DPOTrainer

from ..papers import PAPERS
from .base import UnlearnTrainerMixin
from .config import UnlearnDPOConfig
from .idk_dpo import IdkDPOObjective
from .idk_sft import IdkSFTObjective

__all__ = ["ReasonedIDKConfig", "ReasonedIDKDPOObjective", "ReasonedIDKNLLObjective", "ReasonedIDKTrainer"]

RTOFU_PAPER = PAPERS["reasoned_idk"]
_VARIANTS = ("reasoned", "direct", "answer")


@dataclass
class ReasonedIDKConfig(UnlearnDPOConfig):
    r"""Configuration for [`ReasonedIDKTrainer`].

    Rows are trained in the reasoning format `<think>\n{trace}\n</think>\n\n{answer}`. The refusal target of each
    forget row is its inconclusive trace (`idk_cot`) followed by a refusal drawn once from `seed`:

    - `loss_type="dpo"`: `forget_coeff * L_DPO + retain_coeff * R` with the refusal target as the chosen and the
      original trace + answer as the rejected response, against the reference (precomputed, the adapter disabled
      under PEFT, or `ref_model`), exactly as [`IdkDPOTrainer`] does for plain answers;
    - `loss_type="nll"`: `forget_coeff * NLL_bar(refusal target) + retain_coeff * R`, the R-TOFU code's form (all its
      IDK variants are NLL fine-tuning plus a retain term; no reference model).

    Parameters:
        > Parameters that control the objective

        loss_type (`str`, *optional*, defaults to `"dpo"`):
            `"dpo"` or `"nll"` (see above).
        idk_variant (`str`, *optional*, defaults to `"reasoned"`):
            The refusal target: `"reasoned"` (the row's `idk_cot` + a refusal), `"direct"` (a refusal as the trace
            and as the answer; R-TOFU's Direct IDK) or `"answer"` (the original trace kept as context, a refusal as
            the trained answer; R-TOFU's Answer IDK).
        beta (`float`, *optional*, defaults to `0.1`):
            Inverse temperature of the DPO term.
        loss_scale (`float`, *optional*):
            Factor in front of the DPO term; `None` uses the unlearning code's `2 / beta`.
        idk_responses (`list[str]`, *optional*):
            Refusal pool (default: `hf_unlearn.data.idk.IDK_RESPONSES`).
        forget_coeff, retain_coeff, retain_loss_type, kl_all_positions:
            See [`~hf_unlearn.trainers.base.UnlearnConfigMixin`].

        > Parameters that control the data

        forget_target (`str`, *optional*, defaults to `"both"`):
            What the rejected sequence trains (see [`~hf_unlearn.trainers.base.UnlearnConfigMixin`]); the reasoning
            format is required, so `None` is refused.

        > Parameters that control the reference

        precompute_ref_log_probs (`bool`, *optional*, defaults to `True`):
            Compute the reference log-probs of both targets once before training (`loss_type="dpo"`).

        > Other parameters

        system_prompt, retain_per_forget, pairing_seed:
            See [`~hf_unlearn.trainers.base.UnlearnConfigMixin`]. Other defaults as in [`NPOConfig`].
    """

    loss_type: str = field(default="dpo", metadata={"help": "dpo or nll.", "choices": ["dpo", "nll"]})
    idk_variant: str = field(default="reasoned", metadata={"help": "Refusal target.", "choices": list(_VARIANTS)})
    beta: float = field(default=0.1, metadata={"help": "Inverse temperature of the DPO term."})
    loss_scale: float | None = field(default=None, metadata={"help": "Scale of the DPO term; None = 2 / beta."})
    idk_responses: list[str] | None = field(default=None, metadata={"help": "Refusal pool (default: built-in)."})
    forget_target: str | None = field(
        default="both", metadata={"help": "What the rejected sequence trains.", "choices": ["both", "answer", "cot"]}
    )
    precompute_ref_log_probs: bool = field(
        default=True, metadata={"help": "Compute reference log-probs once before training."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()  # TRL turns loss_type into a list
        kind = self.loss_type[0] if isinstance(self.loss_type, list) and len(self.loss_type) == 1 else self.loss_type
        if kind not in ("dpo", "nll"):
            raise ValueError(f"ReasonedIDKConfig.loss_type must be 'dpo' or 'nll', got {self.loss_type!r}.")
        if self.idk_variant not in _VARIANTS:
            raise ValueError(f"idk_variant must be one of {_VARIANTS}, got {self.idk_variant!r}.")
        if self.forget_target is None:
            raise ValueError(
                "Reasoned-IDK trains the reasoning format: set forget_target to 'both', 'answer' or 'cot'."
            )

    @property
    def reasoned_loss(self) -> str:
        return self.loss_type[0] if isinstance(self.loss_type, list) else self.loss_type


class ReasonedIDKDPOObjective(IdkDPOObjective):
    """[`IdkDPOObjective`] with the reasoning-format refusal target as the chosen response."""

    name = "reasoned_idk_dpo"

    def __init__(self, *args, variant: str = "reasoned", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reasoning = variant


class ReasonedIDKNLLObjective(IdkSFTObjective):
    """[`IdkSFTObjective`] on the reasoning-format refusal target (R-TOFU's code)."""

    name = "reasoned_idk_nll"

    def __init__(self, *args, variant: str = "reasoned", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reasoning = variant


class ReasonedIDKTrainer(UnlearnTrainerMixin, DPOTrainer):
    """Unlearning for reasoning models: prefer (or learn) an inconclusive trace and a refusal over the original trace
    and answer."""

    config_class = ReasonedIDKConfig
    _tag_names = ["trl", "hf_unlearn", "unlearning", "reasoned-idk", "reasoning"]
    _name = "ReasonedIDK"
    _paper = RTOFU_PAPER

    @classmethod
    def build_objectives(cls, args):
        a = args
        if a.reasoned_loss == "nll":
            return [
                ReasonedIDKNLLObjective(a.forget_coeff, responses=a.idk_responses, seed=a.seed, variant=a.idk_variant)
            ]
        return [
            ReasonedIDKDPOObjective(
                a.beta, a.loss_scale, a.forget_coeff, responses=a.idk_responses, seed=a.seed, variant=a.idk_variant
            )
        ]
