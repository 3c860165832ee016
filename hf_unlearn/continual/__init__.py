"""Continual unlearning: O3 ("On Large Language Model Continual Unlearning", Gao et al., ICLR 2025, arXiv:2407.10223).

One LoRA adapter is unlearned request after request, each request's ``lora_A`` kept orthogonal to the earlier ones
(:class:`OrthogonalLoRAObjective`); one detector per request (:class:`RequestDetector`) scores how much a query
touches what that request removed, and :class:`O3Model` scales every row's LoRA delta by the largest weight.
"""

from .detector import RequestDetector, prompt_features
from .model import O3Model
from .orthogonal import OrthogonalLoRAObjective, lora_A_snapshot, orthogonal_penalty

__all__ = [
    "O3Model",
    "OrthogonalLoRAObjective",
    "RequestDetector",
    "lora_A_snapshot",
    "orthogonal_penalty",
    "prompt_features",
]
