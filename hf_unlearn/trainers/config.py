"""The parameters every hf_unlearn method shares (:class:`UnlearnConfigMixin`, in front of a TRL config) and the
base config of the methods built on TRL's ``KTOTrainer`` (:class:`UnlearnConfig`)."""

from __future__ import annotations

import argparse
import copy
import logging
import math
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from transformers import TrainingArguments
from trl import DPOConfig, KTOConfig

from ..data.documents import CHUNKING_MODES

logger = logging.getLogger(__name__)

__all__ = [
    "RETAIN_LOSS_TYPES",
    "KTOLossTypeGuard",
    "UnlearnConfig",
    "UnlearnConfigMixin",
    "UnlearnDPOConfig",
    "inert_fields",
]

RETAIN_LOSS_TYPES = ("nll", "kl", "none")


@dataclass
class UnlearnConfigMixin:
    r"""Parameters shared by all hf_unlearn configs (mixed in front of a TRL config).

    Parameters:
        > Parameters that control the objective

        forget_coeff (`float`, *optional*, defaults to `1.0`):
            Weight of the forget term (`gamma` in open-unlearning, `npo_coeff` in the NPO/SimNPO code).
        retain_coeff (`float`, *optional*, defaults to `1.0`):
            Weight of the retain term (`alpha` in open-unlearning, `grad_diff_coeff`/`KL_coeff` elsewhere).
        retain_loss_type (`str`, *optional*, defaults to `"nll"`):
            Retain regulariser: `"nll"` (token-mean NLL on retain answers, "RT"/GradDiff), `"kl"` (forward
            KL(ref || model) on retain sequences; needs a reference every step) or `"none"`.
        kl_all_positions (`bool`, *optional*, defaults to `False`):
            Parity flag for the KL retain term. By default KL is averaged over real (attended) positions; `True`
            reproduces the reference code, which averages over all `B * T` padded positions.

        > Parameters that control the data

        system_prompt (`str`, *optional*):
            System prompt for the chat template; `None` keeps the template's default.
        retain_per_forget (`int`, *optional*, defaults to `1`):
            Retain rows paired with each forget row, i.e. the forget:retain mix of every batch is 1:k.
        pairing_seed (`int`, *optional*):
            Seed of the retain stream; defaults to `seed`.
        forget_target (`str`, *optional*):
            Reasoning-model unlearning ("R-TOFU", arXiv 2505.15214): rows carry a trace (`cot`) and are trained in the
            format `<think>\n{cot}\n</think>\n\n{answer}`. `"both"` trains the forget objective on trace and answer,
            `"answer"` on the answer only (the trace stays in the input as context), `"cot"` on the trace only;
            retain rows are always trained on both. `None` (default) keeps the plain question/answer format.
        document_chunking (`str`, *optional*, defaults to `"per_document"`):
            What happens to raw-text rows (documents) longer than `max_length`: `"per_document"` splits each into
            consecutive blocks of at most `max_length` tokens (exact substrings, cut at word starts; nothing is
            dropped), `"concatenate"` joins all documents with a blank line and cuts the whole into blocks
            (open-unlearning's pre-training datasets, e.g. its MUSE recipes: parity), `"none"` truncates them (with
            a warning counting the tokens lost). Chat rows are never split.
        document_stride (`int`, *optional*, defaults to `0`):
            Tokens of overlap between consecutive blocks of a document: the context a block starts with, not
            trained again (like `stride` in `transformers` tokenizers).

        > Parameters that control publishing

        hub_strategy (`str`, *optional*, defaults to `"end"`):
            The only accepted value: with `push_to_hub=True` the final model is pushed once, after training, to a
            repository created private (public only with `hub_private_repo=False`); checkpoints are never uploaded.
            transformers' other strategies would publish intermediate weights and training state, so they are
            refused.
    """

    forget_coeff: float = field(default=1.0, metadata={"help": "Weight of the forget term."})
    retain_coeff: float = field(default=1.0, metadata={"help": "Weight of the retain term."})
    retain_loss_type: str = field(
        default="nll", metadata={"help": "Retain regulariser.", "choices": list(RETAIN_LOSS_TYPES)}
    )
    kl_all_positions: bool = field(
        default=False, metadata={"help": "Parity: average KL over all padded positions (reference code)."}
    )
    system_prompt: str | None = field(default=None, metadata={"help": "System prompt; None = template default."})
    retain_per_forget: int = field(default=1, metadata={"help": "Retain rows per forget row (1:k batch mix)."})
    pairing_seed: int | None = field(default=None, metadata={"help": "Seed of the retain stream (default: seed)."})
    forget_target: str | None = field(
        default=None,
        metadata={
            "help": "Reasoning format: train the forget objective on the trace + answer, the answer or the trace.",
            "choices": [None, "both", "answer", "cot"],
        },
    )
    document_chunking: str = field(
        default="per_document",
        metadata={
            "help": "Documents longer than max_length: split into blocks, concatenate (open-unlearning) or truncate.",
            "choices": list(CHUNKING_MODES),
        },
    )
    document_stride: int = field(
        default=0, metadata={"help": "Tokens of context a document's block repeats from the previous block."}
    )

    # TRL/transformers defaults changed for unlearning (the TOFU recipe of arXiv 2401.06121) and for CPUs.
    learning_rate: float = field(default=1e-5, metadata={"help": "Initial learning rate (TOFU recipe: 1e-5)."})
    weight_decay: float = field(default=0.01, metadata={"help": "Weight decay (TOFU recipe: 0.01)."})
    num_train_epochs: float = field(default=10.0, metadata={"help": "Passes over the forget set (TOFU: 10)."})
    warmup_steps: float = field(default=0.1, metadata={"help": "Warm-up; a float in [0, 1) is a ratio of all steps."})
    train_sampling_strategy: str = field(
        default="random", metadata={"help": "Sampler of forget rows.", "choices": ["random", "sequential"]}
    )
    # Both names unset = off, without transformers' deprecation warning; either name turns it on (TRL defaults to on;
    # unlearning batches are small, enable it for large models).
    gradient_checkpointing: bool | None = field(default=None, metadata={"help": "Deprecated alias of the next."})
    activation_checkpointing: bool | None = field(
        default=None, metadata={"help": "Activation checkpointing (default off; enable for large models)."}
    )
    bf16: bool | None = field(
        default=None, metadata={"help": "bf16 mixed precision; default: on when the GPU supports it, off on CPU."}
    )
    # No checkpoints unless asked: a full checkpoint (weights plus optimizer state) of even a small model is several
    # times its size. Set save_strategy="steps" (and save_steps) for runs that must be resumable.
    # Unset: "steps" when save_steps is given (transformers' habit: save_steps alone turns checkpoints on), else "no".
    save_strategy: str | None = field(
        default=None,
        metadata={
            "help": "Checkpointing: 'no', 'steps' or 'epoch' (resumable runs); unset: 'steps' when --save_steps is "
            "given, else 'no'."
        },
    )
    # Publishing: one push at the end, private unless hub_private_repo=False (see hf_unlearn.hub.push_unlearned).
    hub_strategy: str = field(
        default="end",
        metadata={"help": "Only 'end': the model is pushed once, after training; checkpoints stay local."},
    )

    def __post_init__(self) -> None:
        self._refuse_inert()
        self._resolve_save_strategy()
        if "activation_checkpointing" not in TrainingArguments.__dataclass_fields__:
            # transformers < 5.24 knows only gradient_checkpointing: either of our names turns it on
            on = bool(self.activation_checkpointing or self.gradient_checkpointing)
            self.activation_checkpointing = self.gradient_checkpointing = on
        if self.bf16 is None and not getattr(self, "fp16", False):
            self.bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        accelerator = (
            torch.cuda.is_available()
            or (hasattr(torch, "xpu") and torch.xpu.is_available())
            or (torch.backends.mps.is_available())
        )
        if not accelerator:
            # Without it, `torchrun --nproc_per_node N` on a CPU machine silently trains N independent copies
            # (accelerate reports DistributedType.NO); with it, the ranks form one gloo group (MULTI_CPU).
            self.use_cpu = True
        super().__post_init__()
        if self.retain_loss_type not in RETAIN_LOSS_TYPES:
            raise ValueError(
                f"retain_loss_type must be one of {', '.join(RETAIN_LOSS_TYPES)}, got {self.retain_loss_type!r}."
            )
        if self.per_device_train_batch_size < 1:
            raise ValueError(f"per_device_train_batch_size must be >= 1, got {self.per_device_train_batch_size}.")
        if not math.isfinite(self.learning_rate) or self.learning_rate < 0:
            raise ValueError(f"learning_rate must be a finite number >= 0, got {self.learning_rate}.")
        if self.retain_per_forget < 1:
            raise ValueError(f"retain_per_forget must be >= 1, got {self.retain_per_forget}.")
        if self.forget_coeff < 0 or self.retain_coeff < 0:
            raise ValueError("forget_coeff and retain_coeff must be >= 0.")
        strategy = getattr(self.hub_strategy, "value", self.hub_strategy)
        if strategy != "end":
            raise ValueError(
                f"hub_strategy={strategy!r} uploads checkpoints while training: intermediate weights that are less "
                "unlearned than the final model (and, with 'checkpoint' or 'all_checkpoints', the optimizer and RNG "
                "state). hf_unlearn pushes once, at the end, to a private repository, with the model files, card and "
                "aggregate results only: leave hub_strategy unset (it is 'end'); checkpoints (save_steps) stay local."
            )

    def _refuse_inert(self) -> None:
        """Refuse a value for an inherited field that this config does not use (see :func:`inert_fields`)."""
        fields = type(self).__dataclass_fields__
        for name, hint in getattr(type(self), "_inert_fields", {}).items():
            f = fields.get(name)
            if f is None or f.metadata.get("help") is not argparse.SUPPRESS:  # re-declared by the method: it acts
                continue
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            if not _same(getattr(self, name), default):
                raise ValueError(
                    f"{type(self).__name__} does not use {name} (inherited from TRL's "
                    f"{_trl_base(type(self))}): {hint} Leave {name} unset."
                )

    def _resolve_save_strategy(self) -> None:
        """transformers' habit: ``save_steps`` alone means checkpoints every ``save_steps``; nothing given, none."""
        given = self.save_steps != _SAVE_STEPS_DEFAULT
        if self.save_strategy is None:
            self.save_strategy = "steps" if given else "no"
        elif given and getattr(self.save_strategy, "value", self.save_strategy) == "no":
            logger.warning(
                f"save_steps={self.save_steps} saves nothing: save_strategy is 'no'. Leave save_strategy unset (or "
                "set it to 'steps') to write a checkpoint every save_steps steps."
            )

    @property
    def uses_retain(self) -> bool:
        return self.retain_loss_type != "none" and self.retain_coeff > 0


