"""The paper behind the IDK objectives: TOFU (IdkSFT is its "idk" baseline; IdkDPO its preference variant)."""

from __future__ import annotations

from ..data.idk import refusal_columns
from ..objective import UnlearningObjective
from ..papers import PAPERS

__all__ = ["TOFU_PAPER", "RefusalObjective"]

TOFU_PAPER = PAPERS["tofu"]


class RefusalObjective(UnlearningObjective):
    """Base of the IDK objectives: adds the group ``forget_idk``, each forget question answered with a refusal from
    ``responses`` (default: the built-in pool) drawn once per row from ``seed``."""

    responses: list[str] | None = None
    seed: int = 42
    reasoning: str | None = None  # a reasoning-format refusal target (see hf_unlearn.data.reasoning.reasoning_rows)

    def prepare(self, ctx):
        return refusal_columns(
            ctx.rows,
            ctx.forget["index"],
            ctx.tokenizer,
            responses=self.responses,
            seed=self.seed,
            max_length=ctx.args.max_length,
            system_prompt=ctx.args.system_prompt,
            reasoning=self.reasoning,
        )
