"""The frozen reference policy, TRL's rule: an explicit ``ref_model``, else (under PEFT) the model with its adapter
disabled, else precomputed log-probs; never a silent copy of the policy. Objectives reach it through
:class:`~hf_unlearn.objective.Reference`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch
from accelerate.utils import is_peft_model
from tqdm.auto import tqdm
from trl.trainer.utils import use_adapter

from ..data.tokenization import IGNORE_INDEX
from .forward import _label_token_logps

__all__ = ["ReferenceMixin"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _checkpointing_off(model: Any, kwargs: dict | None):
    """Reference forwards need no activation checkpointing (TRL's helper does the same with deprecated names).
    transformers < 5.24 names it "gradient checkpointing"; both spellings are handled."""
    new_names = hasattr(model, "activation_checkpointing_disable")
    on = bool(getattr(model, "is_activation_checkpointing" if new_names else "is_gradient_checkpointing", False))
    if on:
        model.activation_checkpointing_disable() if new_names else model.gradient_checkpointing_disable()
    try:
        yield
    finally:
        if on:
            if new_names:
                model.activation_checkpointing_enable(kwargs)
            else:
                model.gradient_checkpointing_enable(kwargs)


def _checkpointing_kwargs(args: Any) -> dict | None:
    return getattr(args, "activation_checkpointing_kwargs", None) or getattr(
        args, "gradient_checkpointing_kwargs", None
    )


class ReferenceMixin:
    """Reference log-probs, logits and label logits (no gradient), and their one-off precomputation."""

    def _reference_context(self):
        """TRL's reference rule: the explicit ref_model, else (under PEFT) the model with its adapter disabled or
        the frozen ``ref`` adapter copy TRL makes for a pre-trained adapter."""
        if self.ref_model is None and is_peft_model(self.model):
            unwrapped = self.accelerator.unwrap_model(self.model)
            return use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None)
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def reference_model(self, model: Any) -> Iterator[Any]:
        """The frozen reference to call (no activation checkpointing): ``ref_model``, else ``model`` with its
        adapter disabled under PEFT, else ``model`` itself."""
        ref = self.ref_model if self.ref_model is not None else model
        with _checkpointing_off(self.model, _checkpointing_kwargs(self.args)), self._reference_context():
            yield ref

    @torch.no_grad()
    def reference_logps(self, model: Any, input_ids, attention_mask, labels) -> torch.Tensor:
        """Per-row summed reference log-probs of ``labels`` (no gradient)."""
        with self.reference_model(model) as ref, self.accelerator.autocast():
            compact = self._compact_path(reference=True)
            return _label_token_logps(ref, compact, input_ids, attention_mask, labels).sum(-1)

    @torch.no_grad()
    def reference_logits(self, model: Any, input_ids, attention_mask) -> torch.Tensor:
        with self.reference_model(model) as ref, self.accelerator.autocast():
            return ref(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    @torch.no_grad()
    def reference_label_logits(self, model: Any, input_ids, attention_mask, labels) -> torch.Tensor:
        """Float32 reference logits ``(N, V)`` at the label positions of ``labels`` (no gradient)."""
        if not self._compact_path(reference=True):  # full logits, then the label positions
            logits = self.reference_logits(model, input_ids, attention_mask)
            return logits[:, :-1][labels[:, 1:] != IGNORE_INDEX].float()
        with self.reference_model(model) as ref, self.accelerator.autocast():
            out = ref(
                input_ids=input_ids,
                attention_mask=attention_mask,
                labels=labels,
                label_logprobs=True,
                label_logits=True,
            )
            return out.logits

    def _precompute_reference(self, forget: Any) -> Any:
        """Reference log-probs of every precomputable group, once before training, as columns ``<name>ref_logps``.

        Runs with the model as it is at initialisation (the adapter disabled under PEFT) or ``ref_model``; the
        training loop then needs no reference forward at all. Retain rows are drawn anew each epoch, so only
        forget-derived groups are precomputed.
        """
        groups = [g for g in self.requirements.reference_groups if g == "forget" or g.startswith("forget_")]
        if not groups:
            return forget
        model = self.model
        was_training = model.training
        model.eval()
        size = self.args.precompute_ref_batch_size or self.args.per_device_train_batch_size
        quiet = self.args.disable_tqdm or not self.is_local_process_zero()
        bar = tqdm(total=len(forget) * len(groups), desc="Reference log-probs (once, before training)", disable=quiet)
        try:
            for group in groups:
                prefix = "" if group == "forget" else f"{group.removeprefix('forget_')}_"
                values: list[float] = []
                for batch in self._table_batches(forget, size, prefix):
                    logps = self.reference_logps(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
                    values.extend(logps.tolist())
                    bar.update(len(logps))
                forget = forget.add_column(f"{prefix}ref_logps", values)
        finally:
            bar.close()
            model.train(was_training)
        logger.info("Precomputed reference log-probs of %s for %d forget rows.", ", ".join(groups), len(forget))
        return forget
