"""Gradient Ascent and Gradient Difference: the simplest unlearning baselines (Jang et al. 2023, arXiv 2210.01504;
Yao et al. 2023, arXiv 2310.10683)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..objective import LossTerm, UnlearningObjective
from ..papers import PAPERS
from .base import UnlearnConfig, UnlearnTrainer

__all__ = ["AscentObjective", "GradAscentConfig", "GradAscentTrainer", "GradDiffConfig", "GradDiffTrainer"]


@dataclass
class _AscentOptions:
    """Collapse guards shared by GradAscent and GradDiff."""

    forget_nll_ceiling: float | None = field(
        default=None, metadata={"help": "Per-token cap on the forget NLL that is ascended (no gradient above it)."}
    )
    stop_at_forget_nll: float | None = field(
        default=None, metadata={"help": "Stop training once the forget token-mean NLL of a batch reaches this."}
    )


@dataclass
class GradAscentConfig(_AscentOptions, UnlearnConfig):
    r"""Configuration for [`GradAscentTrainer`].

    The loss is `-forget_coeff * NLL_bar(forget)`, the negated token-mean NLL of the forget answers (HF's own loss,
    negated). Gradient ascent is unbounded: without a guard the model collapses into gibberish.

    Parameters:
        > Parameters that control the objective

        forget_coeff (`float`, *optional*, defaults to `1.0`):
            Weight of the ascent term.
        forget_nll_ceiling (`float`, *optional*):
            Cap each forget token's NLL at this value before negating it: tokens already this unlikely get no more
            gradient (practitioners bound GA's loss, e.g. at -10). `None` disables the cap.
        stop_at_forget_nll (`float`, *optional*):
            Stop training at the end of the step in which a batch's forget token-mean NLL reaches this value.

        > Other parameters

        system_prompt, pairing_seed:
            See [`~hf_unlearn.trainers.base.UnlearnConfigMixin`]. There is no retain term (`retain_loss_type` is
            `"none"`); use [`GradDiffConfig`] for one. Other defaults as in [`NPOConfig`].
    """

    retain_loss_type: str = field(default="none", metadata={"help": "GradAscent has no retain term."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.retain_loss_type != "none":
            raise ValueError("GradAscent has no retain term; use GradDiffConfig for gradient difference.")


@dataclass
class GradDiffConfig(_AscentOptions, UnlearnConfig):
    r"""Configuration for [`GradDiffTrainer`].

    The loss is `-forget_coeff * NLL_bar(forget) + retain_coeff * R`, with `R` the retain token-mean NLL
    (`retain_loss_type="nll"`, default) or `KL(ref || model)` on retain sequences (`"kl"`, masked to real
    positions; `kl_all_positions=True` for the reference code's all-position form). Defaults: open-unlearning's
    `GradDiff.yaml` (both weights 1) with the TOFU recipe.

    Parameters:
        > Parameters that control the objective

        forget_coeff, retain_coeff, retain_loss_type, kl_all_positions:
            See [`~hf_unlearn.trainers.base.UnlearnConfigMixin`].
        forget_nll_ceiling, stop_at_forget_nll:
            Collapse guards, see [`GradAscentConfig`].

        > Other parameters

        system_prompt, retain_per_forget, pairing_seed:
            See [`~hf_unlearn.trainers.base.UnlearnConfigMixin`]. Other defaults as in [`NPOConfig`].
    """


class AscentObjective(UnlearningObjective):
    """``-coeff`` times the token-mean NLL of the forget answers, with optional collapse guards: a per-token NLL
    ceiling above which no gradient flows, and a stop once a batch's forget NLL reaches ``stop_at_nll``."""

    name = "ascent"
    logp_groups = ("forget",)

    def __init__(self, coeff: float = 1.0, *, nll_ceiling: float | None = None, stop_at_nll: float | None = None):
        self.coeff, self.nll_ceiling, self.stop_at_nll = coeff, nll_ceiling, stop_at_nll

    def loss_terms(self, batch, ctx):
        forget = ctx.logps["forget"]
        token_nll = -forget.token_logps
        if self.nll_ceiling is not None:
            token_nll = torch.clamp(token_nll, max=self.nll_ceiling)
        terms = {"forget": LossTerm(-self.coeff * token_nll.sum(), "forget", "tokens")}
        batch_nll = (-forget.logps.detach().sum() / forget.num_tokens.sum().clamp(min=1)).float()
        metrics = {"nll/forget": batch_nll, "logps/forget": forget.logps.detach().mean()}
        if self.stop_at_nll is not None and ctx.training and float(batch_nll) >= self.stop_at_nll:
            ctx.request_stop()
            metrics["stopped_at_forget_nll"] = batch_nll
        return terms, metrics


def _ascent(args) -> list[UnlearningObjective]:
    return [
        AscentObjective(args.forget_coeff, nll_ceiling=args.forget_nll_ceiling, stop_at_nll=args.stop_at_forget_nll)
    ]


class GradAscentTrainer(UnlearnTrainer):
    """Unlearning by gradient ascent on the forget answers (no retain term, no reference)."""

    config_class = GradAscentConfig
    _tag_names = ["trl", "hf_unlearn", "unlearning", "gradient-ascent"]
    _name = "GradAscent"
    _paper = PAPERS["grad_ascent"]

    @classmethod
    def build_objectives(cls, args):
        return _ascent(args)


class GradDiffTrainer(UnlearnTrainer):
    """Unlearning by gradient difference: ascend on the forget answers, descend on retain answers (or keep the
    retain distributions close to the reference with the KL variant)."""

    config_class = GradDiffConfig
    _tag_names = ["trl", "hf_unlearn", "unlearning", "gradient-difference"]
    _name = "GradDiff"
    _paper = PAPERS["grad_diff"]

    @classmethod
    def build_objectives(cls, args):
        return _ascent(args)
