"""TrainerCallbacks: representation-level objectives installed as hooks (RMU, Adaptive RMU) and periodic evaluation."""

from .base import RepresentationCallback, StopForward, decoder_layers, stop_after
from .evaluation import EvalCallback
from .rmu import AdaptiveRMUCallback, RMUCallback

__all__ = [
    "AdaptiveRMUCallback",
    "EvalCallback",
    "RMUCallback",
    "RepresentationCallback",
    "StopForward",
    "decoder_layers",
    "stop_after",
]
