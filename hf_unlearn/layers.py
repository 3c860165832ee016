"""Decoder-layer access for hooks: find the layers through DDP/PEFT wrappers, and stop a forward after one of them.

Shared by the trainers (the truncated forward of hook-only objectives) and the representation callbacks.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

__all__ = ["StopForward", "decoder_layers", "hidden_of", "stop_after", "unwrap_model"]


class StopForward(Exception):
    """Raised by a hook to end a forward pass early (caught by :func:`stop_after`)."""


def unwrap_model(model: Any) -> Any:
    """The underlying transformers model under DDP/DeepSpeed wrappers and a PEFT model."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


def decoder_layers(model: Any) -> torch.nn.ModuleList:
    """The decoder layers of a causal LM, through DDP and PEFT wrappers (``model.model.layers`` for Llama)."""
    base = unwrap_model(model)
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else getattr(base, "model", base)
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise TypeError(f"Cannot find decoder layers in {type(base).__name__}; expected a decoder with `.layers`.")
    return layers


def hidden_of(output: Any) -> torch.Tensor:
    """The hidden states of a decoder layer's output (transformers 5 returns a tensor, 4.x a tuple)."""
    return output[0] if isinstance(output, tuple) else output


@contextlib.contextmanager
def stop_after(model: Any, layer: int):
    """Run ``model`` forwards that end right after decoder layer ``layer`` (outputs are read through other hooks)."""

    def hook(module, args, output):
        raise StopForward

    handle = decoder_layers(model)[layer].register_forward_hook(hook)
    try:
        yield
    except StopForward:
        pass
    finally:
        handle.remove()
