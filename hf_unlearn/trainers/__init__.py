"""Output-level unlearning trainers: TRL trainer subclasses with a Config dataclass each (one file per method)."""

from .base import LossTerm, NonFiniteLossError, UnlearnConfigMixin, UnlearnTrainerMixin
from .grad_ascent import GradAscentConfig, GradAscentTrainer, GradDiffConfig, GradDiffTrainer
from .idk_dpo import IdkDPOConfig, IdkDPOTrainer
from .idk_sft import IdkSFTConfig, IdkSFTTrainer
from .npo import NPOConfig, NPOTrainer
from .simnpo import SimNPOConfig, SimNPOTrainer

__all__ = [
    "GradAscentConfig",
    "GradAscentTrainer",
    "GradDiffConfig",
    "GradDiffTrainer",
    "IdkDPOConfig",
    "IdkDPOTrainer",
    "IdkSFTConfig",
    "IdkSFTTrainer",
    "LossTerm",
    "NPOConfig",
    "NPOTrainer",
    "NonFiniteLossError",
    "SimNPOConfig",
    "SimNPOTrainer",
    "UnlearnConfigMixin",
    "UnlearnTrainerMixin",
]
