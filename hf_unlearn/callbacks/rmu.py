"""RMU (Li et al. 2024, the WMDP paper) and Adaptive RMU (Dang et al., AAAI 2025) as callbacks.

RMU steers the layer-L residual stream of forget tokens toward a fixed random direction scaled by ``c`` and keeps
retain activations at the frozen model's:

    L = forget_coeff * mean_tok mean_d (h_L(x_f) - c u)^2 + alpha * mean_tok mean_d (h_L(x_r) - h_L^frozen(x_r))^2

``u = U / ||U||``, ``U ~ Uniform[0, 1)^D`` drawn once from ``seed`` on the CPU as the reference code does (so it lies in
the positive orthant). Means run over real tokens by default (``token_mask="attention"``); ``"labels"`` restricts them
to answer tokens (the positions open-unlearning's TOFU form uses) and ``"all"`` is the WMDP code's form over every
padded position. ``reduction="tokens"`` (default) takes one mean over all selected tokens of the batch, so every token
weighs the same whatever its row's length; ``reduction="rows"`` takes each row's token mean and then the mean over rows,
as open-unlearning does (parity; the two differ when rows hold different numbers of tokens). Squares accumulate in
float32. The default trained parameters are the MLP down-projections of layers L-2..L.

Adaptive RMU replaces ``c`` by ``beta * ||h_L^frozen(x_f)||`` (mean norm over real forget tokens): ``per_batch`` (the
paper's description; default), ``dataset_mean`` (one constant from the whole forget set before training) or
``first_batch`` (the reference code: the first forget batch, parity).

Use with any hf_unlearn trainer (``NPOTrainer(..., callbacks=[RMUCallback(layer=7)])``); for RMU alone switch the
output-level loss off: ``GradDiffTrainer(model, GradDiffConfig(forget_coeff=0, retain_loss_type="none"), ...)`` - the
forward then stops right after layer L.
"""

from __future__ import annotations

from typing import Any

import torch

from ..data.tokenization import IGNORE_INDEX
from ..objective import LossTerm
from .base import RepresentationCallback

__all__ = ["AdaptiveRMUCallback", "RMUCallback"]

TOKEN_MASKS = ("attention", "labels", "all")
REDUCTIONS = ("tokens", "rows")


