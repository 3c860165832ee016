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
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from accelerate.utils import is_peft_model
from tqdm.auto import tqdm
from transformers import ProcessorMixin, TrainerCallback
from trl.trainer.utils import use_adapter

from ..callbacks.calibration import ForgetTargetCallback
from ..data.collators import DataCollatorForUnlearning
from ..data.documents import CHUNKING_MODES, chunk_documents
from ..data.pairing import ForgetRetainDataset
from ..data.tokenization import IGNORE_INDEX, tokenize_rows
from ..layers import stop_after
from ..logprobs import install_label_logprob_forward
from ..models import BUNDLED_HUB_ID, is_bundled_model, resolve_model_path
from ..objective import (
    LossTerm,
    PrepareContext,
    SequenceLogps,
    StepContext,
    TrainerBoundCallback,
    UnlearningObjective,
    check_objectives,
)
from .retain import retain_objectives

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
        forget_target (`str`, *optional*):
            Reasoning-model unlearning ("R-TOFU", arXiv 2505.15214): rows carry a trace (`cot`) and are trained in the
            format `<think>\n{cot}\n</think>\n\n{answer}`. `"both"` trains the forget objective on trace and answer,
            `"answer"` on the answer only (the trace stays in the input as context), `"cot"` on the trace only;
            retain rows are always trained on both. `None` (default) keeps the plain question/answer format.
        document_chunking (`str`, *optional*, defaults to `"per_document"`):
            What happens to raw-text rows (documents) longer than `max_length`: `"per_document"` splits each into
            consecutive blocks of at most `max_length` tokens (exact substrings, cut at word starts; nothing is
            dropped), `"concatenate"` joins all documents with a blank line and cuts the whole into blocks
            (open-unlearning's pre-training datasets, e.g. its MUSE recipes: parity), `"none"` truncates them (with
            a warning counting the tokens lost). Chat rows are never split.
        document_stride (`int`, *optional*, defaults to `0`):
            Tokens of overlap between consecutive blocks of a document: the context a block starts with, not
            trained again (like `stride` in `transformers` tokenizers).

        > Parameters that control publishing

        hub_strategy (`str`, *optional*, defaults to `"end"`):
            The only accepted value: with `push_to_hub=True` the final model is pushed once, after training, to a
            repository created private (public only with `hub_private_repo=False`); checkpoints are never uploaded.
            transformers' other strategies would publish intermediate weights and training state, so they are
            refused.
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
    forget_target: str | None = field(
        default=None,
        metadata={
            "help": "Reasoning format: train the forget objective on the trace + answer, the answer or the trace.",
            "choices": [None, "both", "answer", "cot"],
        },
    )
    document_chunking: str = field(
        default="per_document",
        metadata={
            "help": "Documents longer than max_length: split into blocks, concatenate (open-unlearning) or truncate.",
            "choices": list(CHUNKING_MODES),
        },
    )
    document_stride: int = field(
        default=0, metadata={"help": "Tokens of context a document's block repeats from the previous block."}
    )

    # TRL/transformers defaults changed for unlearning (the TOFU recipe of arXiv 2401.06121) and for CPUs.
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
    # No checkpoints unless asked: a full checkpoint (weights plus optimizer state) of even a small model is several
    # times its size. Set save_strategy="steps" (and save_steps) for runs that must be resumable.
    save_strategy: str = field(
        default="no", metadata={"help": "Checkpointing: 'no' (default), 'steps' or 'epoch' (resumable runs)."}
    )
    # Publishing: one push at the end, private unless hub_private_repo=False (see hf_unlearn.hub.push_unlearned).
    hub_strategy: str = field(
        default="end",
        metadata={"help": "Only 'end': the model is pushed once, after training; checkpoints stay local."},
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
        if self.per_device_train_batch_size < 1:
            raise ValueError(f"per_device_train_batch_size must be >= 1, got {self.per_device_train_batch_size}.")
        if not math.isfinite(self.learning_rate) or self.learning_rate < 0:
            raise ValueError(f"learning_rate must be a finite number >= 0, got {self.learning_rate}.")
        if self.retain_per_forget < 1:
            raise ValueError(f"retain_per_forget must be >= 1, got {self.retain_per_forget}.")
        if self.forget_coeff < 0 or self.retain_coeff < 0:
            raise ValueError("forget_coeff and retain_coeff must be >= 0.")
        strategy = getattr(self.hub_strategy, "value", self.hub_strategy)
        if strategy != "end":
            raise ValueError(
                f"hub_strategy={strategy!r} uploads checkpoints while training: intermediate weights that are less "
                "unlearned than the final model (and, with 'checkpoint' or 'all_checkpoints', the optimizer and RNG "
                "state). hf_unlearn pushes once, at the end, to a private repository, with the model files, card and "
                "aggregate results only: leave hub_strategy unset (it is 'end'); checkpoints (save_steps) stay local."
            )

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


def declared_fields(args: Any) -> list[str]:
    """The fields hf_unlearn's config classes declare (a method's own parameters, ``beta``, ``forget_coeff``, ...),
    base classes first, without those inherited from TRL or transformers."""
    own: list[str] = []
    for klass in reversed(type(args).__mro__):
        if klass.__module__.startswith("hf_unlearn"):
            own.extend(k for k in vars(klass).get("__annotations__", {}) if k not in own)
    return own


def _as_rows(data: Any) -> Sequence[Mapping[str, Any]]:
    if data is None:
        return None
    if isinstance(data, str | os.PathLike):
        raise ValueError(
            f"Got the path {str(data)!r} where rows are expected: load them first, e.g. "
            "datasets.load_dataset('json', data_files=path)['train']."
        )
    if hasattr(data, "to_list"):  # datasets.Dataset
        return data.to_list()
    return list(data)


def _warn_overlap(forget: Any, retain: Any) -> None:
    """Warn when forget sequences also appear in the retain set: the two terms then pull against each other."""
    seen = {tuple(ids) for ids in retain["input_ids"]}
    shared = sum(tuple(ids) in seen for ids in forget["input_ids"])
    if shared:
        warnings.warn(
            f"{shared} of {len(forget)} forget rows also appear in the retain set (same prompt and answer); the forget "
            "and retain terms then pull the same sequences in opposite directions. Remove them from the retain set.",
            UserWarning,
            stacklevel=3,
        )


class _PairingEpoch(TrainerCallback):
    """Keeps the pairing dataset's epoch equal to the Trainer's, also after resuming inside an epoch.

    The Trainer forwards ``set_epoch`` to the data loader, but after a resume mid-epoch the loader that skips the
    trained batches does not reach the dataset, so retain rows of epoch 0 were drawn again (a resumed run then
    differed from the uninterrupted one). ``state.epoch`` is restored from the checkpoint before this event fires.
    """

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_epoch_begin(self, args, state, control, **kwargs):
        dataset = self.trainer.train_dataset
        if isinstance(dataset, ForgetRetainDataset):
            dataset.set_epoch(int(state.epoch + 1e-6))


class _FiniteGradients(TrainerCallback):
    """Stops training before an optimizer step whose gradients hold NaN or infinity (a finite loss can still have
    them), so that the weights are never corrupted: they stay those of the previous step."""

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads:  # e.g. DeepSpeed keeps gradients inside its engine
            return
        norm = torch.nn.utils.get_total_norm(grads, error_if_nonfinite=False)
        if not torch.isfinite(norm):
            step = state.global_step + 1
            raise NonFiniteLossError(
                f"Non-finite gradient at optimizer step {step} (norm {float(norm)}), from a finite loss. Training "
                f"stopped before this step's update; the weights are those after step {step - 1}. Lower the learning "
                "rate, check the data, or avoid fp16."
            )


class UnlearnTrainerMixin:
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
        self.extra_objectives = extra
        if processing_class is None:
            from transformers import AutoTokenizer

            if not path:
                raise ValueError(
                    "This model was built in memory, so its tokenizer cannot be found: pass processing_class=."
                )
            processing_class = AutoTokenizer.from_pretrained(path)
        tokenizer = self._tokenizer_of(processing_class)
        # Documents longer than max_length become blocks (never a silent cut); objectives see the blocks too.
        chunking = {"max_length": args.max_length, "stride": args.document_stride, "mode": args.document_chunking}
        blocks = {"forget": chunk_documents(forget_rows, tokenizer, **chunking)}
        forget_rows = blocks["forget"].rows
        retain_rows = _as_rows(retain_dataset)
        if retain_rows is not None:
            blocks["retain"] = chunk_documents(retain_rows, tokenizer, **chunking)
            retain_rows = blocks["retain"].rows
        self.data_summary = {name: b.summary() for name, b in blocks.items()}
        for name, b in blocks.items():
            if b.split:
                logger.info(b.describe(name))
        forget_input, retain_input = forget_rows, retain_rows if req.retain else None
        if args.forget_target is not None:  # the reasoning format; objectives still see the source rows
            from ..data.reasoning import check_reasoning_template, reasoning_rows

            check_reasoning_template(tokenizer, system_prompt=args.system_prompt)
            forget_input = reasoning_rows(forget_rows, target=args.forget_target)
            retain_input = reasoning_rows(retain_input, target="both") if retain_input is not None else None
        forget = self._tokenize(forget_input, tokenizer, args, "forget")
        retain = self._tokenize(retain_input, tokenizer, args, "retain") if retain_input is not None else None
        if retain is not None:
            _warn_overlap(forget, retain)
        # What a settings search needs to build one trainer per trial (hyperparameter_search).
        self._init_inputs = {
            "forget_rows": forget_rows,
            "retain_rows": retain_rows,
            "processing_class": processing_class,
            "callbacks": list(callbacks),
            "objectives": list(objectives or []),
            "optimizers": optimizers,
        }
        self.search_summary: dict[str, Any] | None = None
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
        self.data_collator = DataCollatorForUnlearning(pad_token_id=self._tokenizer.pad_token_id)
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
        self.add_callback(_PairingEpoch(self))
        self.add_callback(_FiniteGradients())

    # ------------------------------------------------------------------------------------------ settings search

    def hyperparameter_search(
        self,
        hp_space: Any = None,
        compute_objective: Any = None,
        n_trials: int = 20,
        direction: str = "minimize",
        backend: Any = None,
        hp_name: Any = None,
        **kwargs: Any,
    ) -> Any:
        """``transformers.Trainer.hyperparameter_search`` for unlearning: an optuna study of this trainer's settings
        that minimises the distance of the forget set to the non-member level plus the utility lost on retain and
        general-knowledge rows (:func:`hf_unlearn.search.search_settings`, whose keyword arguments ``kwargs`` takes;
        ``nonmember_dataset=`` is required). No ``model_init`` is needed: every trial starts from this trainer's
        starting weights. Returns a ``transformers.trainer_utils.BestRun`` whose ``run_summary`` is the
        :class:`~hf_unlearn.search.SearchResult` (its ``trainer`` saves the best trial's model).
        """
        from transformers.trainer_utils import BestRun

        from ..search import search_settings

        if backend not in (None, "optuna") and getattr(backend, "value", None) != "optuna":
            raise ValueError(f"hf_unlearn's settings search runs on optuna; got backend={backend!r}.")
        if direction != "minimize":
            raise ValueError("The unlearning objective is a distance to minimise: use direction='minimize'.")
        if "nonmember_dataset" not in kwargs:
            raise TypeError(
                "hyperparameter_search needs nonmember_dataset=: rows like the forget set that the model never "
                "trained on (the target of the search)."
            )
        result = search_settings(
            self, hp_space=hp_space, compute_objective=compute_objective, n_trials=n_trials, hp_name=hp_name, **kwargs
        )
        return BestRun(str(result.best_trial), result.best_value, result.best_params, result)

    # ------------------------------------------------------------------------------------------- objectives

    @classmethod
    def build_objectives(cls, args: Any) -> list[UnlearningObjective]:
        """The method's own objective(s) for ``args`` (without the retain term, which the mixin adds)."""
        raise NotImplementedError

    @classmethod
    def objectives_for(cls, args: Any) -> list[UnlearningObjective]:
        """The method's objectives and its retain term; a method objective with ``forget_coeff=0`` is left out."""
        own = cls.build_objectives(args) if args.forget_coeff > 0 else []
        return [*own, *retain_objectives(args)]

    def _compact_path(self, reference: bool = False) -> bool:
        """Install (once) the label path on the policy or the reference model; ``False`` = TRL's fused head.

        Label log-probs then go through forward (DDP-safe) but are gathered before the LM head on every device: TRL's
        fused head is compact only under Triton and scores every position (prompt included) elsewhere.
        """
        model = self.ref_model if reference and self.ref_model is not None else self.model
        return install_label_logprob_forward(_base_of(self.accelerator.unwrap_model(model)))

    # ------------------------------------------------------------------------------------------------------ data

    def _tokenizer_of(self, processing_class: Any) -> Any:
        return processing_class.tokenizer if isinstance(processing_class, ProcessorMixin) else processing_class

    @staticmethod
    def _tokenize(rows: Sequence[Mapping[str, Any]], tokenizer: Any, args: Any, name: str) -> Any:
        from datasets import Dataset

        encoded = tokenize_rows(rows, tokenizer, max_length=args.max_length, system_prompt=args.system_prompt)
        if not encoded:
            raise ValueError(f"No {name} row has an answer token left after tokenisation; raise max_length.")
        return Dataset.from_list(encoded)

    def _prepare_forget(self, rows: Sequence[Mapping[str, Any]], forget: Any) -> Any:
        """Add every objective's columns, then the precomputed reference log-probs, to the forget table."""
        ctx = PrepareContext(
            rows=rows,
            forget=forget,
            tokenizer=self._tokenizer,
            model=self.model,
            args=self.args,
            device=self.accelerator.device,
            _batches=self._table_batches,
            _reference_label_logits=lambda b: self.reference_label_logits(
                self.model, b["input_ids"], b["attention_mask"], b["labels"]
            ),
        )
        for objective in self.objectives:
            was_training = self.model.training
            self.model.eval()  # objectives that precompute (e.g. a teacher's top-k) see the model without dropout
            try:
                columns = objective.prepare(ctx)
            finally:
                self.model.train(was_training)
            for column, values in columns.items():
                if column in forget.column_names:
                    raise ValueError(f"{objective.describe()} adds the column {column!r}, which already exists.")
                if len(values) != len(forget):
                    raise ValueError(
                        f"{objective.describe()}.prepare returned {len(values)} values for {column!r}; expected one "
                        f"per tokenised forget row ({len(forget)})."
                    )
                forget = forget.add_column(column, values)
            ctx.forget = forget
        if self.args.precompute_ref_log_probs:
            forget = self._precompute_reference(forget)
        return forget

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        """TRL's data hook: hf_unlearn tokenises before TRL sees the data, so the forget table passes unchanged."""
        if dataset_name != "train":
            raise ValueError("hf_unlearn trainers take no eval_dataset; evaluate with hf_unlearn.evaluation instead.")
        return dataset

    def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int) -> Any:
        """TRL's precompute hook: reference columns are added by :meth:`_precompute_reference` after set-up."""
        return dataset

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

    @contextlib.contextmanager
    def reference_model(self, model: Any) -> Iterator[Any]:
        """The frozen reference to call (no activation checkpointing): ``ref_model``, else ``model`` with its
        adapter disabled under PEFT, else ``model`` itself."""
        ref = self.ref_model if self.ref_model is not None else model
        with _checkpointing_off(self.model, self.args.activation_checkpointing_kwargs), self._reference_context():
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
        for objective in self.objectives if batches else ():
            own = [objective.counts(b) for b in batches]
            for key in own[0]:
                names.append(key)
                values.append(torch.stack([torch.as_tensor(c[key], device=device).float() for c in own]).sum()[None])
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
        self,
        model: Any,
        inputs: Mapping[str, torch.Tensor],
        groups: Sequence[str],
        *,
        logits_for: Sequence[str] = (),
        label_logits_for: Sequence[str] = (),
    ) -> dict[str, SequenceLogps]:
        """Policy log-probs of several groups in ONE forward (rows concatenated along the batch).

        Log-probs are gathered at label positions before the LM head (no ``(B, T, V)`` logits; TRL's fused head for
        models with logit scaling) unless ``logits_for`` names groups whose full logits are needed (the KL retain
        term); then one ordinary forward serves all groups and label log-probs are gathered from the logits at label
        positions only. ``label_logits_for`` names groups whose float32 logits at label positions are returned
        (``(N, V)``; the LM head still runs at label positions only).
        """
        ids, mask, labels = self._concat_groups(inputs, groups)
        target = labels[:, 1:]
        select = target != IGNORE_INDEX
        logits = label_logits = None
        compact = self._compact_path()
        if not logits_for and not (label_logits_for and not compact):
            if label_logits_for:
                out = model(input_ids=ids, attention_mask=mask, labels=labels, label_logprobs=True, label_logits=True)
                token_logps, label_logits = out.token_logps, out.logits
            else:
                token_logps = _label_token_logps(model, compact, ids, mask, labels)
        else:
            logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
            label_logits = logits[:, :-1][select].float()
            picked = torch.log_softmax(label_logits, -1).gather(-1, target[select][:, None])
            token_logps = torch.zeros(select.shape, dtype=torch.float32, device=ids.device)
            token_logps = token_logps.masked_scatter(select, picked.squeeze(-1))
        sizes = [inputs[f"{g}_input_ids"].shape[0] for g in groups]
        selects = select.split(sizes)
        if label_logits is not None:
            per_group = label_logits.split([int(sel.sum()) for sel in selects])
        else:
            per_group = [None] * len(groups)
        result = {}
        for g, tl, sel, lg, ll in zip(
            groups,
            token_logps.split(sizes),
            selects,
            logits.split(sizes) if logits is not None else [None] * len(groups),
            per_group,
            strict=True,
        ):
            width = inputs[f"{g}_input_ids"].shape[1]
            result[g] = SequenceLogps(
                logps=tl.sum(-1),
                num_tokens=sel.sum(-1),
                token_logps=tl[:, : width - 1],
                logits=lg[:, :width] if lg is not None and g in logits_for else None,
                label_mask=sel[:, : width - 1],
                label_logits=ll if g in label_logits_for else None,
            )
        return result

    def _concat_groups(self, inputs: Mapping[str, torch.Tensor], groups: Sequence[str]):
        """Rows of several groups as one right-padded batch."""
        length = max(inputs[f"{g}_input_ids"].shape[1] for g in groups)
        pad = self._tokenizer.pad_token_id
        ids = torch.cat([_pad_to(inputs[f"{g}_input_ids"], length, pad) for g in groups])
        mask = torch.cat([_pad_to(inputs[f"{g}_attention_mask"], length, 0) for g in groups])
        labels = torch.cat([_pad_to(inputs[f"{g}_labels"], length, IGNORE_INDEX) for g in groups])
        return ids, mask, labels

    def _truncated_forward(self, model: Any, inputs: Mapping[str, torch.Tensor], groups: Sequence[str]) -> None:
        """Forward for hook-only objectives: the rows of ``groups``, stopped after the deepest hooked layer (no later
        layer, LM head or logits)."""
        ids, mask, _ = self._concat_groups(inputs, groups)
        with stop_after(model, max(self.requirements.hooked_layers)):
            model(input_ids=ids, attention_mask=mask, use_cache=False)

    def _table_batches(self, table: Any, batch_size: int, prefix: str = "") -> Iterator[dict[str, torch.Tensor]]:
        """The ``<prefix>input_ids``/``<prefix>labels`` sequences of a tokenised table, collated, on the device."""
        device = self.accelerator.device
        for start in range(0, len(table), batch_size):
            chunk = table[start : start + batch_size]
            ids, labels = chunk[f"{prefix}input_ids"], chunk[f"{prefix}labels"]
            batch = self.data_collator([{"input_ids": i, "labels": lab} for i, lab in zip(ids, labels, strict=True)])
            yield {k: v.to(device) for k, v in batch.items()}

    def _stop_training(self) -> None:
        self.control.should_training_stop = True

    # ------------------------------------------------------------------------------------------------ loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        local = self._count_window([inputs], inputs[next(iter(inputs))].device, across_ranks=False)
        window = num_items_in_batch if isinstance(num_items_in_batch, WindowCounts) else local
        req = self.requirements
        groups = [g for g in req.forward_groups if f"{g}_input_ids" in inputs]
        captured: dict[int, Any] = {}
        with contextlib.ExitStack() as stack:
            for objective in self.objectives:
                captured[id(objective)] = stack.enter_context(objective.capturing(model))
            if any(o.logp_groups for o in self.objectives):
                logps = self.sequence_logps(
                    model, inputs, groups, logits_for=req.logits_groups, label_logits_for=req.label_logits_groups
                )
            else:
                logps = {}
                self._truncated_forward(model, inputs, groups)
        slices, start = {}, 0
        for g in groups:
            n = inputs[f"{g}_input_ids"].shape[0]
            slices[g], start = slice(start, start + n), start + n

        def live_logps(group: str) -> torch.Tensor:
            return self.reference_logps(
                model, inputs[f"{group}_input_ids"], inputs[f"{group}_attention_mask"], inputs[f"{group}_labels"]
            )

        ctx = StepContext(
            model=model,
            batch=inputs,
            args=self.args,
            step=self.state.global_step + 1,
            training=model.training,
            slices=slices,
            logps=logps,
            captured=captured,
            _reference_logps=live_logps,
            _reference_logits=lambda g: self.reference_logits(
                model, inputs[f"{g}_input_ids"], inputs[f"{g}_attention_mask"]
            ),
            _reference_label_logits=lambda g: self.reference_label_logits(
                model, inputs[f"{g}_input_ids"], inputs[f"{g}_attention_mask"], inputs[f"{g}_labels"]
            ),
            _reference=lambda: self.reference_model(model),
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

    def _base_model_path(self) -> str:
        """The model this run started from, as its config or adapter names it (a Hub id or a local folder)."""
        model = self.accelerator.unwrap_model(self.model)
        if is_peft_model(model):
            return next(iter(model.peft_config.values())).base_model_name_or_path or ""
        return getattr(model.config, "_name_or_path", "") or ""

    def _base_model_id(self) -> str:
        base = self._base_model_path()
        return BUNDLED_HUB_ID if is_bundled_model(base) else (base or "unknown")

    def _lineage(self) -> dict[str, Any]:
        """The base's lineage plus this unlearning run (see :mod:`hf_unlearn.hub.lineage`)."""
        from ..hub.lineage import extend_lineage

        is_adapter = is_peft_model(self.accelerator.unwrap_model(self.model))
        return extend_lineage(self._base_model_path(), {"kind": "unlearn", "method": self._name, "adapter": is_adapter})

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """``Trainer.save_model`` plus ``hf_unlearn_lineage.json``: the Hub root and every step since, so that the
        result can name its real base and be published or loaded elsewhere (see :mod:`hf_unlearn.hub.lineage`).

        As in transformers, a call from user code with ``push_to_hub=True`` also publishes the saved folder, but
        through hf_unlearn's one publishing path (:meth:`push_to_hub`), after the lineage is written."""
        from ..hub.lineage import write_lineage

        super().save_model(output_dir, _internal_call=True)  # transformers' own push is replaced by the one below
        output_dir = output_dir or self.args.output_dir
        if self.args.should_save and os.path.isdir(output_dir):
            write_lineage(output_dir, self._lineage())
        if self.args.push_to_hub and not _internal_call:
            self._publish(output_dir, commit_message="Model save")

    # Card settings: the training schedule, plus every objective parameter the method's config declares.
    _CARD_TRAINING_KEYS = (
        "learning_rate",
        "num_train_epochs",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "max_steps",
    )
    _CARD_SKIPPED = frozenset(
        {
            "loss_type",
            "system_prompt",
            "pairing_seed",
            "gradient_checkpointing",
            "activation_checkpointing",
            "bf16",
            "save_strategy",
            "hub_strategy",
            "train_sampling_strategy",
            "weight_decay",
            "warmup_steps",
            "precompute_ref_log_probs",
            "document_chunking",
            "document_stride",
        }
    )

    def _card_hyperparameters(self) -> dict[str, Any]:
        """What the card records: the objective parameters declared by hf_unlearn's configs (``beta``,
        ``forget_coeff``, ``teacher_top_k``, ...) and the training schedule; unset values are left out."""
        a = self.args
        keys = [k for k in declared_fields(a) if k not in self._CARD_SKIPPED and k not in self._CARD_TRAINING_KEYS]
        hyper = {k: getattr(a, k) for k in [*keys, *self._CARD_TRAINING_KEYS] if getattr(a, k, None) is not None}
        if not self.requirements.retain:
            for k in ("retain_coeff", "retain_per_forget", "kl_all_positions"):
                hyper.pop(k, None)
            hyper["retain_loss_type"] = "none"
        elif a.retain_loss_type != "kl":
            hyper.pop("kl_all_positions", None)
        if hyper.get("max_steps", 0) <= 0:
            hyper.pop("max_steps", None)
        if self.extra_objectives:
            hyper["callbacks"] = ", ".join(o.describe() for o in self.extra_objectives)
        for cb in self.callback_handler.callbacks:
            if isinstance(cb, ForgetTargetCallback):  # the stopping rule and where training stopped
                s = cb.summary
                hyper["calibrated_stopping"] = (
                    f"{s['rule']} with d = {s['distance']} ({s['metric']}) every {s['every_n_steps']} steps; "
                    f"{s['stopped']}, best step {s['best_step']}"
                    + (f" ({s['refined_evaluations']} refined evaluations)" if s["refined_evaluations"] else "")
                    + (f", weights of step {s['restored_step']} restored" if s["restored_step"] is not None else "")
                )
        if self.search_summary:  # the settings search that chose this run
            s = self.search_summary
            chosen = ", ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in s["best_params"].items()
            )
            hyper["settings_search"] = (
                f"optuna, {s['trials']} trials ({s['pruned']} pruned, {s['failed']} failed), minimising {s['rule']}; "
                f"best trial {s['best_trial']} (objective {s['best_value']:.3f}): {chosen}"
            )
        return hyper

    def create_model_card(self, model_name=None, dataset_name=None, tags=None, **kwargs):
        """Write hf_unlearn's card (see :mod:`hf_unlearn.hub.cards`) to ``output_dir/README.md``.

        Keeps TRL's signature (TRL calls it at every checkpoint; ``push_to_hub`` calls it too). Extra keywords:
        ``metrics`` (aggregate evaluation results), ``plot`` (an image file name in the output folder),
        ``forget_name``/``retain_name`` (dataset names shown on the card; their content never is), ``datasets`` (the
        Hub ids of the data, for the card's ``datasets:``; never local files), ``eval_dataset`` (the evaluation
        data's name in ``model-index``), ``license`` (default: the base model's where known), ``robustness`` (a
        robustness result or its path: the card's "Robustness" section), ``output_dir`` (default
        ``args.output_dir``).
        """
        from ..hub.cards import build_model_card

        if not self.is_world_process_zero():
            return
        a = self.args
        hyper = self._card_hyperparameters()
        optional = {k: kwargs[k] for k in ("eval_dataset", "license") if kwargs.get(k)}
        card = build_model_card(
            repo_id=a.hub_model_id or model_name or os.path.basename(os.path.normpath(a.output_dir)),
            base_model=self._base_model_id(),
            method=self._name,
            is_adapter=is_peft_model(self.accelerator.unwrap_model(self.model)),
            forget_name=kwargs.get("forget_name") or dataset_name or "forget set",
            forget_size=len(self.forget_dataset),
            forget_documents=self.data_summary["forget"]["documents"],
            retain_name=kwargs.get("retain_name") or ("retain set" if self.retain_dataset is not None else "-"),
            retain_size=len(self.retain_dataset) if self.retain_dataset is not None else 0,
            hyperparameters=hyper,
            metrics=kwargs.get("metrics"),
            plot=kwargs.get("plot"),
            robustness=kwargs.get("robustness"),
            datasets=kwargs.get("datasets"),
            citation=(self._paper or {}).get("citation", ""),
            lineage=self._lineage(),
            **optional,
        )
        card.save(os.path.join(kwargs.get("output_dir") or a.output_dir, "README.md"))

    # transformers' Hub hooks, taken over: no Hub call at start-up (transformers creates the repository there, with the
    # account's default visibility) and none during training (it uploads every checkpoint, optimizer state included).

    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """Name the repository and check that a token exists, without calling the Hub: the repository is created,
        private unless ``hub_private_repo=False``, by the push at the end. A missing login fails here, before
        training, rather than after it."""
        from ..hub.push import require_token

        self.push_in_progress = None
        if not self.is_world_process_zero():
            return
        require_token(token or self.args.hub_token)
        self.hub_model_id = self.args.hub_model_id or os.path.basename(os.path.abspath(self.args.output_dir))

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Checkpoints stay local: they are less unlearned than the final model and hold the training state."""

    def push_to_hub(
        self, commit_message="End of training", blocking=True, token=None, revision=None, private=None, **kwargs
    ):
        """Save, write the card, and publish with :func:`hf_unlearn.hub.push_unlearned`: a repository created private
        (unless ``private=False`` or ``hub_private_repo=False``), model/adapter files, card, plot and aggregate
        results only.

        Unlike ``Trainer.push_to_hub`` (which uploads the whole output folder, ``training_args.bin`` included), only
        :data:`hf_unlearn.hub.ALLOWED_FILES` go up, and a ``results.json`` loses its per-item data first. The upload
        always blocks (``blocking`` is accepted for compatibility). ``kwargs`` go to :meth:`create_model_card`.
        """
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        self.save_model(self.args.output_dir, _internal_call=True)  # every rank: a sharded model gathers to save
        return self._publish(
            self.args.output_dir,
            commit_message=commit_message,
            token=token,
            revision=revision,
            private=private,
            **kwargs,
        )

    def _publish(self, folder: str, *, commit_message: str, token=None, revision=None, private=None, **card):
        """Write the card into ``folder`` and push it (main process only)."""
        from ..hub.push import hub_private, push_unlearned

        if not self.is_world_process_zero():
            return None
        a = self.args
        if getattr(self, "hub_model_id", None) is None:
            self.init_hf_repo(token=token)
        self.create_model_card(model_name=self.hub_model_id, output_dir=folder, **card)
        return push_unlearned(
            folder,
            self.hub_model_id,
            private=hub_private(a.hub_private_repo if private is None else private),
            token=token or a.hub_token,
            commit_message=commit_message,
            revision=revision or a.hub_revision,
        )