_SAVE_STEPS_DEFAULT = 500  # TrainingArguments' default


def _plain(value: Any) -> Any:
    value = getattr(value, "value", value)  # enums TRL converts strings into
    return value[0] if isinstance(value, list | tuple) and len(value) == 1 else value


def _same(value: Any, default: Any) -> bool:
    return _plain(value) == _plain(default)


def _trl_base(cls: type) -> str:
    return next(c.__name__ for c in cls.__mro__ if c.__module__.startswith("trl."))


def inert_fields(fields: Mapping[str, str]):
    """Class decorator: hide inherited TRL fields that the unlearning trainers do not use from ``--help`` and refuse
    them when set, with ``fields[name]``: what does that job in hf_unlearn. A method that uses one of them declares it
    again (with its own help), which makes it visible and accepted. Fields absent from the installed TRL are skipped,
    so the same decorator works across TRL's minors."""

    def decorate(cls: type) -> type:
        table = dict(getattr(cls, "_inert_fields", {}))
        for name, hint in fields.items():
            f = cls.__dataclass_fields__.get(name)
            if f is None:
                continue
            hidden = copy.copy(f)
            hidden.metadata = MappingProxyType({**f.metadata, "help": argparse.SUPPRESS})
            cls.__dataclass_fields__[name] = hidden
            table[name] = hint
        cls._inert_fields = table
        return cls

    return decorate