class RMUCallback(RepresentationCallback):
    """Representation Misdirection for Unlearning.

    Args:
        layer: decoder layer whose output is steered (WMDP default 7).
        steering_coeff: ``c``, the norm of the target ``c * u`` per token (6.5 in the published Zephyr-7B run). It
            must be retuned per model and layer: its scale is the typical activation norm at layer L, which differs
            by orders of magnitude between models (or use :class:`AdaptiveRMUCallback`, which follows that norm).
        alpha: weight of the retain term (1200 in the published run).
        forget_coeff: weight of the forget term.
        params: regexes of parameters to train under full fine-tuning; default the down-projections of L-2..L.
        seed: seed of the control vector.
        token_mask: ``"attention"`` (real tokens, default), ``"labels"`` (answer tokens) or ``"all"`` (parity).
            Use ``"labels"`` for chat-formatted QA: with ``"attention"`` the forget term also steers the chat
            template's prefix (system prompt, role tokens), which retain rows share and the retain term holds fixed.
        reduction: ``"tokens"`` (default: one mean over the batch's selected tokens) or ``"rows"`` (mean of per-row
            token means: open-unlearning's RMU, for parity).
    """

    def __init__(
        self,
        layer: int = 7,
        *,
        steering_coeff: float = 6.5,
        alpha: float = 1200.0,
        forget_coeff: float = 1.0,
        params: list[str] | None = None,
        seed: int = 42,
        token_mask: str = "attention",
        reduction: str = "tokens",
    ) -> None:
        super().__init__(layer, params)
        if token_mask not in TOKEN_MASKS:
            raise ValueError(f"token_mask must be one of {', '.join(TOKEN_MASKS)}, got {token_mask!r}.")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}.")
        self.reduction = reduction
        self.steering_coeff = float(steering_coeff)
        self.alpha = float(alpha)
        self.forget_coeff = float(forget_coeff)
        self.seed = int(seed)
        self.token_mask = token_mask
        self.control_vector: torch.Tensor | None = None

    def default_params(self, num_layers: int) -> list[str]:
        return [rf"(^|\.)layers\.{i}\.mlp\.down_proj\.weight$" for i in range(max(0, self.layer - 2), self.layer + 1)]

    def setup(self, model, args):
        super().setup(model, args)
        hidden = model.config.get_text_config().hidden_size
        g = torch.Generator().manual_seed(self.seed)
        u = torch.rand(hidden, generator=g, dtype=torch.float32)
        self.control_vector = u / u.norm()

    # ----------------------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"control_vector": self.control_vector.contiguous()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.control_vector = state["control_vector"].float()

    # ------------------------------------------------------------------------------------------ loss

    def _mask(self, inputs, group: str, width: int) -> tuple[torch.Tensor, str]:
        if self.token_mask == "attention":
            return inputs[f"{group}_attention_mask"][:, :width].bool(), "positions"
        if self.token_mask == "labels":
            return (inputs[f"{group}_labels"][:, :width] != IGNORE_INDEX), "tokens"
        return torch.ones_like(inputs[f"{group}_attention_mask"][:, :width], dtype=torch.bool), "padded"

    def _term(self, weight: float, mse: torch.Tensor, mask: torch.Tensor, group: str, what: str) -> LossTerm:
        """``weight`` times the masked per-token MSE, reduced over tokens (one mean) or rows (mean of row means)."""
        if self.reduction == "rows":
            per_row = mse.sum(-1) / mask.sum(-1).clamp(min=1)
            return LossTerm(weight * per_row.sum(), group, "rows")
        return LossTerm(weight * mse.sum(), group, what)

    def coefficient(self, ctx, frozen_forget: torch.Tensor | None, forget_mask) -> torch.Tensor:
        return torch.tensor(self.steering_coeff)

    @property
    def _needs_frozen_forget(self) -> bool:
        return False

    def loss_terms(self, batch, ctx):
        h_all = ctx.capture_of(self)["output"]
        f = ctx.slices["forget"]
        width_f = batch["forget_input_ids"].shape[1]
        h_f = h_all[f, :width_f].float()
        mask_f, what_f = self._mask(batch, "forget", width_f)
        frozen_all = None
        if "retain" in ctx.slices or self._needs_frozen_forget:
            frozen_all = self._frozen_rows(ctx, h_all)
        frozen_forget = None
        if self._needs_frozen_forget:
            frozen_forget = frozen_all["forget"][:, :width_f].float()
        coeff = self.coefficient(ctx, frozen_forget, mask_f).to(h_f)
        target = coeff * self.control_vector.to(h_f)
        mse_f = (h_f - target).pow(2).mean(-1) * mask_f
        terms = {"rmu_forget": self._term(self.forget_coeff, mse_f, mask_f, "forget", what_f)}
        metrics = {
            "rmu/forget_mse": mse_f.sum().detach() / mask_f.sum().clamp(min=1),
            "rmu/forget_norm": (h_f.detach().norm(dim=-1) * mask_f).sum() / mask_f.sum().clamp(min=1),
            "rmu/coeff": coeff.detach(),
        }
        if "retain" in ctx.slices:
            width_r = batch["retain_input_ids"].shape[1]
            h_r = h_all[ctx.slices["retain"], :width_r].float()
            mask_r, what_r = self._mask(batch, "retain", width_r)
            mse_r = (h_r - frozen_all["retain"][:, :width_r].float()).pow(2).mean(-1) * mask_r
            terms["rmu_retain"] = self._term(self.alpha, mse_r, mask_r, "retain", what_r)
            metrics["rmu/retain_mse"] = mse_r.sum().detach() / mask_r.sum().clamp(min=1)
        return terms, metrics

    def _frozen_rows(self, ctx, h_all) -> dict[str, torch.Tensor]:
        """Frozen layer-L activations of the forget and retain rows of the captured batch."""
        if not self._peft:
            frozen = self.frozen_activations(ctx)  # all rows of the captured forward
            return {g: frozen[s] for g, s in ctx.slices.items()}
        out = {}
        for group in ("forget", "retain"):
            if group in ctx.slices and (group == "retain" or self._needs_frozen_forget):
                out[group] = self.frozen_activations(
                    ctx, ctx.batch[f"{group}_input_ids"], ctx.batch[f"{group}_attention_mask"]
                )
        return out


