"""TrainerCallbacks: periodic evaluation (representation-level objectives join here later)."""

from .evaluation import EvalCallback

__all__ = ["EvalCallback"]