_OWN_LOSS = "hf_unlearn computes the method's own loss (its parameters: beta, loss_scale, forget_coeff, retain_coeff)."
_FIXED_REFERENCE = (
    "the reference stays the starting model: the objectives measure how far unlearning moved the model from it."
)
_COMMON_INERT = {
    "sync_ref_model": _FIXED_REFERENCE,
    "ref_model_mixup_alpha": _FIXED_REFERENCE,
    "ref_model_sync_steps": _FIXED_REFERENCE,
    "router_aux_loss_coef": "hf_unlearn's losses add no mixture-of-experts router loss.",
    "dataset_num_proc": "rows are tokenised once, in the main process, when the trainer is built.",
    "beta": "this method has no beta (its parameters are listed by --help).",
}


@dataclass
class KTOLossTypeGuard:
    """For configs built on ``KTOConfig``: pin ``loss_type`` to the variant without KTO's KL estimate (which would add
    forwards and require sequential sampling); hf_unlearn computes its own loss."""

    loss_type: str = field(default="apo_zero_unpaired", metadata={"help": "Internal: disables KTO's KL estimate."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss_type != "apo_zero_unpaired":
            raise ValueError(f"{type(self).__name__} does not use KTO's loss_type; leave it unset.")


@inert_fields(
    {
        **_COMMON_INERT,
        "desirable_weight": "forget_coeff and retain_coeff weight the forget and retain terms.",
        "undesirable_weight": "forget_coeff and retain_coeff weight the forget and retain terms.",
        "loss_type": _OWN_LOSS,
    }
)
@dataclass
class UnlearnConfig(UnlearnConfigMixin, KTOLossTypeGuard, KTOConfig):
    r"""The config most methods subclass: hf_unlearn's shared parameters on TRL's ``KTOConfig``, whose unpaired
    forget/retain schema fits output-level unlearning (KTO's own loss stays off). Add the method's own fields,
    documented as TRL documents its configs."""


@inert_fields(
    {
        **_COMMON_INERT,
        "loss_type": _OWN_LOSS,
        "loss_weights": _OWN_LOSS,
        "ld_alpha": _OWN_LOSS,
        "f_divergence_type": _OWN_LOSS,
        "f_alpha_divergence_coef": _OWN_LOSS,
        "label_smoothing": _OWN_LOSS,
        "use_weighting": _OWN_LOSS,
        "discopop_tau": _OWN_LOSS,
        "truncation_mode": "hf_unlearn tokenises the rows itself: documents become blocks (document_chunking); chat "
        "rows longer than max_length keep their start.",
        "padding_free": "hf_unlearn's collator pads each batch to its longest row.",
        "pad_token": "the tokenizer's pad token is used (set tokenizer.pad_token).",
    }
)
@dataclass
class UnlearnDPOConfig(UnlearnConfigMixin, DPOConfig):
    r"""The base config of the methods built on TRL's ``DPOTrainer`` (IdkDPO, Reasoned-IDK): hf_unlearn's shared
    parameters on ``DPOConfig``, whose chosen/rejected pairs carry the refusal and the forget answer. DPO's loss
    variants stay off: the method computes its own loss."""
