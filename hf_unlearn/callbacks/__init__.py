"""TrainerCallbacks: representation-level objectives installed as hooks (RMU, Adaptive RMU, Attention Shifting)
and periodic evaluation."""

from .attention_shifting import AttentionShiftingCallback
from .base import RepresentationCallback, StopForward, decoder_layers, stop_after
from .evaluation import EvalCallback
from .rmu import AdaptiveRMUCallback, RMUCallback

__all__ = [
    "AdaptiveRMUCallback",
    "AttentionShiftingCallback",
    "EvalCallback",
    "RMUCallback",
    "RepresentationCallback",
    "StopForward",
    "decoder_layers",
    "stop_after",
]
