"""O3: continual unlearning with one LoRA adapter kept orthogonal to earlier requests ("On Large Language Model
Continual Unlearning", Gao et al., ICLR 2025, arXiv:2407.10223)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..continual.orthogonal import OrthogonalLoRAObjective
from ..papers import PAPERS
from .base import UnlearnConfig, UnlearnTrainer
from .idk_sft import IdkSFTObjective

__all__ = ["O3Config", "O3Trainer"]

O3_PAPER = PAPERS["o3"]


@dataclass
class O3Config(UnlearnConfig):
    r"""Configuration for [`O3Trainer`] (one unlearning request).

    The loss is `forget_coeff * NLL_bar(refusal | forget question) + orthogonal_weight * O_t`, the O3 code's TOFU
    target (a refusal, no retain data by default), with `O_t` the orthogonality of the adapter's `lora_A` to the
    frozen `lora_A` snapshots of every earlier request (see [`~hf_unlearn.continual.OrthogonalLoRAObjective`]).
    Request `t` continues the adapter of request `t - 1`; any other output-level objective of the library can take
    the refusal's place through [`~hf_unlearn.continual.O3Model.unlearn`].

    Parameters:
        > Parameters that control the objective

        orthogonal_weight (`float`, *optional*, defaults to `0.1`):
            Weight of `O_t` (O3's `orthogonal_loss_weight`). The first request has no penalty.
        idk_responses (`list[str]`, *optional*):
            Refusal pool (default: `hf_unlearn.data.idk.IDK_RESPONSES`).
        retain_loss_type (`str`, *optional*, defaults to `"none"`):
            O3 uses no retain data; `"nll"` or `"kl"` add the library's retain terms.
        forget_coeff, retain_coeff, kl_all_positions:
            See [`~hf_unlearn.trainers.base.UnlearnConfigMixin`].

        > Other parameters

        learning_rate (`float`, *optional*, defaults to `2e-4`):
            O3's TOFU setting for LoRA (r = 8, alpha = 32 in its code).
        system_prompt, retain_per_forget, pairing_seed:
            See [`~hf_unlearn.trainers.base.UnlearnConfigMixin`]. Other defaults as in [`NPOConfig`].
    """

    orthogonal_weight: float = field(default=0.1, metadata={"help": "Weight of the orthogonality penalty O_t."})
    idk_responses: list[str] | None = field(default=None, metadata={"help": "Refusal pool (default: built-in)."})
    retain_loss_type: str = field(default="none", metadata={"help": "Retain regulariser (O3 uses none)."})
    learning_rate: float = field(default=2e-4, metadata={"help": "Learning rate (O3's TOFU LoRA setting)."})


class O3Trainer(UnlearnTrainer):
    """One O3 unlearning request: refusal NLL on the request's forget rows plus the orthogonality penalty against
    ``previous_lora_A`` (the snapshots of earlier requests, from
    [`~hf_unlearn.continual.lora_A_snapshot`]). Train a PEFT LoRA adapter (``peft_config=`` or a ``PeftModel``)."""

    config_class = O3Config
    _tag_names = ["trl", "hf_unlearn", "unlearning", "o3", "continual"]
    _name = "O3"
    _paper = O3_PAPER

    def __init__(
        self,
        model: Any,
        args: O3Config | None = None,
        *,
        previous_lora_A: Sequence[Mapping[str, torch.Tensor]] | None = None,
        objectives: Sequence[Any] | None = None,
        **kwargs: Any,
    ) -> None:
        extra = list(objectives or [])
        if previous_lora_A:
            weight = args.orthogonal_weight if args is not None else O3Config.orthogonal_weight
            extra.append(OrthogonalLoRAObjective(previous_lora_A, weight))
        super().__init__(model, args=args, objectives=extra, **kwargs)

    @classmethod
    def build_objectives(cls, args):
        return [IdkSFTObjective(args.forget_coeff, responses=args.idk_responses, seed=args.seed)]
