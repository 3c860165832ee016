"""Output-level unlearning trainers: TRL trainer subclasses with a Config dataclass each (one file per method)."""

from .base import NonFiniteLossError, UnlearnConfigMixin, UnlearnTrainerMixin
from .grad_ascent import AscentObjective, GradAscentConfig, GradAscentTrainer, GradDiffConfig, GradDiffTrainer
from .idk_dpo import IdkDPOConfig, IdkDPOObjective, IdkDPOTrainer
from .idk_sft import IdkSFTConfig, IdkSFTObjective, IdkSFTTrainer
from .npo import NPOConfig, NPOObjective, NPOTrainer
from .retain import RetainKL, RetainNLL
from .simnpo import SimNPOConfig, SimNPOObjective, SimNPOTrainer

__all__ = [
    "AscentObjective",
    "GradAscentConfig",
    "GradAscentTrainer",
    "GradDiffConfig",
    "GradDiffTrainer",
    "IdkDPOConfig",
    "IdkDPOObjective",
    "IdkDPOTrainer",
    "IdkSFTConfig",
    "IdkSFTObjective",
    "IdkSFTTrainer",
    "NPOConfig",
    "NPOObjective",
    "NPOTrainer",
    "NonFiniteLossError",
    "RetainKL",
    "RetainNLL",
    "SimNPOConfig",
    "SimNPOObjective",
    "SimNPOTrainer",
    "UnlearnConfigMixin",
    "UnlearnTrainerMixin",
]
