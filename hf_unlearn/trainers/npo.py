"""NPO: Negative Preference Optimization (Zhang, Lin, Bai, Mei 2024), with the RT (retain NLL) and KL variants."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..objective import LossTerm, UnlearningObjective
from ..papers import PAPERS
from .base import UnlearnConfig, UnlearnTrainer
from .losses import npo_loss, npo_weights

__all__ = ["NPOConfig", "NPOObjective", "NPOTrainer"]


@dataclass
class NPOConfig(UnlearnConfig):
    r"""Configuration for [`NPOTrainer`].

    The loss is `forget_coeff * L_NPO + retain_coeff * R` with
    `L_NPO = -(scale) * mean_b logsigmoid(beta * (S_theta(b) - S_ref(b)))`, `S` the summed NLL of the forget answer
    and `scale = 2 / beta` by default, as in the paper's code (arXiv 2404.05868). `retain_loss_type="nll"` (default)
    is NPO-RT, `"kl"` is NPO-KL, `"none"` is plain NPO. Defaults follow the TOFU recipe of the reference code.

    Parameters:
        > Parameters that control the objective

        beta (`float`, *optional*, defaults to `0.1`):
            Inverse temperature. As `beta -> 0` NPO tends to gradient ascent on per-sequence NLL.
        loss_scale (`float`, *optional*):
            Factor in front of the NPO term; `None` uses the reference value `2 / beta` (TRL's DPO uses 1).
        forget_coeff, retain_coeff, retain_loss_type, kl_all_positions:
            See [`~hf_unlearn.trainers.base.UnlearnConfigMixin`].

        > Parameters that control the reference

        precompute_ref_log_probs (`bool`, *optional*, defaults to `True`):
            Compute the reference log-probs of the forget answers once before training. With full fine-tuning this
            keeps no second model in memory; under PEFT the reference is the model with its adapter disabled either
            way. An explicit `ref_model` is always honoured.

        > Other parameters

        system_prompt, retain_per_forget, pairing_seed:
            See [`~hf_unlearn.trainers.base.UnlearnConfigMixin`]. All [`~trl.KTOConfig`] and
            [`~transformers.TrainingArguments`] parameters apply; KTO's `loss_type`, `desirable_weight` and
            `undesirable_weight` are not used.

    > [!NOTE]
    > Defaults that differ from TRL: `learning_rate=1e-5`, `weight_decay=0.01`, `num_train_epochs=10`,
    > `warmup_steps=0.1` (one epoch of ten), `train_sampling_strategy="random"`, activation checkpointing off,
    > `bf16` only where the GPU supports it (so configs work on CPU), `precompute_ref_log_probs=True`.
    """

    beta: float = field(default=0.1, metadata={"help": "Inverse temperature of the NPO term."})
    loss_scale: float | None = field(default=None, metadata={"help": "Scale of the NPO term; None = 2 / beta."})
    precompute_ref_log_probs: bool = field(
        default=True, metadata={"help": "Compute forget reference log-probs once before training."}
    )


class NPOObjective(UnlearningObjective):
    """``coeff * L_NPO`` on the forget rows: ``-(scale) * logsigmoid(beta * (S_theta - S_ref))`` per row, with ``S``
    the summed NLL of the answer (Zhang et al. 2024, arXiv 2404.05868)."""

    name = "npo"
    logp_groups = ("forget",)
    reference_groups = ("forget",)

    def __init__(self, beta: float = 0.1, loss_scale: float | None = None, coeff: float = 1.0) -> None:
        self.beta, self.loss_scale, self.coeff = beta, loss_scale, coeff

    def loss_terms(self, batch, ctx):
        forget = ctx.logps["forget"]
        ref = ctx.reference_logps("forget")
        per_row = npo_loss(forget.logps, ref, self.beta, self.loss_scale)
        terms = {"forget": LossTerm(self.coeff * per_row.sum(), "forget", "rows")}
        metrics = {
            "logps/forget": forget.logps.detach().mean(),
            "logps/forget_ref": ref.mean(),
            "npo/weight": npo_weights(forget.logps.detach(), ref, self.beta).mean(),
        }
        return terms, metrics


class NPOTrainer(UnlearnTrainer):
    """Unlearning with NPO: gradient ascent on the forget set, weighted by how much more likely the current model
    finds each forget answer than the reference, so forgotten samples stop pulling (bounded, slower collapse).

    Example:

    ```python
    from hf_unlearn import NPOConfig, NPOTrainer, build_fictitious_authors, load_model

    bench = build_fictitious_authors()
    model, tok = load_model("path/to/finetuned-target")
    trainer = NPOTrainer(
        model, args=NPOConfig(output_dir="npo"), forget_dataset=bench["forget"],
        retain_dataset=bench["retain"], processing_class=tok,
    )
    trainer.train()
    ```
    """

    config_class = NPOConfig
    _tag_names = ["trl", "hf_unlearn", "unlearning", "npo"]
    _name = "NPO"
    _paper = PAPERS["npo"]

    @classmethod
    def build_objectives(cls, args):
        return [NPOObjective(args.beta, args.loss_scale, args.forget_coeff)]
