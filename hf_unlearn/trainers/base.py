"""Machinery shared by every output-level unlearning trainer.

Each method is a TRL trainer subclass (``KTOTrainer`` for the NPO family, ``DPOTrainer`` for IdkDPO) with
:class:`UnlearnTrainerMixin` in front of it. The mixin keeps TRL's model loading, PEFT/QLoRA wrapping, reference-model
handling and metrics, and runs a list of :class:`~hf_unlearn.objective.UnlearningObjective`: the method's own
objective(s) from :meth:`UnlearnTrainerMixin.build_objectives`, the retain term, and every objective passed as a
callback (RMU, Attention Shifting) or with ``objectives=``.

* **data**: ``forget_dataset``/``retain_dataset`` in any data-layer schema are tokenised with the chat template into
  :class:`datasets.Dataset` tables; objectives add their own columns (:meth:`~UnlearningObjective.prepare`), reference
  log-probs are added as columns, and :class:`~hf_unlearn.data.ForgetRetainDataset` pairs the two tables (one epoch =
  one pass over the forget set, a fixed forget:retain mix per batch);
* **reference log-probs**: computed once before training when ``precompute_ref_log_probs=True`` (the default for full
  fine-tuning: no second model in memory), else live from ``ref_model`` or, under PEFT, from the model with its
  adapter disabled - TRL's own rule. Reference-free objectives never load a reference;
* **the loss**: the public ``compute_loss``; TRL's private ``_compute_loss`` is not used. Label log-probs go through
  ``model.forward`` (DDP-safe) on a path that gathers label positions before the LM head on every device.

**Exact gradient accumulation.** Every loss term is a sum over rows (or tokens) divided by the number of rows (or
tokens) in the *whole* accumulation window, counted in ``get_batch_samples`` and summed across processes. Accumulating
2 micro-batches of 4 therefore gives the same gradient as one batch of 8, also for token-mean terms whose micro-batches
hold different numbers of tokens; ``loss_is_scaled_for_ga`` is ``True`` because the Trainer must not divide again.

**Safety.** A non-finite loss term stops training before its backward pass with :class:`NonFiniteLossError`, naming
the step and the term; rows without label tokens are dropped at tokenisation and never reach a loss.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from accelerate.utils import is_peft_model
from trl import KTOTrainer

from ..data.collators import DataCollatorForUnlearning
from ..data.loading import as_rows as _as_rows
from ..data.pairing import ForgetRetainDataset
from ..models import resolve_model_path
from ..objective import (
    LossTerm,
    NonFiniteLossError,
    Reference,
    SequenceLogps,
    StepContext,
    TrainerBoundCallback,
    UnlearningObjective,
    check_objectives,
    declared_fields,
    forward_plan,
)
from .accumulation import AccumulationMixin, WindowCounts
from .card import CardMixin
from .config import RETAIN_LOSS_TYPES, KTOLossTypeGuard, UnlearnConfig, UnlearnConfigMixin, UnlearnDPOConfig
from .forward import ForwardMixin
from .guards import FiniteGradients, raise_if_not_finite
from .inputs import InputsMixin, PairingEpoch
from .publishing import PublishingMixin
from .reference import ReferenceMixin
from .retain import retain_objectives
from .seams import SeamsMixin
from .state import ObjectiveEvents, load_state, state_owners

__all__ = [
    "RETAIN_LOSS_TYPES",
    "KTOLossTypeGuard",
    "LossTerm",
    "NonFiniteLossError",
    "SequenceLogps",
    "UnlearnConfig",
    "UnlearnConfigMixin",
    "UnlearnDPOConfig",
    "UnlearnTrainer",
    "UnlearnTrainerMixin",
    "WindowCounts",
    "declared_fields",
]

logger = logging.getLogger(__name__)


class UnlearnTrainerMixin(
    SeamsMixin, CardMixin, PublishingMixin, ReferenceMixin, ForwardMixin, AccumulationMixin, InputsMixin
):
    """Turns a TRL trainer into an unlearning trainer; see the module docstring.

    Subclasses set ``config_class`` and implement :meth:`build_objectives` (the method's objective(s) for a config);
    the retain term and the objectives given as callbacks or ``objectives=`` are added by the mixin.

    Args:
        model: a model, a Hub id or a local folder (``"bundled"`` for the bundled model).
        args: the method's config; default: its defaults with ``output_dir`` named after the model and method.
        forget_dataset: rows to unlearn, in any data-layer schema (a ``datasets.Dataset`` or a list of dicts).
        retain_dataset: rows to keep; required exactly when an objective reads retain rows.
        processing_class: the tokenizer; default: loaded from the model's folder or Hub id.
        ref_model: an explicit frozen reference (otherwise TRL's rule: precomputed, or the adapter disabled).
        peft_config: a PEFT config to train an adapter (LoRA/QLoRA).
        callbacks: ``TrainerCallback`` s; representation objectives (RMU, Attention Shifting) take part in the loss.
        objectives: further :class:`~hf_unlearn.objective.UnlearningObjective` s to add to the method's own.
    """

    config_class: ClassVar[type]
    objective_class: ClassVar[type[UnlearningObjective] | None] = None  # built with from_config(args) by default
    loss_is_scaled_for_ga = True  # every term is normalised by whole-window counts (see module docstring)

    def __init__(
        self,
        model: Any,
        args: Any = None,
        *,
        forget_dataset: Any,
        retain_dataset: Any = None,
        processing_class: Any = None,
        ref_model: Any = None,
        peft_config: Any = None,
        callbacks: list | None = None,
        optimizers: tuple = (None, None),
        quantization_config: Any = None,
        objectives: Sequence[UnlearningObjective] | None = None,
    ) -> None:
        if isinstance(model, str):  # TRL loads it; map the bundled model's aliases to its cached folder first
            model = resolve_model_path(model)
        if args is None:
            name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "") or "model"
            args = self.config_class(output_dir=f"{str(name).rstrip('/').split('/')[-1]}-{self._name}")
        if not isinstance(args, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(args).__name__}.")
        forget_rows = _as_rows(forget_dataset)
        if not forget_rows:
            raise ValueError("forget_dataset is empty: there is nothing to unlearn.")
        callbacks = list(callbacks or [])
        extra = [*(objectives or []), *(cb for cb in callbacks if isinstance(cb, UnlearningObjective))]
        self.objectives: list[UnlearningObjective] = [*self.objectives_for(args), *extra]
        peft_model = peft_config is not None or (not isinstance(model, str) and is_peft_model(model))
        path = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "")
        req = check_objectives(
            self.objectives,
            has_retain=retain_dataset is not None,
            has_ref_model=ref_model is not None,
            peft=peft_model,
            precompute=args.precompute_ref_log_probs,
            owner=type(self).__name__,
        )
        if not req.reference and not args.precompute_ref_log_probs:
            # A reference-free objective: claiming "precomputed" keeps TRL from loading a reference copy of the model.
            args = dataclasses.replace(args, precompute_ref_log_probs=True)
        live_reference_model = req.reference and ref_model is None and not peft_model
        if live_reference_model and not args.precompute_ref_log_probs and not path:
            raise ValueError(
                "This model was built in memory (no _name_or_path), so TRL cannot load a reference copy of it: "
                "pass ref_model=, use peft_config=, or (where the objective allows) precompute_ref_log_probs=True."
            )
        self.requirements = req
        self.forward_plan = forward_plan(self.objectives)
        self.extra_objectives = extra
        if processing_class is None:
            from transformers import AutoTokenizer

            if not path:
                raise ValueError(
                    "This model was built in memory, so its tokenizer cannot be found: pass processing_class=."
                )
            processing_class = AutoTokenizer.from_pretrained(path)
        tokenizer = self._tokenizer_of(processing_class)
        forget_rows, retain_rows, forget, retain = self._input_tables(forget_rows, retain_dataset, tokenizer, args, req)
        # What spawn() needs to build another trainer of this class on the same data (a settings search's trials).
        self._init_inputs = {
            "forget_rows": forget_rows,
            "retain_rows": retain_rows,
            "processing_class": processing_class,
            "callbacks": list(callbacks),
            "objectives": list(objectives or []),
            "optimizers": optimizers,
        }
        if not isinstance(model, str) and is_peft_model(model) and ref_model is None and "ref" in model.peft_config:
            # A frozen "ref" copy left by an earlier trainer on this model (e.g. the previous continual-unlearning
            # request) is stale, and TRL refuses to add it again: drop it, TRL copies the current adapter anew.
            model.delete_adapter("ref")
            model.set_adapter("default")
        super().__init__(
            model=model,
            ref_model=ref_model,
            args=args,
            train_dataset=forget,  # the tokenised forget table; paired with retain rows once objectives added columns
            processing_class=processing_class,
            callbacks=callbacks,
            optimizers=optimizers,
            quantization_config=quantization_config,
            peft_config=peft_config,
        )
        multiple = self.args.pad_to_multiple_of  # TRL resolves "auto" (128 on Neuron, else None)
        self.data_collator = DataCollatorForUnlearning(
            pad_token_id=self._tokenizer.pad_token_id,
            pad_to_multiple_of=multiple if isinstance(multiple, int) else None,
        )
        self.model.add_model_tags(["hf_unlearn", "unlearning"])
        for cb in self.callback_handler.callbacks:
            if isinstance(cb, TrainerBoundCallback):
                cb.bind_trainer(self)
        for objective in self.objectives:
            objective.setup(self.model, self.args)
        self.forget_dataset = self._prepare_forget(forget_rows, forget)
        self.retain_dataset = retain
        seed = self.args.seed if self.args.pairing_seed is None else self.args.pairing_seed
        self.train_dataset = ForgetRetainDataset(
            self.forget_dataset, retain, retain_per_forget=self.args.retain_per_forget, seed=seed
        )
        self.add_callback(PairingEpoch(self))
        self.add_callback(FiniteGradients())
        self.add_callback(ObjectiveEvents(self))
        self.resumed_from: str | None = None

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any):
        """``Trainer.train``; on resume, every objective's and callback's state is restored from the checkpoint's
        ``hf_unlearn_state.safetensors`` before the first step (see :mod:`hf_unlearn.trainers.state`)."""
        resumed = resume_from_checkpoint
        if resume_from_checkpoint is True:  # transformers' own lookup (and its error when there is none)
            from transformers.trainer_utils import get_last_checkpoint

            resumed = get_last_checkpoint(self.args.output_dir)
        self.resumed_from = resumed or None
        if self.resumed_from:  # before any callback's on_train_begin sees the objectives
            load_state(self.resumed_from, state_owners(self.objectives, self.callback_handler.callbacks))
        return super().train(resume_from_checkpoint, *args, **kwargs)

    # ------------------------------------------------------------------------------------------- objectives

    @classmethod
    def build_objectives(cls, args: Any) -> list[UnlearningObjective]:
        """The method's own objective(s) for ``args`` (without the retain term, which the mixin adds): by default
        ``objective_class.from_config(args)``."""
        if cls.objective_class is None:
            raise NotImplementedError(f"{cls.__name__} sets no objective_class and does not build its objectives.")
        return [cls.objective_class.from_config(args)]

    @classmethod
    def objectives_for(cls, args: Any) -> list[UnlearningObjective]:
        """The method's objectives and its retain term; a method objective with ``forget_coeff=0`` is left out."""
        own = cls.build_objectives(args) if args.forget_coeff > 0 else []
        return [*own, *retain_objectives(args)]

    # ------------------------------------------------------------------------------------------------ loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        local = self._count_window([inputs], inputs[next(iter(inputs))].device, across_ranks=False)
        window = num_items_in_batch if isinstance(num_items_in_batch, WindowCounts) else local
        req = self.requirements
        plan = self.forward_plan
        groups = [g for g in plan.groups if f"{g}_input_ids" in inputs]
        captured: dict[int, Any] = {}
        logps: dict[str, SequenceLogps] = {}
        with contextlib.ExitStack() as stack:
            for objective in self.objectives:
                captured[id(objective)] = stack.enter_context(objective.capturing(model))
            if plan.kind == "labels":
                logps = self.sequence_logps(
                    model, inputs, groups, logits_for=req.logits_groups, label_logits_for=req.label_logits_groups
                )
            elif plan.kind == "truncated":
                self._truncated_forward(model, inputs, groups, plan.stop_after)
        slices, start = {}, 0
        for g in groups:
            n = inputs[f"{g}_input_ids"].shape[0]
            slices[g], start = slice(start, start + n), start + n
        ctx = StepContext(
            model=model,
            batch=inputs,
            args=self.args,
            step=self.state.global_step + 1,
            training=model.training,
            slices=slices,
            logps=logps,
            reference=Reference(self, model, inputs),
            captured=captured,
            _sequence_logps=lambda gs: self.sequence_logps(model, inputs, list(gs)),
            _forget_batches=lambda size: self._table_batches(self.forget_dataset, size),
            _stop=self._stop_training,
        )
        terms: dict[str, LossTerm] = {}
        metrics: dict[str, Any] = {}
        for objective in self.objectives:
            obj_terms, obj_metrics = objective.loss_terms(inputs, ctx)
            clash = set(obj_terms) & set(terms)
            if clash:
                raise ValueError(f"{objective.describe()} returns loss terms {sorted(clash)} that another returns.")
            terms.update(obj_terms)
            metrics.update(obj_metrics)
        per_batch = {name: t.total / local.get_count(t.group, t.what) for name, t in terms.items()}
        values = torch.stack([v.detach().float() for v in per_batch.values()])
        raise_if_not_finite(list(per_batch), values, self.state.global_step + 1)
        # Window-normalised terms: summing them over the accumulation window gives the full-batch loss exactly.
        loss = sum(t.total / window.get_count(t.group, t.what) for t in terms.values()) * window.processes
        mode = "train" if model.training else "eval"
        for name, value in zip(per_batch, values.tolist(), strict=True):
            self._metrics[mode][f"loss/{name}"].append(value)
        for name, value in metrics.items():
            self._metrics[mode][name].append(float(value.detach()) if torch.is_tensor(value) else float(value))
        return (loss, None) if return_outputs else loss


class UnlearnTrainer(UnlearnTrainerMixin, KTOTrainer):
    """The trainer most methods subclass (TRL's ``KTOTrainer`` underneath): set ``config_class``,
    ``objective_class`` (or override :meth:`build_objectives`), ``_tag_names``, ``_name`` and ``_paper``."""

    config_class = UnlearnConfig
