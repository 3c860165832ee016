"""PDU: primal-dual unlearning with a logit-margin flattening loss (Entesari, Hatami, Khaziev, Ramakrishna, Fazlyab
2025, arXiv 2506.05314)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import torch

from ..data.tokenization import IGNORE_INDEX
from ..objective import LossTerm, UnlearningObjective
from ..papers import PAPERS
from .base import UnlearnConfig, UnlearnTrainer
from .losses import logit_margin_loss

__all__ = ["DualVariable", "PDUConfig", "PDUForgetObjective", "PDURetainObjective", "PDUTrainer"]

logger = logging.getLogger(__name__)

DUAL_UPDATES = ("step", "epoch")


@dataclass
class PDUConfig(UnlearnConfig):
    r"""Configuration for [`PDUTrainer`].

    PDU solves `min L_forget  s.t.  L_retain <= eps` by primal-dual descent: the loss is
    `forget_coeff * L_forget + lambda * (L_retain - eps)` and the dual variable `lambda` (initially `retain_coeff`)
    is updated by projected ascent `lambda <- max(0, lambda + dual_step_size * (L_retain - eps))`, so the retain
    weight grows while the constraint is violated and shrinks once it holds. `L_forget` is the mean over forget
    answer tokens of `(max_v z_v - mean_v z_v)^2`, which is zero exactly when the next-token distribution is uniform;
    `L_retain` is the retain token-mean NLL. Defaults: open-unlearning's `PDU.yaml` (primal-dual on, step size 1,
    per-step updates after a 5-epoch warm-up, both weights 1) with the TOFU recipe of the other trainers.

    Parameters:
        > Parameters that control the objective

        forget_coeff (`float`, *optional*, defaults to `1.0`):
            Weight of the logit-margin term (`gamma`).
        retain_coeff (`float`, *optional*, defaults to `1.0`):
            Initial value of the dual variable `lambda` (open-unlearning's `alpha`; the authors' TOFU runs use 100,
            since the margin loss is quadratic in logits and large).
        retain_loss_eps (`float`, *optional*):
            The constraint level `eps` on the retain NLL. open-unlearning requires it (the authors: "a value
            appropriately larger than the retain loss of the model before unlearning"; 0.3 in their TOFU runs).
            `None` measures the retain NLL of the model before training on up to 256 retain rows and takes
            `retain_loss_eps_factor` times it (a library default, not the paper's).
        retain_loss_eps_factor (`float`, *optional*, defaults to `3.0`):
            Multiple of the initial retain NLL used when `retain_loss_eps` is `None`.
        primal_dual (`bool`, *optional*, defaults to `True`):
            Update `lambda` by dual ascent; `False` keeps it fixed (a plain weighted sum).
        dual_step_size (`float`, *optional*, defaults to `1.0`):
            Step size of the dual ascent.
        dual_update_upon (`str`, *optional*, defaults to `"step"`):
            `"step"`: after every optimizer step, from the mean retain NLL of that step's accumulation window (the
            reference code updates after every micro-batch; the two agree without gradient accumulation).
            `"epoch"`: at the end of every epoch, from the retain NLL of the retain rows that epoch was paired with.
        dual_warmup_epochs (`int`, *optional*, defaults to `5`):
            Epochs before `lambda` may change (as in the reference: updates start after the end of this epoch).
        pdu_unshifted_mask (`bool`, *optional*, defaults to `False`):
            Parity flag. open-unlearning masks the unshifted logits with the unshifted labels, so it flattens the
            distributions at the answer tokens' own positions (which predict the *next* token, one past the answer
            at the end) rather than at the positions that predict the answer. `False` (default) flattens the
            positions that predict answer tokens; `True` reproduces the reference (and needs full logits).
        retain_loss_type (`str`, *optional*, defaults to `"nll"`):
            Only `"nll"`: the constraint is on the retain NLL.

        > Other parameters

        system_prompt, retain_per_forget, pairing_seed:
            See [`~hf_unlearn.trainers.base.UnlearnConfigMixin`]. Other defaults as in [`NPOConfig`].

    > [!NOTE]
    > `lambda` is saved with every checkpoint (in `trainer_state.json`) and restored on resume, so a resumed run
    > continues with the same dual variable; the reference code restarts it from `alpha`.
    """

    retain_loss_eps: float | None = field(
        default=None, metadata={"help": "Constraint level on the retain NLL; None = factor x initial retain NLL."}
    )
    retain_loss_eps_factor: float = field(
        default=3.0, metadata={"help": "Multiple of the initial retain NLL when retain_loss_eps is None."}
    )
    primal_dual: bool = field(default=True, metadata={"help": "Update the retain weight by dual ascent."})
    dual_step_size: float = field(default=1.0, metadata={"help": "Step size of the dual ascent."})
    dual_update_upon: str = field(
        default="step", metadata={"help": "When lambda is updated.", "choices": list(DUAL_UPDATES)}
    )
    dual_warmup_epochs: int = field(default=5, metadata={"help": "Epochs before lambda may change."})
    pdu_unshifted_mask: bool = field(
        default=False, metadata={"help": "Parity: flatten the answer tokens' own positions (reference code)."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.retain_loss_type != "nll":
            raise ValueError(
                f"PDU constrains the retain NLL; retain_loss_type must be 'nll', got {self.retain_loss_type!r}."
            )
        if self.dual_update_upon not in DUAL_UPDATES:
            raise ValueError(f"dual_update_upon must be 'step' or 'epoch', got {self.dual_update_upon!r}.")
        if self.dual_step_size < 0 or self.dual_warmup_epochs < 0:
            raise ValueError("dual_step_size and dual_warmup_epochs must be >= 0.")
        if self.retain_loss_eps_factor <= 0:
            raise ValueError(f"retain_loss_eps_factor must be > 0, got {self.retain_loss_eps_factor}.")


class DualVariable:
    """The retain weight ``lambda`` of PDU with the retain NLL accumulated since its last update."""

    def __init__(self, value: float, eps: float | None = None) -> None:
        self.value = float(value)
        self.eps = eps
        self.can_update = False
        self.nll_sum = 0.0
        self.tokens = 0.0

    def record(self, nll_sum: torch.Tensor, tokens: torch.Tensor) -> None:
        self.nll_sum += float(nll_sum)
        self.tokens += float(tokens)

    def ascend(self, mean_nll: float, step_size: float) -> None:
        """Projected dual ascent ``lambda <- max(0, lambda + step_size * (mean_nll - eps))``."""
        self.value = max(0.0, self.value + step_size * (mean_nll - self.eps))


class PDUForgetObjective(UnlearningObjective):
    """``coeff`` times the mean over forget answer tokens of ``(max_v z_v - mean_v z_v)^2``, the squared logit
    margin, at the positions that predict them (``unshifted=True``: at the answer tokens' own positions, as the
    reference code)."""

    name = "pdu"
    logp_groups = ("forget",)

    def __init__(self, coeff: float = 1.0, *, unshifted: bool = False) -> None:
        self.coeff, self.unshifted = coeff, unshifted
        if unshifted:
            self.logits_groups = ("forget",)
        else:
            self.label_logits_groups = ("forget",)

    def counts(self, batch):
        if not self.unshifted:
            return {}
        return {"forget/pdu_positions": (batch["forget_labels"] != IGNORE_INDEX).sum()}

    def loss_terms(self, batch, ctx):
        forget = ctx.logps["forget"]
        if self.unshifted:
            mask = batch["forget_labels"] != IGNORE_INDEX
            total = logit_margin_loss(forget.logits[mask]).sum()
            term = LossTerm(self.coeff * total, "forget", "pdu_positions")
        else:
            term = LossTerm(self.coeff * logit_margin_loss(forget.label_logits).sum(), "forget", "tokens")
        return {"forget": term}, {"logps/forget": forget.logps.detach().mean()}


class PDURetainObjective(UnlearningObjective):
    """``lambda * (NLL_bar(retain) - eps)`` with the current dual variable, which it owns: it records the retain NLL
    of each step and ascends ``lambda`` after steps (``dual_update_upon="step"``) or epochs (``"epoch"``: the NLL of
    the epoch's paired retain rows), once the warm-up epochs are done. ``lambda`` travels with checkpoints
    (:meth:`state_dict`)."""

    name = "retain"
    needs_retain = True
    logp_groups = ("retain",)

    def __init__(self, dual: DualVariable) -> None:
        self.dual = dual

    def describe(self) -> str:
        return "PDURetainObjective"

    def loss_terms(self, batch, ctx):
        out = ctx.logps["retain"]
        nll_sum, tokens = -out.logps.sum(), out.num_tokens.sum()
        if ctx.training:
            self.dual.record(nll_sum.detach(), tokens)
        eps = self.dual.eps or 0.0
        total = self.dual.value * (nll_sum - eps * tokens)
        metrics = {"logps/retain": out.logps.detach().mean(), "pdu/dual": self.dual.value}
        return {"retain": LossTerm(total, "retain", "tokens")}, metrics

    def after_step(self, ctx):
        nll_sum, tokens = ctx.reduce_sum(self.dual.nll_sum, self.dual.tokens)
        self.dual.nll_sum = self.dual.tokens = 0.0
        args = ctx.args
        if args.primal_dual and self.dual.can_update and args.dual_update_upon == "step" and tokens > 0:
            self.dual.ascend(nll_sum / tokens, args.dual_step_size)

    def after_epoch(self, ctx):
        args = ctx.args
        if not args.primal_dual or ctx.epoch + 1e-6 < args.dual_warmup_epochs:
            return
        self.dual.can_update = True
        if args.dual_update_upon == "epoch":
            self.dual.ascend(ctx.paired_retain_nll(max(0, round(ctx.epoch) - 1)), args.dual_step_size)
            ctx.log({"pdu/dual": self.dual.value})

    def state_dict(self):
        values = [
            self.dual.value,
            float(self.dual.can_update),
            float("nan") if self.dual.eps is None else self.dual.eps,
        ]
        return {"dual": torch.tensor(values, dtype=torch.float64)}

    def load_state_dict(self, state):
        value, can_update, eps = state["dual"].tolist()
        self.dual.value, self.dual.can_update = value, bool(can_update)
        self.dual.eps = None if math.isnan(eps) else eps

    def card_entries(self):
        if self.dual.eps is None:
            return {}
        # the constraint level used (measured when not given) and where the dual variable ended
        return {"retain_loss_eps": round(self.dual.eps, 6), "final_dual_variable": round(self.dual.value, 6)}


class PDUTrainer(UnlearnTrainer):
    """Unlearning as constrained optimisation: flatten the next-token distributions of the forget answers (logit
    margin to zero) subject to the retain NLL staying below ``eps``, solved by primal-dual descent."""

    config_class = PDUConfig
    _tag_names = ["trl", "hf_unlearn", "unlearning", "pdu"]
    _name = "PDU"
    _paper = PAPERS["pdu"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        retain = next((o for o in self.objectives if isinstance(o, PDURetainObjective)), None)
        if retain is None:
            return
        self.dual = retain.dual
        if self.args.retain_loss_eps is not None:
            self.dual.eps = float(self.args.retain_loss_eps)
        else:
            initial = self.retain_nll(range(min(256, len(self.retain_dataset))))
            self.dual.eps = self.args.retain_loss_eps_factor * initial
            logger.info(
                "PDU: retain NLL before training %.4g; constraint eps = %.4g x %.4g = %.4g.",
                initial,
                self.args.retain_loss_eps_factor,
                initial,
                self.dual.eps,
            )
        self.dual.can_update = self.args.dual_warmup_epochs == 0

    @classmethod
    def build_objectives(cls, args):
        return [PDUForgetObjective(args.forget_coeff, unshifted=args.pdu_unshifted_mask)]

    @classmethod
    def objectives_for(cls, args):
        own = cls.build_objectives(args) if args.forget_coeff > 0 else []
        if args.retain_coeff <= 0 and not args.primal_dual:
            return own
        return [*own, PDURetainObjective(DualVariable(args.retain_coeff, args.retain_loss_eps))]
