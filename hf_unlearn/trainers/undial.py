"""UNDIAL: self-distillation with adjusted logits (Dong, Lin, Belkin, Huerta, Vulić 2024, arXiv 2402.10052)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from ..data.tokenization import IGNORE_INDEX
from ..objective import LossTerm, UnlearningObjective
from ..papers import PAPERS
from .base import UnlearnConfig, UnlearnTrainer
from .losses import soft_cross_entropy, undial_teacher_logits

__all__ = ["UNDIALConfig", "UNDIALObjective", "UNDIALTrainer"]

logger = logging.getLogger(__name__)


@dataclass
class UNDIALConfig(UnlearnConfig):
    r"""Configuration for [`UNDIALTrainer`].

    The forget loss is the cross-entropy of the model against `softmax(z_ref - beta * onehot(y))` at every answer
    position: the teacher (the model before unlearning) with the memorised token made `e^beta` times less likely, so
    the student lowers exactly that token and keeps the rest of the distribution (no unbounded ascent). Defaults:
    open-unlearning's `UNDIAL.yaml` (beta 10, lr 1e-4, 10 epochs, retain weight 0 as in the paper, which uses no
    retain set) with the TOFU recipe of the other trainers.

    Parameters:
        > Parameters that control the objective

        beta (`float`, *optional*, defaults to `10.0`):
            Strength of the penalty on the memorised token (the paper searches 3, 10, 30).
        forget_coeff (`float`, *optional*, defaults to `1.0`):
            Weight of the distillation term (`gamma` in open-unlearning).
        retain_coeff (`float`, *optional*, defaults to `0.0`):
            Weight of the retain term (`alpha`); 0 means no retain data is needed.
        retain_loss_type, kl_all_positions:
            See [`~hf_unlearn.trainers.base.UnlearnConfigMixin`].

        > Parameters that control the teacher

        teacher_top_k (`int` or `None`, *optional*, defaults to `256`):
            Precompute, before training, the `k` largest adjusted teacher logits at every answer position and distil
            against their softmax (the target renormalised over those `k` tokens): no reference forward and no
            second model during training. The teacher mass left out is logged once (`teacher_tail_mass`). `None`
            runs the exact teacher at every step instead (a `ref_model`, the adapter disabled under PEFT, or a
            copy TRL loads when `precompute_ref_log_probs=False`).
        undial_all_positions (`bool`, *optional*, defaults to `False`):
            Parity flag. open-unlearning averages the loss over every position of the padded batch (prompt and
            padding included), and at positions labelled -100 its one-hot lands on vocabulary id `V - 100`
            (negative indexing). `False` (default) distils answer positions only; `True` reproduces the reference
            exactly, always with the exact live teacher (`teacher_top_k` is then not used).
        precompute_ref_log_probs (`bool`, *optional*, defaults to `True`):
            With `teacher_top_k` set, nothing else is needed. With the exact teacher (`teacher_top_k=None`) under full
            fine-tuning, pass `ref_model=` or set this to `False` so TRL loads a reference copy from the model's path;
            under PEFT the teacher is the model with its adapter disabled.

        > Other parameters

        system_prompt, retain_per_forget, pairing_seed:
            See [`~hf_unlearn.trainers.base.UnlearnConfigMixin`]. Other defaults as in [`NPOConfig`].
    """

    beta: float = field(default=10.0, metadata={"help": "Penalty on the memorised token's teacher logit."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Initial learning rate (UNDIAL.yaml: 1e-4)."})
    retain_coeff: float = field(default=0.0, metadata={"help": "Weight of the retain term (UNDIAL.yaml: 0)."})
    teacher_top_k: int | None = field(
        default=256, metadata={"help": "Precompute the teacher's top-k adjusted logits; None = live exact teacher."}
    )
    undial_all_positions: bool = field(
        default=False, metadata={"help": "Parity: every padded position, one-hot at -100 wrapping (reference code)."}
    )
    precompute_ref_log_probs: bool = field(
        default=True, metadata={"help": "Keep no reference model (the teacher's top-k is precomputed)."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}.")
        if self.teacher_top_k is not None and self.teacher_top_k < 1:
            raise ValueError(f"teacher_top_k must be >= 1 or None (exact teacher), got {self.teacher_top_k}.")


def _answer_mask(labels: torch.Tensor) -> torch.Tensor:
    return labels[:, 1:] != IGNORE_INDEX


class UNDIALObjective(UnlearningObjective):
    """``coeff`` times the token-mean cross-entropy of the model against ``softmax(z_ref - beta * onehot(y))`` at
    the forget answer positions (Dong et al. 2024, arXiv 2402.10052).

    With ``teacher_top_k`` the adjusted teacher logits are precomputed once (its ``k`` largest per position);
    otherwise the exact teacher runs at every step. ``all_positions=True`` is open-unlearning's form (see
    [`UNDIALConfig`]).
    """

    name = "undial"

    def __init__(
        self, beta: float = 10.0, coeff: float = 1.0, *, teacher_top_k: int | None = 256, all_positions: bool = False
    ) -> None:
        self.beta, self.coeff = beta, coeff
        self.all_positions = all_positions
        self.teacher_top_k = None if all_positions else teacher_top_k
        self.teacher_tail_mass: float | None = None
        if all_positions:
            self.logits_groups = ("forget",)
            self.logp_groups = ("forget",)
            self.reference_logits_groups = ("forget",)
        else:
            self.label_logits_groups = ("forget",)
            self.logp_groups = ("forget",)
            if teacher_top_k is None:
                self.reference_label_logits_groups = ("forget",)

    @property
    def needs_reference(self) -> bool:
        """The teacher is the reference, also when only its top-k is kept (an explicit ``ref_model`` is honoured)."""
        return True

    def describe(self) -> str:
        return f"UNDIALObjective(beta={self.beta})"

    def prepare(self, ctx):
        if self.teacher_top_k is None:
            return {}
        values: list[list[float]] = []
        ids: list[list[int]] = []
        dropped, positions = 0.0, 0
        with torch.no_grad():
            for batch in ctx.batches():
                select = _answer_mask(batch["labels"])
                teacher = undial_teacher_logits(
                    ctx.reference_label_logits(batch), batch["labels"][:, 1:][select], self.beta
                )
                k = self._k = min(self.teacher_top_k, teacher.shape[-1])
                top = teacher.topk(k, dim=-1)
                dropped += float((1 - torch.softmax(teacher, -1).gather(-1, top.indices).sum(-1)).sum())
                positions += teacher.shape[0]
                for v, i in zip(
                    top.values.split(select.sum(-1).tolist()), top.indices.split(select.sum(-1).tolist()), strict=True
                ):
                    values.append(v.flatten().tolist())
                    ids.append(i.flatten().tolist())
        self.teacher_tail_mass = dropped / max(positions, 1)
        logger.info(
            "UNDIAL: precomputed the teacher's top-%d adjusted logits at %d answer positions; mean teacher mass left "
            "out %.3g.",
            self.teacher_top_k,
            positions,
            self.teacher_tail_mass,
        )
        return {"undial_teacher_logits": values, "undial_teacher_ids": ids}

    def counts(self, batch):
        if not self.all_positions:
            return {}
        ids = batch["forget_input_ids"]
        return {"forget/undial_positions": torch.tensor(ids.shape[0] * (ids.shape[1] - 1), device=ids.device)}

    def _topk_target(self, batch, num_tokens: torch.Tensor):
        """The precomputed ``(N, k)`` teacher logits and ids of this batch's answer positions (row-major)."""
        logits, ids = batch["forget_undial_teacher_logits"], batch["forget_undial_teacher_ids"]
        k = self._k
        keep = torch.arange(logits.shape[1], device=logits.device)[None] < (num_tokens * k)[:, None]
        return logits[keep].view(-1, k), ids[keep].view(-1, k)

    def loss_terms(self, batch, ctx):
        forget = ctx.logps["forget"]
        labels = batch["forget_labels"]
        if self.all_positions:  # parity: every position of the padded batch, one-hot index -100 wrapping around
            student = forget.logits[:, :-1]
            teacher = ctx.reference_logits("forget")[:, :-1]
            target = labels[:, 1 : student.shape[1] + 1]
            target = torch.where(target < 0, target + student.shape[-1], target)
            adjusted = undial_teacher_logits(teacher, target, self.beta)
            per_position = soft_cross_entropy(student, torch.softmax(adjusted, -1))
            return {"forget": LossTerm(self.coeff * per_position.sum(), "forget", "undial_positions")}, {}
        student = forget.label_logits
        if self.teacher_top_k is not None:
            teacher, ids = self._topk_target(batch, forget.num_tokens)
            per_token = soft_cross_entropy(student, torch.softmax(teacher, -1), ids)
        else:
            tokens = labels[:, 1:][forget.label_mask]
            teacher = undial_teacher_logits(ctx.reference_label_logits("forget"), tokens, self.beta)
            per_token = soft_cross_entropy(student, torch.softmax(teacher, -1))
        metrics = {"logps/forget": forget.logps.detach().mean()}
        if self.teacher_tail_mass is not None:
            metrics["undial/teacher_tail_mass"] = self.teacher_tail_mass
        return {"forget": LossTerm(self.coeff * per_token.sum(), "forget", "tokens")}, metrics


class UNDIALTrainer(UnlearnTrainer):
    """Unlearning by self-distillation with adjusted logits: the model is distilled towards its own initial
    next-token distribution with the memorised token's logit lowered by ``beta``. The target is fixed, so unlike
    gradient ascent the loss is bounded and training does not collapse.

    By default the teacher's top-k adjusted logits are computed once before training, so no reference model is kept.
    """

    config_class = UNDIALConfig
    _tag_names = ["trl", "hf_unlearn", "unlearning", "undial"]
    _name = "UNDIAL"
    _paper = PAPERS["undial"]

    @classmethod
    def build_objectives(cls, args):
        return [
            UNDIALObjective(
                args.beta, args.forget_coeff, teacher_top_k=args.teacher_top_k, all_positions=args.undial_all_positions
            )
        ]
