"""The parameters every hf_unlearn method shares (:class:`UnlearnConfigMixin`, in front of a TRL config) and the
base config of the methods built on TRL's ``KTOTrainer`` (:class:`UnlearnConfig`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from trl import KTOConfig

from ..data.documents import CHUNKING_MODES

__all__ = ["RETAIN_LOSS_TYPES", "KTOLossTypeGuard", "UnlearnConfig", "UnlearnConfigMixin"]

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
    save_strategy: str = field(
        default="no", metadata={"help": "Checkpointing: 'no' (default), 'steps' or 'epoch' (resumable runs)."}
    )
    # Publishing: one push at the end, private unless hub_private_repo=False (see hf_unlearn.hub.push_unlearned).
    hub_strategy: str = field(
        default="end",
        metadata={"help": "Only 'end': the model is pushed once, after training; checkpoints stay local."},
    )

    def __post_init__(self) -> None:
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

    @property
    def uses_retain(self) -> bool:
        return self.retain_loss_type != "none" and self.retain_coeff > 0


@dataclass
class KTOLossTypeGuard:
    """For configs built on ``KTOConfig``: pin ``loss_type`` to the variant without KTO's KL estimate (which would add
    forwards and require sequential sampling); hf_unlearn computes its own loss."""

    loss_type: str = field(default="apo_zero_unpaired", metadata={"help": "Internal: disables KTO's KL estimate."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss_type != "apo_zero_unpaired":
            raise ValueError(f"{type(self).__name__} does not use KTO's loss_type; leave it unset.")


@dataclass
class UnlearnConfig(UnlearnConfigMixin, KTOLossTypeGuard, KTOConfig):
    r"""The config most methods subclass: hf_unlearn's shared parameters on TRL's ``KTOConfig``, whose unpaired
    forget/retain schema fits output-level unlearning (KTO's own loss stays off). Add the method's own fields,
    documented as TRL documents its configs."""
