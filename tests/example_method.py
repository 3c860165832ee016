"""A new unlearning method in one file: ME, maximum entropy on the forget answers ("A Closer Look at Machine
Unlearning for Large Language Models", Yuan et al., arXiv:2410.08109). the docs' "Adding a method" shows it; the tests
register it and train it through the recipe."""

import math
import textwrap
from dataclasses import dataclass, field

import torch

from hf_unlearn import LossTerm, UnlearningObjective
from hf_unlearn.trainers import UnlearnConfig, UnlearnTrainer


class MaxEntropyObjective(UnlearningObjective):
    """``coeff * KL(U || p)`` at every forget answer token: the next-token distribution pushed toward uniform."""

    name = "me"
    label_logits_groups = ("forget",)  # float32 logits at label positions only, never the (B, T, V) tensor

    def __init__(self, coeff: float) -> None:
        self.coeff = coeff

    @classmethod
    def from_config(cls, args) -> "MaxEntropyObjective":
        return cls(args.forget_coeff)

    def loss_terms(self, batch, ctx):
        logits = ctx.logps["forget"].label_logits  # (N, V), N = answer tokens of the micro-batch
        kl = -math.log(logits.shape[-1]) - torch.log_softmax(logits, -1).mean(-1)  # KL(uniform || p) per token
        return {"forget": LossTerm(self.coeff * kl.sum(), "forget", "tokens")}, {"me/kl": kl.mean().detach()}


@dataclass
class MaxEntropyConfig(UnlearnConfig):
    r"""Configuration of :class:`MaxEntropyTrainer`; the other parameters are those of
    :class:`~hf_unlearn.trainers.UnlearnConfig`.

    Parameters:
        > Parameters that control the objective

        retain_loss_type (`str`, *optional*, defaults to `"nll"`):
            The paper pairs ME with a retain term; `"none"` trains ME alone.
    """

    retain_loss_type: str = field(default="nll", metadata={"help": "Retain regulariser (the paper's GD term)."})


class MaxEntropyTrainer(UnlearnTrainer):
    """Flatten the next-token distributions of the forget answers toward uniform (untargeted unlearning)."""

    config_class = MaxEntropyConfig
    objective_class = MaxEntropyObjective
    _tag_names = ["trl", "hf_unlearn", "unlearning", "me"]
    _name = "ME"
    _paper = {
        "title": "A Closer Look at Machine Unlearning for Large Language Models",
        "id": "2410.08109",
        "citation": textwrap.dedent(
            """
            @article{yuan2024closer,
                title   = {{A Closer Look at Machine Unlearning for Large Language Models}},
                author  = {Xiaojian Yuan and Tianyu Pang and Chao Du and Kejiang Chen and Weiming Zhang and Min Lin},
                year    = 2024,
                journal = {arXiv preprint arXiv:2410.08109},
            }
            """
        ).strip(),
    }
