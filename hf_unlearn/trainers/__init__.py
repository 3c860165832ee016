"""Output-level unlearning trainers: TRL trainer subclasses with a Config dataclass each (one file per method)."""

from ..objective import NonFiniteLossError
from .base import UnlearnConfig, UnlearnConfigMixin, UnlearnDPOConfig, UnlearnTrainer, UnlearnTrainerMixin
from .ceu import CEUConfig, CEUObjective, CEUTrainer
from .grad_ascent import AscentObjective, GradAscentConfig, GradAscentTrainer, GradDiffConfig, GradDiffTrainer
from .idk_dpo import IdkDPOConfig, IdkDPOObjective, IdkDPOTrainer
from .idk_sft import IdkSFTConfig, IdkSFTObjective, IdkSFTTrainer
from .npo import NPOConfig, NPOObjective, NPOTrainer
from .o3 import O3Config, O3Trainer
from .pdu import DualVariable, PDUConfig, PDUForgetObjective, PDURetainObjective, PDUTrainer
from .reasoned_idk import ReasonedIDKConfig, ReasonedIDKDPOObjective, ReasonedIDKNLLObjective, ReasonedIDKTrainer
from .retain import RetainKL, RetainNLL
from .satimp import SatImpConfig, SatImpObjective, SatImpTrainer
from .simnpo import SimNPOConfig, SimNPOObjective, SimNPOTrainer
from .undial import UNDIALConfig, UNDIALObjective, UNDIALTrainer
from .wga import WGAConfig, WGAObjective, WGATrainer

__all__ = [
    "AscentObjective",
    "CEUConfig",
    "CEUObjective",
    "CEUTrainer",
    "DualVariable",
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
    "O3Config",
    "O3Trainer",
    "PDUConfig",
    "PDUForgetObjective",
    "PDURetainObjective",
    "PDUTrainer",
    "ReasonedIDKConfig",
    "ReasonedIDKDPOObjective",
    "ReasonedIDKNLLObjective",
    "ReasonedIDKTrainer",
    "RetainKL",
    "RetainNLL",
    "SatImpConfig",
    "SatImpObjective",
    "SatImpTrainer",
    "SimNPOConfig",
    "SimNPOObjective",
    "SimNPOTrainer",
    "UNDIALConfig",
    "UNDIALObjective",
    "UNDIALTrainer",
    "UnlearnConfig",
    "UnlearnConfigMixin",
    "UnlearnDPOConfig",
    "UnlearnTrainer",
    "UnlearnTrainerMixin",
    "WGAConfig",
    "WGAObjective",
    "WGATrainer",
]
