"""Shared machinery of representation-level objectives: hooks on decoder layers, early exit, frozen activations.

A :class:`RepresentationCallback` is a ``TrainerCallback`` and an :class:`~hf_unlearn.objective.UnlearningObjective`: it
installs forward hooks, and an hf_unlearn trainer adds its loss terms in ``compute_loss`` (a callback alone cannot
change the loss). Activations come from the forward the trainer runs anyway when an output-level loss is active (NPO +
RMU costs one forward). When the output-level loss is switched off (``forget_coeff=0`` and ``retain_loss_type="none"``),
the trainer runs a forward that *stops right after the deepest hooked layer* (an exception raised by a hook), so no
later layer, LM head or logits run.

Frozen-model activations never come from a second model:

* under PEFT, the same model runs with its adapter disabled (TRL's reference rule), truncated after layer L;
* under full fine-tuning, the input of the first trainable layer is captured in the policy forward (everything
  below it is frozen, hence identical), and only the layers from there to L are re-run with frozen copies of the
  trainable tensors, taken when the trainer is built (``torch.func.functional_call``).

Hooks only record while the trainer's forward is running, so the backward recompute of activation checkpointing
(which calls submodules again) never overwrites what was captured.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from typing import Any

import torch
from transformers import TrainerCallback

from ..layers import StopForward, decoder_layers, hidden_of, stop_after
from ..objective import UnlearningObjective

__all__ = ["RepresentationCallback", "StopForward", "decoder_layers", "stop_after"]


class RepresentationCallback(TrainerCallback, UnlearningObjective):
    """Base class: hooks decoder layer ``layer``, captures its output (and the input of the first trainable layer),
    and provides frozen activations. Subclasses implement :meth:`~hf_unlearn.objective.UnlearningObjective.loss_terms`.

    Args:
        layer: decoder layer whose output is steered (0-based).
        params: regexes of parameter names to train under full fine-tuning; ``None`` = the subclass default. All other
            parameters get ``requires_grad=False``. Under PEFT the adapter decides what trains.

    Objective declarations: retain rows are needed (``needs_retain``), forget and retain rows run through the step's
    forward (``activation_groups``), and ``layer`` is hooked (``hooked_layers``), so a step without output-level
    terms stops after it.
    """

    needs_retain = True
    activation_groups = ("forget", "retain")

    def __init__(self, layer: int, params: Sequence[str] | None = None) -> None:
        self.layer = int(layer)
        self.param_patterns = list(params) if params is not None else None
        self._handles: list = []
        self._capturing = False
        self._captured: dict[str, Any] = {}
        self._frozen: dict[int, dict[str, torch.Tensor]] = {}
        self._first_trainable: int | None = None
        self._peft = False

    # ------------------------------------------------------------------------------------------- set-up

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def hooked_layers(self) -> tuple[int, ...]:
        return (self.layer,)

    def describe(self) -> str:
        return f"{type(self).__name__}(layer={self.layer})"

    def default_params(self, num_layers: int) -> list[str]:
        return []

    def setup(self, model: Any, args: Any) -> None:
        """Check the layer, freeze what is not trained (full fine-tuning) and keep frozen copies of what is."""
        layers = decoder_layers(model)
        if not 0 <= self.layer < len(layers):
            raise ValueError(
                f"{type(self).__name__}: layer {self.layer} is out of range; this model has decoder layers "
                f"0..{len(layers) - 1}."
            )
        self._peft = hasattr(model, "peft_config")
        if self._peft:
            return
        patterns = self.param_patterns or self.default_params(len(layers))
        matched = []
        for name, p in model.named_parameters():
            p.requires_grad_(any(re.search(pat, name) for pat in patterns))
            if p.requires_grad:
                matched.append(name)
        if not matched:
            raise ValueError(
                f"{type(self).__name__}: the parameter pattern(s) {patterns} match no parameter of this model; "
                "names look like 'model.layers.7.mlp.down_proj.weight'."
            )
        # Frozen copies of the trainable tensors of layers first..L (everything below is frozen, so it is shared).
        index = {id(p): i for i, layer in enumerate(layers) for p in layer.parameters()}
        trainable_layers = {index.get(id(p)) for _, p in model.named_parameters() if p.requires_grad}
        if None in trainable_layers or max(trainable_layers) > self.layer:
            raise ValueError(
                f"{type(self).__name__}: under full fine-tuning the trained parameters must lie in decoder layers "
                f"<= {self.layer} (got {matched[:4]}...), so that frozen activations can be recomputed from frozen "
                "copies of those layers only; train a LoRA adapter instead to optimise other parameters."
            )
        self._first_trainable = min(trainable_layers)
        self._frozen = {
            i: {n: p.detach().clone() for n, p in layers[i].named_parameters() if p.requires_grad}
            for i in range(self._first_trainable, self.layer + 1)
        }

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._install(model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._remove()

    def _install(self, model: Any) -> None:
        self._remove()
        layers = decoder_layers(model)

        def capture_output(module, args, output):
            if self._capturing:
                self._captured["output"] = hidden_of(output)

        self._handles.append(layers[self.layer].register_forward_hook(capture_output))
        if self._first_trainable is not None:

            def capture_input(module, args, kwargs):
                if self._capturing:
                    self._captured["first_input"] = (args, kwargs)

            self._handles.append(
                layers[self._first_trainable].register_forward_pre_hook(capture_input, with_kwargs=True)
            )

    def _remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    @contextlib.contextmanager
    def capturing(self, model: Any):
        """Record activations during the forward(s) inside this context; the dict it yields (``"output"``: layer
        L's output, ``"first_input"``: the first trainable layer's input) reaches the loss as
        ``ctx.capture_of(self)``."""
        if not self._handles:
            self._install(model)
        self._captured = {}
        self._capturing = True
        try:
            yield self._captured
        finally:
            self._capturing = False

    # ------------------------------------------------------------------------------------------ frozen

    @torch.no_grad()
    def layer_output(self, model: Any, input_ids, attention_mask) -> torch.Tensor:
        """Output of decoder layer ``layer`` of ``model`` for these rows, from a forward stopped right after it."""
        out: dict[str, torch.Tensor] = {}

        def grab(module, args, output):
            out["h"] = hidden_of(output)
            raise StopForward

        handle = decoder_layers(model)[self.layer].register_forward_hook(grab)
        try:
            model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        except StopForward:
            pass
        finally:
            handle.remove()
        return out["h"]

    @torch.no_grad()
    def frozen_activations(self, ctx: Any, input_ids=None, attention_mask=None) -> torch.Tensor:
        """Layer-L output of the frozen (initial) model, without a second model: under PEFT one truncated forward of
        ``input_ids`` through ``ctx.reference()`` (the adapter disabled); under full fine-tuning the rows of the
        captured forward, re-run from the first trainable layer with frozen copies of the trained tensors."""
        if self._peft:
            with ctx.reference() as ref:
                return self.layer_output(ref, input_ids, attention_mask)
        args, kwargs = ctx.capture_of(self)["first_input"]
        layers = decoder_layers(ctx.model)
        hidden = args[0] if args else kwargs["hidden_states"]
        kwargs = {k: v for k, v in kwargs.items() if k != "hidden_states"}
        for i in range(self._first_trainable, self.layer + 1):
            hidden = hidden_of(
                torch.func.functional_call(layers[i], self._frozen[i], (hidden.detach(),), kwargs, strict=False)
            )
        return hidden
