"""The few places where the transformers versions hf_unlearn supports (see ``pyproject.toml``) differ: transformers
5.24 renamed the KV cache of model inputs and outputs from ``past_key_values`` to ``cache``. ``make test-compat``
runs the fast tests at the oldest supported versions."""

from __future__ import annotations

import inspect
from functools import cache
from typing import Any

__all__ = ["cache_kwarg", "output_cache"]


@cache
def cache_kwarg() -> str:
    """The keyword a model's ``forward`` (and ``generate``) takes the KV cache by: ``cache`` or, before transformers
    5.24, ``past_key_values``."""
    from transformers import LlamaForCausalLM

    return "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"


def output_cache(out: Any) -> Any:
    """The KV cache of a model output, under either name."""
    found = getattr(out, "cache", None)
    return found if found is not None else getattr(out, "past_key_values", None)
