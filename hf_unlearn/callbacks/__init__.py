"""TrainerCallbacks: representation-level objectives installed as hooks (RMU, Adaptive RMU, Attention Shifting)
periodic evaluation and calibrated stopping."""

from .attention_shifting import AttentionShiftingCallback
from .base import RepresentationCallback, StopForward, decoder_layers, stop_after
from .calibration import ForgetTargetCallback, nonmembers_needed
from .evaluation import EvalCallback
from .rmu import AdaptiveRMUCallback, RMUCallback

__all__ = [
    "AdaptiveRMUCallback",
    "AttentionShiftingCallback",
    "EvalCallback",
    "ForgetTargetCallback",
    "RMUCallback",
    "RepresentationCallback",
    "StopForward",
    "decoder_layers",
    "nonmembers_needed",
    "stop_after",
]
