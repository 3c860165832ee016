"""Machinery shared by every output-level unlearning trainer.

Each method is a TRL trainer subclass (``KTOTrainer`` for the NPO family, ``DPOTrainer`` for IdkDPO) with
:class:`UnlearnTrainerMixin` in front of it. The mixin keeps TRL's model loading, PEFT/QLoRA wrapping, fused LM head,
reference-model handling and metrics, and replaces three things through documented extension points:

* **data**: ``forget_dataset``/``retain_dataset`` in any data-layer schema are tokenised with the chat template
  (``_prepare_dataset``) and paired by :class:`~hf_unlearn.data.ForgetRetainDataset` (one epoch = one pass over the
  forget set, a fixed forget:retain mix per batch);
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
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from accelerate.utils import is_peft_model
from transformers import ProcessorMixin
from trl.trainer.utils import use_adapter

from .._terms import LossTerm
from ..callbacks.base import RepresentationCallback, stop_after
from ..callbacks.evaluation import EvalCallback
from ..data.collators import DataCollatorForUnlearning
from ..data.pairing import ForgetRetainDataset
from ..data.tokenization import IGNORE_INDEX, tokenize_rows
from ..evaluation.scoring import install_label_logprob_forward
from ..models import resolve_model_path
from .losses import forward_kl

__all__ = [
    "KTOLossTypeGuard",
    "LossTerm",
    "NonFiniteLossError",
    "SequenceLogps",
    "UnlearnConfigMixin",
    "UnlearnTrainerMixin",
    "WindowCounts",
]

logger = logging.getLogger(__name__)

RETAIN_LOSS_TYPES = ("nll", "kl", "none")


@contextlib.contextmanager
def _checkpointing_off(model: Any, kwargs: dict | None):
    """Reference forwards need no activation checkpointing (TRL's helper does the same with deprecated names)."""
    on = bool(getattr(model, "is_activation_checkpointing", False))
    if on:
        model.activation_checkpointing_disable()
    try:
        yield
    finally:
        if on:
            model.activation_checkpointing_enable(kwargs)


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; training stops before that step's update."""


@dataclass
class UnlearnConfigMixin:
    r"""Parameters shared by all hf_unlearn configs (mixed in front of a TRL config).

    Parameters:
        > Parameters that control the objective

        forget_coeff (`float`, *optional*, defaults to `1.0`):
            Weight of the forget term (`gamma` in open-unlearning, `npo_coeff` in the NPO/SimNPO code).
        retain_coeff (`float`, *optional*, defaults to `1.0`):
            Weight of the retain term (`alpha` in open-unlearning, `grad_diff_coeff`/`KL_coeff` elsewhere).
        retain_loss_type (`str`, *optional*, defaults to `"nll"`):
            Retain regulariser: `"nll"` (token-mean NLL on retain answers, "RT"/GradDiff), `"kl"` (forward
            KL(ref || model) on retain sequences; needs a reference every step) or `"none"`.
        kl_all_positions (`bool`, *optional*, defaults to `False`):
            Parity flag for the KL retain term. By default KL is averaged over real (attended) positions; `True`
            reproduces the reference code, which averages over all `B * T` padded positions.

        > Parameters that control the data

        system_prompt (`str`, *optional*):
            System prompt for the chat template; `None` keeps the template's default.
        retain_per_forget (`int`, *optional*, defaults to `1`):
            Retain rows paired with each forget row, i.e. the forget:retain mix of every batch is 1:k.
        pairing_seed (`int`, *optional*):
            Seed of the retain stream; defaults to `seed`.
    """

    forget_coeff: float = field(default=1.0, metadata={"help": "Weight of the forget term."})
    retain_coeff: float = field(default=1.0, metadata={"help": "Weight of the retain term."})
    retain_loss_type: str = field(
        default="nll", metadata={"help": "Retain regulariser.", "choices": list(RETAIN_LOSS_TYPES)}
    )
    kl_all_positions: bool = field(
        default=False, metadata={"help": "Parity: average KL over all padded positions (reference code)."}
    )
    system_prompt: str | None = field(default=None, metadata={"help": "System prompt; None = template default."})
    retain_per_forget: int = field(default=1, metadata={"help": "Retain rows per forget row (1:k batch mix)."})
    pairing_seed: int | None = field(default=None, metadata={"help": "Seed of the retain stream (default: seed)."})

    # TRL/transformers defaults changed for unlearning (TOFU recipe, spec methods.md 0.5) and for CPUs.
    learning_rate: float = field(default=1e-5, metadata={"help": "Initial learning rate (TOFU recipe: 1e-5)."})
    weight_decay: float = field(default=0.01, metadata={"help": "Weight decay (TOFU recipe: 0.01)."})
    num_train_epochs: float = field(default=10.0, metadata={"help": "Passes over the forget set (TOFU: 10)."})
    warmup_steps: float = field(default=0.1, metadata={"help": "Warm-up; a float in [0, 1) is a ratio of all steps."})
    train_sampling_strategy: str = field(
        default="random", metadata={"help": "Sampler of forget rows.", "choices": ["random", "sequential"]}
    )
    # Both names unset = off, without transformers' deprecation warning; either name turns it on (TRL defaults to on;
    # unlearning batches are small, enable it for large models).
    gradient_checkpointing: bool | None = field(default=None, metadata={"help": "Deprecated alias of the next."})
    activation_checkpointing: bool | None = field(
        default=None, metadata={"help": "Activation checkpointing (default off; enable for large models)."}
    )
    bf16: bool | None = field(
        default=None, metadata={"help": "bf16 mixed precision; default: on when the GPU supports it, off on CPU."}
    )

    def __post_init__(self) -> None:
        if self.bf16 is None and not getattr(self, "fp16", False):
            self.bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        accelerator = (
            torch.cuda.is_available()
            or (hasattr(torch, "xpu") and torch.xpu.is_available())
            or (torch.backends.mps.is_available())
        )
        if not accelerator:
            # Without it, `torchrun --nproc_per_node N` on a CPU machine silently trains N independent copies
            # (accelerate reports DistributedType.NO); with it, the ranks form one gloo group (MULTI_CPU).
            self.use_cpu = True
        super().__post_init__()
        if self.retain_loss_type not in RETAIN_LOSS_TYPES:
            raise ValueError(
                f"retain_loss_type must be one of {', '.join(RETAIN_LOSS_TYPES)}, got {self.retain_loss_type!r}."
            )
        if self.retain_per_forget < 1:
            raise ValueError(f"retain_per_forget must be >= 1, got {self.retain_per_forget}.")
        if self.forget_coeff < 0 or self.retain_coeff < 0:
            raise ValueError("forget_coeff and retain_coeff must be >= 0.")

    @property
    def uses_retain(self) -> bool:
        return self.retain_loss_type != "none" and self.retain_coeff > 0


@dataclass
class KTOLossTypeGuard:
    """For configs built on ``KTOConfig``: pin ``loss_type`` to the variant without KTO's KL estimate (which would add
    forwards and require sequential sampling); hf_unlearn computes its own loss."""

    loss_type: str = field(default="apo_zero_unpaired", metadata={"help": "Internal: disables KTO's KL estimate."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss_type != "apo_zero_unpaired":
            raise ValueError(f"{type(self).__name__} does not use KTO's loss_type; leave it unset.")


class WindowCounts(dict):
    """Rows, label tokens and positions per group over one gradient-accumulation window (summed across ranks).

    Keys are ``"<group>/<what>"`` with ``what`` in ``rows``, ``tokens``, ``positions`` (attended) and ``padded``.
    ``processes`` is the factor that turns globally normalised per-rank losses back into DDP's gradient mean.
    """

    processes: int = 1

    def get_count(self, group: str, what: str) -> torch.Tensor:
        return self[f"{group}/{what}"].clamp(min=1)


@dataclass
class SequenceLogps:
    """Per-row summed label log-probs, label-token counts and (when requested) logits of one group."""

    logps: torch.Tensor
    num_tokens: torch.Tensor
    token_logps: torch.Tensor
    logits: torch.Tensor | None = None


def _groups(batch: Mapping[str, Any]) -> list[str]:
    return [k[: -len("_input_ids")] for k in batch if k.endswith("_input_ids")]


def _pad_to(x: torch.Tensor, length: int, value: int) -> torch.Tensor:
    return torch.nn.functional.pad(x, (0, length - x.shape[1]), value=value) if x.shape[1] < length else x


def _base_of(model: Any) -> Any:
    return model.get_base_model() if is_peft_model(model) else model


def _label_token_logps(model: Any, compact: bool, input_ids, attention_mask, labels) -> torch.Tensor:
    """Per-token label log-probs ``(B, T-1)`` (0 where unlabelled) through ``model``'s forward."""
    if compact:
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, label_logprobs=True)
        return out.token_logps
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True, use_cache=False)
    return out.log_probs[:, -(input_ids.shape[1] - 1) :].float()


def _as_rows(data: Any) -> Sequence[Mapping[str, Any]]:
    if data is None:
        return None
    if hasattr(data, "to_list"):  # datasets.Dataset
        return data.to_list()
    return list(data)


class UnlearnTrainerMixin:
    """Turns a TRL trainer into an unlearning trainer; see the module docstring.

    Subclasses set ``_needs_reference`` (whether the forget term uses reference log-probs), ``_reference_groups``
    (groups whose reference log-probs are needed) and implement :meth:`loss_terms`.
    """

    config_class: ClassVar[type]
    _needs_reference: ClassVar[bool] = False
    _reference_groups: ClassVar[tuple[str, ...]] = ("forget",)
    _uses_retain_data: ClassVar[bool] = True
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
        representation = [cb for cb in callbacks or [] if isinstance(cb, RepresentationCallback)]
        output_retain = self._uses_retain_data and args.uses_retain
        uses_retain = output_retain or any(cb.needs_retain for cb in representation)
        if uses_retain and retain_dataset is None:
            raise ValueError(
                f"{type(self).__name__} with retain_loss_type={args.retain_loss_type!r} needs retain_dataset "
                "(or set retain_loss_type='none' / retain_coeff=0)."
                if output_retain
                else f"{type(representation[0]).__name__} needs retain_dataset (its retain term keeps activations)."
            )
        if not uses_retain and retain_dataset is not None:
            raise ValueError(
                f"{type(self).__name__} with this config has no retain term, so retain_dataset would be ignored; "
                "drop it, or use a method with a retain term (e.g. GradDiffTrainer)."
            )
        self._output_off = args.forget_coeff == 0 and not output_retain
        if self._output_off and not representation:
            raise ValueError(
                "forget_coeff=0 without a retain loss leaves nothing to optimise; add a representation callback "
                "(e.g. RMUCallback) or set forget_coeff > 0."
            )
        peft_model = peft_config is not None or (not isinstance(model, str) and is_peft_model(model))
        kl_retain = output_retain and args.retain_loss_type == "kl"
        if ref_model is not None and not (self._needs_reference or kl_retain):
            raise ValueError(f"{type(self).__name__} with this config uses no reference model; drop ref_model.")
        if kl_retain and ref_model is None and not peft_model and args.precompute_ref_log_probs:
            raise ValueError(
                "retain_loss_type='kl' compares full next-token distributions with the reference at every step, "
                "which cannot be precomputed: pass ref_model=, train a LoRA adapter (peft_config=, the reference is "
                "then the model with the adapter disabled), or set precompute_ref_log_probs=False to let TRL load the "
                "reference from the model's path."
            )
        if not (self._needs_reference or kl_retain) and not args.precompute_ref_log_probs:
            # A reference-free objective: claiming "precomputed" keeps TRL from loading a reference copy of the model;
            # our _precompute_ref_logps then has nothing to compute.
            args = dataclasses.replace(args, precompute_ref_log_probs=True)
        needs_ref_model = self._needs_reference or kl_retain
        if needs_ref_model and ref_model is None and not peft_model and not args.precompute_ref_log_probs:
            path = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "")
            if not path:
                raise ValueError(
                    "This model was built in memory (no _name_or_path), so TRL cannot load a reference copy of it: "
                    "pass ref_model=, use peft_config=, or (where the objective allows) precompute_ref_log_probs=True."
                )
        self._forget_rows = forget_rows
        self._retain_rows = _as_rows(retain_dataset) if uses_retain else None
        self._output_retain = output_retain
        self._kl_retain = kl_retain
        self._representation = representation
        self._layout: list[tuple[str, int]] = []
        from datasets import Dataset

        # TRL checks the training set's type and first row before handing it to _prepare_dataset, which builds the
        # real (paired, tokenised) dataset; give it the forget rows.
        seed_rows = Dataset.from_list([{"row": i} for i in range(len(forget_rows))])
        super().__init__(
            model=model,
            ref_model=ref_model,
            args=args,
            train_dataset=seed_rows,
            processing_class=processing_class,
            callbacks=callbacks,
            optimizers=optimizers,
            quantization_config=quantization_config,
            peft_config=peft_config,
        )
        self.data_collator = DataCollatorForUnlearning(pad_token_id=self._tokenizer.pad_token_id)
        self.model.add_model_tags(["hf_unlearn", "unlearning"])
        for cb in self.callback_handler.callbacks:  # EvalCallback logs through this trainer
            if isinstance(cb, RepresentationCallback) and cb not in self._representation:
                self._representation.append(cb)
            if isinstance(cb, EvalCallback) and cb.trainer is None:
                cb.trainer = self
        for cb in self._representation:  # per-row annotations (e.g. fact tokens) once the model exists
            if hasattr(cb, "annotate_forget"):
                cb.annotate_forget(self, self._forget_rows, self.train_dataset.forget, self._tokenizer, self.args)

    def _compact_path(self, reference: bool = False) -> bool:
        """Install (once) the label path on the policy or the reference model; ``False`` = TRL's fused head.

        Label log-probs then go through forward (DDP-safe) but are gathered before the LM head on every device: TRL's
        fused head is compact only under Triton and scores every position (prompt included) elsewhere. Installed
        lazily because TRL precomputes reference log-probs inside its ``__init__``.
        """
        model = self.ref_model if reference and self.ref_model is not None else self.model
        return install_label_logprob_forward(_base_of(self.accelerator.unwrap_model(model)))

    # ------------------------------------------------------------------------------------------------------ data

    def _tokenizer_of(self, processing_class: Any) -> Any:
        return processing_class.tokenizer if isinstance(processing_class, ProcessorMixin) else processing_class

    def tokenize_forget(self, rows: Sequence[Mapping[str, Any]], tokenizer: Any, args: Any) -> list[dict]:
        """Tokenise the forget rows (methods with other targets, e.g. refusals, override this)."""
        return tokenize_rows(rows, tokenizer, max_length=args.max_length, system_prompt=args.system_prompt)

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        if dataset_name != "train":
            raise ValueError("hf_unlearn trainers take no eval_dataset; evaluate with hf_unlearn.evaluation instead.")
        tokenizer = self._tokenizer_of(processing_class)
        forget = self.tokenize_forget(self._forget_rows, tokenizer, args)
        if not forget:
            raise ValueError("No forget row has an answer token left after tokenisation; raise max_length.")
        retain = None
        if self._retain_rows is not None:
            retain = tokenize_rows(
                self._retain_rows, tokenizer, max_length=args.max_length, system_prompt=args.system_prompt
            )
            if not retain:
                raise ValueError("No retain row has an answer token left after tokenisation; raise max_length.")
        seed = args.seed if args.pairing_seed is None else args.pairing_seed
        return ForgetRetainDataset(forget, retain, retain_per_forget=args.retain_per_forget, seed=seed)

    def _set_signature_columns_if_needed(self) -> None:
        if self._signature_columns is None:
            sample = self.train_dataset[0] if self.train_dataset is not None and len(self.train_dataset) else {}
            self._signature_columns = list(sample)

    # ------------------------------------------------------------------------------------------------ reference

    def _reference_context(self):
        """TRL's reference rule: the explicit ref_model, else (under PEFT) the model with its adapter disabled or
        the frozen ``ref`` adapter copy TRL makes for a pre-trained adapter."""
        if self.ref_model is None and is_peft_model(self.model):
            unwrapped = self.accelerator.unwrap_model(self.model)
            return use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None)
        return contextlib.nullcontext()

    @torch.no_grad()
    def reference_logps(self, model: Any, input_ids, attention_mask, labels) -> torch.Tensor:
        """Per-row summed reference log-probs of ``labels`` (no gradient)."""
        ref = self.ref_model if self.ref_model is not None else model
        with (
            _checkpointing_off(self.model, self.args.activation_checkpointing_kwargs),
            self._reference_context(),
            self.accelerator.autocast(),
        ):
            compact = self._compact_path(reference=True)
            return _label_token_logps(ref, compact, input_ids, attention_mask, labels).sum(-1)

    @torch.no_grad()
    def reference_logits(self, model: Any, input_ids, attention_mask) -> torch.Tensor:
        ref = self.ref_model if self.ref_model is not None else model
        with (
            _checkpointing_off(self.model, self.args.activation_checkpointing_kwargs),
            self._reference_context(),
            self.accelerator.autocast(),
        ):
            return ref(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int) -> Any:
        """Reference log-probs of every forget sequence, computed once before training (NPO, IdkDPO).

        Runs with the model as it is at initialisation (the adapter disabled under PEFT) or ``ref_model``, and stores
        ``<group>ref_logps`` on the forget rows; the training loop then needs no reference forward at all.
        """
        if not self._needs_reference or not isinstance(dataset, ForgetRetainDataset):
            return dataset
        model = self.model
        was_training = model.training
        model.eval()
        collate = DataCollatorForUnlearning(pad_token_id=self._tokenizer.pad_token_id)
        device = self.accelerator.device
        rows = dataset.forget
        try:
            for group in self._reference_groups:
                prefix = "" if group == "forget" else f"{group.removeprefix('forget_')}_"
                for start in range(0, len(rows), batch_size):
                    chunk = rows[start : start + batch_size]
                    batch = collate(
                        [{"input_ids": r[f"{prefix}input_ids"], "labels": r[f"{prefix}labels"]} for r in chunk]
                    )
                    logps = self.reference_logps(
                        model,
                        batch["input_ids"].to(device),
                        batch["attention_mask"].to(device),
                        batch["labels"].to(device),
                    )
                    for r, v in zip(chunk, logps.tolist(), strict=True):
                        r[f"{prefix}ref_logps"] = v
        finally:
            model.train(was_training)
        logger.info("Precomputed reference log-probs for %d forget rows.", len(rows))
        return dataset

    # ------------------------------------------------------------------------------------------ accumulation

    def _count_window(
        self, batches: Sequence[Mapping[str, torch.Tensor]], device: Any, *, across_ranks: bool = True
    ) -> WindowCounts:
        names, values = [], []
        for group in _groups(batches[0]) if batches else []:
            for what in ("rows", "tokens", "positions", "padded"):
                names.append(f"{group}/{what}")
            per_batch = [
                torch.stack(
                    [
                        torch.tensor(b[f"{group}_input_ids"].shape[0], device=b[f"{group}_input_ids"].device),
                        (b[f"{group}_labels"][:, 1:] != IGNORE_INDEX).sum(),
                        b[f"{group}_attention_mask"].sum(),
                        torch.tensor(b[f"{group}_input_ids"].numel(), device=b[f"{group}_input_ids"].device),
                    ]
                )
                for b in batches
            ]
            values.append(torch.stack(per_batch).sum(0).float())
        counts = WindowCounts()
        if not values:
            return counts
        totals = torch.cat(values).to(device)
        if across_ranks and self.args.world_size > 1 and self.args.average_tokens_across_devices:
            totals = self.accelerator.reduce(totals, reduction="sum")
            counts.processes = self.accelerator.num_processes
        counts.update(zip(names, totals, strict=True))
        return counts

    def get_batch_samples(self, epoch_iterator, num_batches: int, device: Any):
        batch_samples, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        return batch_samples, self._count_window(batch_samples, device)

    # -------------------------------------------------------------------------------------------- forward

    def sequence_logps(
        self, model: Any, inputs: Mapping[str, torch.Tensor], groups: Sequence[str], *, logits_for: str | None = None
    ) -> dict[str, SequenceLogps]:
        """Policy log-probs of several groups in ONE forward (rows concatenated along the batch).

        Log-probs are gathered at label positions before the LM head (no ``(B, T, V)`` logits; TRL's fused head for
        models with logit scaling) unless ``logits_for`` names a group whose full logits are
        needed (the KL retain term); then one ordinary forward serves all groups and label log-probs are gathered from
        the logits at label positions only.
        """
        ids, mask, labels = self._concat_groups(inputs, groups)
        target = labels[:, 1:]
        select = target != IGNORE_INDEX
        logits = None
        if logits_for is None:
            token_logps = _label_token_logps(model, self._compact_path(), ids, mask, labels)
        else:
            logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
            picked = torch.log_softmax(logits[:, :-1][select].float(), -1).gather(-1, target[select][:, None])
            token_logps = torch.zeros(select.shape, dtype=torch.float32, device=ids.device)
            token_logps = token_logps.masked_scatter(select, picked.squeeze(-1))
        sizes = [inputs[f"{g}_input_ids"].shape[0] for g in groups]
        result = {}
        for g, tl, sel, lg in zip(
            groups,
            token_logps.split(sizes),
            select.split(sizes),
            logits.split(sizes) if logits is not None else [None] * len(groups),
            strict=True,
        ):
            width = inputs[f"{g}_input_ids"].shape[1]
            result[g] = SequenceLogps(
                logps=tl.sum(-1),
                num_tokens=sel.sum(-1),
                token_logps=tl,
                logits=lg[:, :width] if lg is not None and g == logits_for else None,
            )
        return result

    def policy_forward(
        self, model: Any, inputs: Mapping[str, torch.Tensor], groups: Sequence[str] = ("forget",)
    ) -> dict[str, SequenceLogps]:
        """One forward over ``groups`` plus the retain rows when the objective has a retain term."""
        if "retain_input_ids" in inputs:
            groups = [*groups, "retain"]
        return self.sequence_logps(model, inputs, groups, logits_for="retain" if self._kl_retain else None)

    def add_retain(self, model: Any, inputs, outs: Mapping[str, SequenceLogps], terms: dict, metrics: dict):
        """Add the retain term and its metric when the forward included retain rows; return ``(terms, metrics)``."""
        if "retain" in outs and self._output_retain:
            terms["retain"] = self.retain_term(model, inputs, outs["retain"])
            metrics["logps/retain"] = outs["retain"].logps.detach().mean()
        return terms, metrics

    def _concat_groups(self, inputs: Mapping[str, torch.Tensor], groups: Sequence[str]):
        """Rows of several groups as one right-padded batch; remembers the row layout for representation hooks."""
        length = max(inputs[f"{g}_input_ids"].shape[1] for g in groups)
        pad = self._tokenizer.pad_token_id
        ids = torch.cat([_pad_to(inputs[f"{g}_input_ids"], length, pad) for g in groups])
        mask = torch.cat([_pad_to(inputs[f"{g}_attention_mask"], length, 0) for g in groups])
        labels = torch.cat([_pad_to(inputs[f"{g}_labels"], length, IGNORE_INDEX) for g in groups])
        self._layout = [(g, inputs[f"{g}_input_ids"].shape[0]) for g in groups]
        return ids, mask, labels

    def representation_forward(self, model: Any, inputs: Mapping[str, torch.Tensor]) -> None:
        """Forward for representation objectives alone: forget and retain rows, stopped after the deepest hooked
        layer (no later layer, LM head or logits)."""
        groups = ["forget", "retain"] if "retain_input_ids" in inputs else ["forget"]
        ids, mask, _ = self._concat_groups(inputs, groups)
        with stop_after(model, max(cb.layer for cb in self._representation)):
            model(input_ids=ids, attention_mask=mask, use_cache=False)

    def retain_term(self, model: Any, inputs: Mapping[str, torch.Tensor], out: SequenceLogps) -> LossTerm:
        """The weighted retain regulariser as a :data:`LossTerm`."""
        coeff = self.args.retain_coeff
        if self.args.retain_loss_type == "nll":
            return LossTerm(-coeff * out.logps.sum(), "retain", "tokens")
        mask = inputs["retain_attention_mask"]
        ref_logits = self.reference_logits(model, inputs["retain_input_ids"], mask)
        kl = forward_kl(out.logits, ref_logits)
        if self.args.kl_all_positions:  # parity: every padded position, as the reference code
            return LossTerm(coeff * kl.sum(), "retain", "padded")
        return LossTerm(coeff * (kl * mask).sum(), "retain", "positions")

    # ------------------------------------------------------------------------------------------------ loss

    def loss_terms(
        self, model: Any, inputs: Mapping[str, torch.Tensor]
    ) -> tuple[dict[str, LossTerm], dict[str, torch.Tensor]]:
        """Return ``(terms, metrics)``: the weighted loss terms (sums + what normalises them) and batch metrics."""
        raise NotImplementedError

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        local = self._count_window([inputs], inputs[next(iter(inputs))].device, across_ranks=False)
        window = num_items_in_batch if isinstance(num_items_in_batch, WindowCounts) else local
        with contextlib.ExitStack() as stack:
            for cb in self._representation:
                stack.enter_context(cb.capturing(model))
            if self._output_off:
                terms, metrics = {}, {}
                self.representation_forward(model, inputs)
            else:
                terms, metrics = self.loss_terms(model, inputs)
        for cb in self._representation:
            cb_terms, cb_metrics = cb.loss_terms(self, model, inputs, self._layout)
            terms.update(cb_terms)
            metrics.update(cb_metrics)
        per_batch = {name: t.total / local.get_count(t.group, t.what) for name, t in terms.items()}
        values = torch.stack([v.detach().float() for v in per_batch.values()])
        if not torch.isfinite(values).all():
            step = self.state.global_step + 1
            shown = ", ".join(f"{n}={v:.4g}" for n, v in zip(per_batch, values.tolist(), strict=True))
            raise NonFiniteLossError(
                f"Non-finite loss at optimizer step {step} ({shown}). Training stopped before this step's update; "
                f"the weights are those after step {step - 1}. Lower the learning rate, check the data, or avoid fp16."
            )
        # Window-normalised terms: summing them over the accumulation window gives the full-batch loss exactly.
        loss = sum(t.total / window.get_count(t.group, t.what) for t in terms.values()) * window.processes
        mode = "train" if model.training else "eval"
        for name, value in zip(per_batch, values.tolist(), strict=True):
            self._metrics[mode][f"loss/{name}"].append(value)
        for name, value in metrics.items():
            self._metrics[mode][name].append(float(value.detach()) if torch.is_tensor(value) else float(value))
        return (loss, None) if return_outputs else loss

    # -------------------------------------------------------------------------------------------- Hub

    def _base_model_id(self) -> str:
        from ..hub.cards import BUNDLED_HUB_ID
        from ..models import BUNDLED_MODEL_NAME

        model = self.accelerator.unwrap_model(self.model)
        if is_peft_model(model):
            base = next(iter(model.peft_config.values())).base_model_name_or_path or ""
        else:
            base = getattr(model.config, "_name_or_path", "") or ""
        return BUNDLED_HUB_ID if base.rstrip("/").split("/")[-1] == BUNDLED_MODEL_NAME else (base or "unknown")

    def create_model_card(self, model_name=None, dataset_name=None, tags=None, **kwargs):
        """Write hf_unlearn's card (see :mod:`hf_unlearn.hub.cards`) to ``output_dir/README.md``.

        Keeps TRL's signature (TRL calls it at every checkpoint; ``push_to_hub`` calls it too). Extra keywords:
        ``metrics`` (aggregate evaluation results), ``plot`` (an image file name in the output folder),
        ``forget_name``/``retain_name`` (dataset names shown on the card; their content never is).
        """
        from ..hub.cards import build_model_card

        if not self.is_world_process_zero():
            return
        a = self.args
        keys = (
            "beta",
            "loss_scale",
            "gamma",
            "forget_coeff",
            "retain_coeff",
            "retain_loss_type",
            "learning_rate",
            "num_train_epochs",
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
            "max_steps",
        )
        hyper = {k: getattr(a, k) for k in keys if hasattr(a, k) and getattr(a, k) is not None}
        if self._representation:
            hyper["callbacks"] = ", ".join(f"{type(cb).__name__}(layer={cb.layer})" for cb in self._representation)
        card = build_model_card(
            repo_id=a.hub_model_id or model_name or os.path.basename(os.path.normpath(a.output_dir)),
            base_model=self._base_model_id(),
            method=self._name,
            is_adapter=is_peft_model(self.accelerator.unwrap_model(self.model)),
            forget_name=kwargs.get("forget_name") or dataset_name or "forget set",
            forget_size=len(self._forget_rows),
            retain_name=kwargs.get("retain_name") or ("retain set" if self._retain_rows is not None else "-"),
            retain_size=len(self._retain_rows or []),
            hyperparameters=hyper,
            metrics=kwargs.get("metrics"),
            plot=kwargs.get("plot"),
            citation=(self._paper or {}).get("citation", ""),
        )
        card.save(os.path.join(a.output_dir, "README.md"))

    def push_to_hub(
        self, commit_message="End of training", blocking=True, token=None, revision=None, private=None, **kwargs
    ):
        """Save, write the card, and upload model/adapter files only - private unless asked otherwise.

        Unlike ``Trainer.push_to_hub`` (which uploads the whole output folder, ``training_args.bin`` included), only
        :data:`hf_unlearn.hub.ALLOWED_FILES` go up, and a ``results.json`` loses its per-item data first.
        """
        from ..hub.push import push_unlearned

        a = self.args
        repo_id = a.hub_model_id or os.path.basename(os.path.normpath(a.output_dir))
        if private is None:
            private = True if a.hub_private_repo is None else bool(a.hub_private_repo)
        self.save_model(a.output_dir)
        self.create_model_card(model_name=repo_id, **kwargs)
        return push_unlearned(
            a.output_dir, repo_id, private=private, token=token or a.hub_token, commit_message=commit_message
        )

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None