class AdaptiveRMUCallback(RMUCallback):
    """Adaptive RMU: the steering coefficient follows the frozen model's forget-activation norm at layer L.

    Args:
        beta: scale of the norm (``scale`` in the reference code, 5.0).
        coeff_mode: ``"per_batch"`` (default: the frozen model's norm on each forget batch, as the paper describes),
            ``"dataset_mean"`` (one constant over the whole forget set, computed before the first update) or
            ``"first_batch"`` (parity with the reference code: the first forget batch's norm, then constant).
        Other arguments as in :class:`RMUCallback` (``steering_coeff`` defaults to 1, i.e. a unit direction).
    """

    COEFF_MODES = ("per_batch", "dataset_mean", "first_batch")

    def __init__(
        self,
        layer: int = 7,
        *,
        beta: float = 5.0,
        coeff_mode: str = "per_batch",
        steering_coeff: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(layer, steering_coeff=steering_coeff, **kwargs)
        if coeff_mode not in self.COEFF_MODES:
            raise ValueError(f"coeff_mode must be one of {', '.join(self.COEFF_MODES)}, got {coeff_mode!r}.")
        self.beta = float(beta)
        self.coeff_mode = coeff_mode
        self.constant: torch.Tensor | None = None

    @property
    def _needs_frozen_forget(self) -> bool:
        return self.coeff_mode == "per_batch"

    def state_dict(self):
        state = super().state_dict()
        if self.constant is not None:
            state["coefficient"] = self.constant.reshape(1).contiguous()
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.constant = state["coefficient"][0] if "coefficient" in state else None

    @staticmethod
    def _mean_norm(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (h.float().norm(dim=-1) * mask).sum() / mask.sum().clamp(min=1)

    @torch.no_grad()
    def _dataset_norm(self, ctx) -> torch.Tensor:
        """Mean frozen forget-activation norm over the whole forget set (the model is still the initial one)."""
        total, count = 0.0, 0
        for batch in ctx.forget_batches(16):
            ids, mask = batch["input_ids"], batch["attention_mask"]
            if self._peft:
                h = self.frozen_activations(ctx, ids, mask).float()
            else:  # called before the first update: the model is still the initial one
                h = self.layer_output(ctx.model, ids, mask).float()
            m = {
                "attention": mask.bool(),
                "all": torch.ones_like(mask, dtype=torch.bool),
                "labels": batch["labels"] != IGNORE_INDEX,
            }[self.token_mask]
            total += float((h.norm(dim=-1) * m).sum())
            count += int(m.sum())
        return torch.tensor(total / max(count, 1))

    def _term(self, weight: float, mse: torch.Tensor, mask: torch.Tensor, group: str, what: str) -> LossTerm:
        """``weight`` times the masked per-token MSE, reduced over tokens (one mean) or rows (mean of row means)."""
        if self.reduction == "rows":
            per_row = mse.sum(-1) / mask.sum(-1).clamp(min=1)
            return LossTerm(weight * per_row.sum(), group, "rows")
        return LossTerm(weight * mse.sum(), group, what)

    def coefficient(self, ctx, frozen_forget, forget_mask):
        if self.coeff_mode == "per_batch":
            norm = self._mean_norm(frozen_forget, forget_mask)
        else:
            if self.constant is None:
                if self.coeff_mode == "dataset_mean":
                    self.constant = self._dataset_norm(ctx)
                else:  # first batch of the (not yet updated) model, as the reference code does
                    h = ctx.capture_of(self)["output"][ctx.slices["forget"]][:, : forget_mask.shape[1]]
                    self.constant = self._mean_norm(h.detach(), forget_mask)
            norm = self.constant
        return self.beta * norm.to(forget_mask.device) * self.steering_coeff
