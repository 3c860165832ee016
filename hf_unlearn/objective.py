"""The objective protocol: one public contract under every unlearning method.

An unlearning step is a list of objectives over one batch. Output-level methods (NPO, GradDiff, IdkDPO, ...) and
representation-level ones (RMU, Attention Shifting, installed as callbacks) all implement
:class:`UnlearningObjective`: each declares what it needs, adds its own per-row fields to the forget data, and returns
named loss terms from a public :class:`StepContext`. The trainer composes the list:

1. **set-up** - :func:`check_objectives` validates the inputs against the list (retain data, reference model,
   reference precomputation), :meth:`UnlearningObjective.setup` sees the final model once (PEFT wrapping included);
2. **data** - :meth:`UnlearningObjective.prepare` returns new columns of the tokenised forget dataset (refusals, fact
   masks, traces); reference log-probs of ``reference_groups`` are added as columns ``<name>ref_logps`` once before
   training when the configuration allows it;
3. **step** - one forward runs over the union of the groups the objectives read (forget and retain rows share it),
   with every objective's hooks recording (:meth:`UnlearningObjective.capturing`; what each yields reaches it as
   :meth:`StepContext.capture_of`). Each objective then returns ``(terms, metrics)`` from
   :meth:`UnlearningObjective.loss_terms`;
4. **events and state** - :meth:`UnlearningObjective.after_step` / :meth:`~UnlearningObjective.after_epoch` after
   each optimizer step / epoch (an :class:`EventContext`), and :meth:`~UnlearningObjective.state_dict` /
   :meth:`~UnlearningObjective.load_state_dict` for what must survive a resume: the trainer saves every objective's
   and callback's state in one checkpoint file (``hf_unlearn_state.safetensors``) and restores it bit for bit.

**The forward rule** (:func:`forward_plan`, one place): the step's forward is

* the *label forward* (policy log-probs at label positions; full logits for ``logits_groups``, label-position logits
  for ``label_logits_groups``) when any objective declares ``logp_groups``, ``logits_groups`` or
  ``label_logits_groups``;
* otherwise a forward *stopped after the deepest hooked layer* when any objective hooks layers (``hooked_layers``);
* otherwise none (objectives that run their own forwards through ``ctx.sequence_logps``).

An objective that declares ``activation_groups`` must hook a layer, or its rows would run for nothing: refused.

A term is a :class:`LossTerm`: a *sum* over rows or tokens of one group and the count that normalises it, so the
trainer can divide by whole-accumulation-window counts and gradient accumulation stays exact. An objective that
normalises by a count of its own (e.g. answer tokens after the first ``n``) returns it from
:meth:`UnlearningObjective.counts`; the trainer sums it over the window like the built-in counts.

Objectives that need the whole next-token distribution of the answer (UNDIAL, CE-U, PDU) declare
``label_logits_groups``: the shared forward then applies the LM head at label positions only and hands them
``(N, V)`` logits, never the ``(B, T, V)`` tensor of an ordinary forward.

Groups name the row sets of a batch: ``forget`` and ``retain`` rows, and derived forget sequences such as
``forget_idk`` (a refusal for each forget question) whose columns an objective adds in ``prepare``
(``idk_input_ids``/``idk_labels`` become the group ``forget_idk``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

__all__ = [
    "EventContext",
    "ForwardPlan",
    "LossTerm",
    "NonFiniteLossError",
    "PrepareContext",
    "Reference",
    "Requirements",
    "SequenceLogps",
    "StepContext",
    "TrainerBoundCallback",
    "UnlearningObjective",
    "check_objectives",
    "declared_fields",
    "forward_groups",
    "forward_plan",
    "from_json_state",
    "json_state",
    "requirements",
]


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; training stops before that step's update."""


def json_state(value: Any) -> torch.Tensor:
    """A JSON-able value as a uint8 tensor, for a ``state_dict`` that must also carry numbers, lists or strings."""
    import json

    return torch.tensor(list(json.dumps(value).encode()), dtype=torch.uint8)


def from_json_state(tensor: torch.Tensor) -> Any:
    """The value :func:`json_state` stored."""
    import json

    return json.loads(bytes(tensor.tolist()).decode())


def declared_fields(args: Any) -> list[str]:
    """The fields hf_unlearn's config classes declare (a method's own parameters, ``beta``, ``forget_coeff``, ...),
    base classes first, without those inherited from TRL or transformers."""
    own: list[str] = []
    for klass in reversed(type(args).__mro__):
        if klass.__module__.startswith("hf_unlearn"):
            own.extend(k for k in vars(klass).get("__annotations__", {}) if k not in own)
    return own


class LossTerm(NamedTuple):
    """A weighted loss term as a sum over rows or tokens of ``group``, normalised by the count ``what`` of that group
    (``rows``, ``tokens`` (label tokens), ``positions`` (attended) or ``padded``) - per micro-batch for logging, per
    accumulation window for the gradient."""

    total: torch.Tensor
    group: str
    what: str


@dataclass
class SequenceLogps:
    """Per-row summed label log-probs, label-token counts, per-token log-probs ``(B, T-1)`` and (when an objective
    asked for them) the full logits ``(B, T, V)`` or the float32 logits at label positions ``(N, V)`` of one group.

    ``label_mask`` ``(B, T-1)`` marks the positions that predict a label; ``label_logits`` rows follow
    ``label_mask.nonzero()`` (row-major).
    """

    logps: torch.Tensor
    num_tokens: torch.Tensor
    token_logps: torch.Tensor
    logits: torch.Tensor | None = None
    label_mask: torch.Tensor | None = None
    label_logits: torch.Tensor | None = None


class Reference:
    """The frozen reference policy, one public object: the explicit ``ref_model``, else (under PEFT) the model with
    its adapter disabled, else the model itself (TRL's rule). ``owner`` is the trainer that knows how to run it
    (hf_unlearn trainers implement ``reference_model``, ``reference_logps``, ``reference_logits`` and
    ``reference_label_logits``); ``batch`` is the step's batch that group names refer to.

    Every method takes a group of the batch (``"forget"``, ``"retain"``, ``"forget_idk"``, ...) or a mapping of rows
    (``input_ids``, ``attention_mask``, ``labels``), and runs without gradient.
    """

    def __init__(self, owner: Any, model: Any, batch: Mapping[str, torch.Tensor] | None = None) -> None:
        self._owner, self._model, self._batch = owner, model, batch or {}

    def _rows(self, rows: str | Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if isinstance(rows, str):
            b = self._batch
            return b[f"{rows}_input_ids"], b[f"{rows}_attention_mask"], b.get(f"{rows}_labels")
        return rows["input_ids"], rows["attention_mask"], rows.get("labels")

    def model(self) -> contextlib.AbstractContextManager:
        """Context yielding the reference model to call (no activation checkpointing). Under full fine-tuning
        without ``ref_model`` this is the policy itself: callers that need the initial weights keep frozen copies,
        as :class:`~hf_unlearn.callbacks.RepresentationCallback` does."""
        return self._owner.reference_model(self._model)

    __call__ = model  # ``ctx.reference()`` yields the model, as before

    def logps(self, rows: str | Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Per-row summed reference log-probs of the labels: a group's precomputed column ``<group>_ref_logps`` when
        the batch carries it, else one forward of the reference."""
        if isinstance(rows, str) and f"{rows}_ref_logps" in self._batch:
            return self._batch[f"{rows}_ref_logps"]
        return self._owner.reference_logps(self._model, *self._rows(rows))

    def logits(self, rows: str | Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Full next-token logits ``(B, T, V)`` (cannot be precomputed)."""
        ids, mask, _ = self._rows(rows)
        return self._owner.reference_logits(self._model, ids, mask)

    def label_logits(self, rows: str | Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Float32 logits ``(N, V)`` at the label positions (rows as :attr:`SequenceLogps.label_logits`)."""
        return self._owner.reference_label_logits(self._model, *self._rows(rows))


@dataclass
class PrepareContext:
    """What :meth:`UnlearningObjective.prepare` may use.

    Attributes:
        rows: the forget rows as the user gave them (any data-layer schema).
        forget: the tokenised forget rows; ``forget[i]["index"]`` is the position of its source row in ``rows``.
        tokenizer: the tokenizer (chat template included).
        model: the model being trained, as set up (adapter attached under PEFT).
        args: the trainer's config.
        device: where the model runs.
    """

    rows: Sequence[Mapping[str, Any]]
    forget: Sequence[Mapping[str, Any]]
    tokenizer: Any
    model: Any
    args: Any
    device: Any
    reference: Reference | None = None
    _batches: Callable[[Any, int], Iterator[dict[str, torch.Tensor]]] | None = field(default=None, repr=False)

    def batches(self, batch_size: int = 16) -> Iterator[dict[str, torch.Tensor]]:
        """The tokenised forget rows in order, collated (``input_ids``, ``attention_mask``, ``labels``), on the
        model's device."""
        return self._batches(self.forget, batch_size)

    def reference_label_logits(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Float32 logits ``(N, V)`` of the frozen reference at the label positions of ``batch`` (no gradient):
        what a precomputing objective stores instead of a live teacher (``reference.label_logits(batch)``)."""
        return self.reference.label_logits(batch)


@dataclass
class StepContext:
    """Everything an objective may read during one training step (built by the trainer for each micro-batch).

    Attributes:
        model: the model being trained (possibly wrapped by DDP/FSDP/PEFT).
        batch: the collated batch: ``<group>_input_ids``, ``<group>_attention_mask``, ``<group>_labels`` and the
            per-row columns (``forget_ref_logps``, ``forget_span_mask``, ...).
        args: the trainer's config.
        step: the optimizer step being computed (1-based).
        training: whether the model is in training mode (metrics are filed under ``train`` or ``eval``).
        slices: rows of each group in the step's shared forward (groups are concatenated along the batch).
        logps: policy label log-probs of every group of the shared forward (empty when the forward stopped early).
        reference: the frozen reference policy (:class:`Reference`), bound to this batch.
        captured: what each objective's :meth:`~UnlearningObjective.capturing` context yielded, by ``id`` of the
            objective; read it with :meth:`capture_of`.
    """

    model: Any
    batch: Mapping[str, torch.Tensor]
    args: Any
    step: int
    training: bool
    slices: dict[str, slice]
    logps: dict[str, SequenceLogps]
    reference: Reference | None = None
    captured: dict[int, Any] = field(default_factory=dict)
    _sequence_logps: Callable[[Sequence[str]], dict[str, SequenceLogps]] | None = field(default=None, repr=False)
    _forget_batches: Callable[[int], Iterator[dict[str, torch.Tensor]]] | None = field(default=None, repr=False)
    _stop: Callable[[], None] | None = field(default=None, repr=False)

    def capture_of(self, objective: UnlearningObjective) -> Any:
        """What ``objective``'s :meth:`~UnlearningObjective.capturing` context yielded during this step's forward."""
        return self.captured[id(objective)]

    def reference_logps(self, group: str) -> torch.Tensor:
        """``reference.logps(group)``: the precomputed column when present, else one no-grad reference forward."""
        logps = self.reference.logps(group)
        return logps.to(self.logps[group].logps if group in self.logps else torch.float32)

    def reference_logits(self, group: str) -> torch.Tensor:
        """``reference.logits(group)``: full next-token logits of the reference (no gradient)."""
        return self.reference.logits(group)

    def reference_label_logits(self, group: str) -> torch.Tensor:
        """``reference.label_logits(group)``: float32 reference logits ``(N, V)`` at the label positions."""
        return self.reference.label_logits(group)

    def sequence_logps(self, groups: Sequence[str]) -> dict[str, SequenceLogps]:
        """An extra policy forward over ``groups`` (for sequences that should not share the step's forward)."""
        return self._sequence_logps(groups)

    def forget_batches(self, batch_size: int = 16) -> Iterator[dict[str, torch.Tensor]]:
        """The whole tokenised forget set as collated batches on the model's device (e.g. for a dataset statistic)."""
        return self._forget_batches(batch_size)

    def request_stop(self) -> None:
        """Stop training at the end of this optimizer step (e.g. a collapse guard was reached)."""
        self._stop()


@dataclass
class EventContext:
    """What :meth:`UnlearningObjective.after_step` and :meth:`~UnlearningObjective.after_epoch` may use.

    Attributes:
        args: the trainer's config.
        step: optimizer steps done.
        epoch: the (fractional) epoch reached.
        training_rank_count: processes training together (1 without distribution).
    """

    args: Any
    step: int
    epoch: float
    training_rank_count: int = 1
    _reduce: Callable[[Sequence[float]], list[float]] | None = field(default=None, repr=False)
    _log: Callable[[dict[str, float]], None] | None = field(default=None, repr=False)
    _paired_retain_nll: Callable[[int], float] | None = field(default=None, repr=False)

    def reduce_sum(self, *values: float) -> list[float]:
        """``values`` summed over every training process (identical on all of them)."""
        return self._reduce(values)

    def log(self, logs: dict[str, float]) -> None:
        """Log scalars through the trainer (every reporter), at this step."""
        self._log(logs)

    def paired_retain_nll(self, epoch: int) -> float:
        """Token-mean retain NLL of the current model on the retain rows paired with the forget set in ``epoch``
        (the same on every process)."""
        return self._paired_retain_nll(epoch)


class UnlearningObjective:
    """Base class of every unlearning objective (output-level or representation-level).

    Declarations (class or instance attributes; the trainer reads them once):

    * ``name``: a short name; loss terms should be prefixed with it unless they are the method's main terms.
    * ``needs_retain``: the objective reads retain rows (the trainer then pairs them with every forget row).
    * ``logp_groups``: groups whose policy label log-probs it reads from the step's shared forward.
    * ``logits_groups``: groups whose full policy logits it needs (an ordinary forward instead of label gathering).
    * ``label_logits_groups``: groups whose policy logits at label positions it needs (``(N, V)``, float32).
    * ``reference_groups``: groups whose reference sequence log-probs it reads; precomputed once when possible.
    * ``reference_logits_groups``: groups whose full reference distributions it reads at every step.
    * ``reference_label_logits_groups``: groups whose reference logits at label positions it reads at every step.
    * ``activation_groups``: groups that must run through the forward for its hooks.
    * ``hooked_layers``: decoder layers it hooks; when no objective reads label outputs the forward stops after the
      deepest one (the forward rule of the module docstring).
    """

    name: str = "objective"
    needs_retain: bool = False
    logp_groups: tuple[str, ...] = ()
    logits_groups: tuple[str, ...] = ()
    label_logits_groups: tuple[str, ...] = ()
    reference_groups: tuple[str, ...] = ()
    reference_logits_groups: tuple[str, ...] = ()
    reference_label_logits_groups: tuple[str, ...] = ()
    activation_groups: tuple[str, ...] = ()
    hooked_layers: tuple[int, ...] = ()

    @classmethod
    def from_config(cls, args: Any) -> UnlearningObjective:
        """The objective with the settings of a method's config: a method's defaults live once, in its config
        dataclass, and its trainer builds the objective from it (``objective_class``)."""
        raise NotImplementedError(f"{cls.__name__} is not built from a config; construct it with its arguments.")

    @property
    def needs_reference(self) -> bool:
        """Whether the objective compares with the frozen reference (log-probs or full distributions)."""
        return bool(self.reference_groups or self.reference_logits_groups or self.reference_label_logits_groups)

    def setup(self, model: Any, args: Any) -> None:
        """Called once the trainer has built the model (PEFT wrapping included), before :meth:`prepare`."""

    def prepare(self, ctx: PrepareContext) -> dict[str, list]:
        """Return new columns for the tokenised forget rows (one value per row of ``ctx.forget``), e.g.
        ``{"idk_input_ids": [...], "idk_labels": [...]}``. Nothing is mutated in place."""
        return {}

    def counts(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Normalising counts of this objective's own, as ``{"<group>/<what>": scalar}`` for one micro-batch; a
        :class:`LossTerm` may then use ``what``. The trainer sums them over the accumulation window (and ranks)."""
        return {}

    def capturing(self, model: Any) -> contextlib.AbstractContextManager:
        """Context active during the step's shared forward; hooks record while it is open. Its value is stored in
        :attr:`StepContext.captured` under ``id(self)``."""
        return contextlib.nullcontext()

    def loss_terms(
        self, batch: Mapping[str, torch.Tensor], ctx: StepContext
    ) -> tuple[dict[str, LossTerm], dict[str, torch.Tensor | float]]:
        """Return ``(terms, metrics)``: named weighted :class:`LossTerm` sums and scalar metrics of this batch."""
        raise NotImplementedError

    def after_step(self, ctx: EventContext) -> None:
        """Called after every optimizer step (e.g. to update a dual variable from what ``loss_terms`` recorded).
        Not ``on_step_end``: representation objectives are ``TrainerCallback`` s too, whose ``on_step_end`` takes the
        Trainer's arguments."""

    def after_epoch(self, ctx: EventContext) -> None:
        """Called at the end of every epoch."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors that must survive a resume (a control vector, a dual variable): saved by the trainer with every
        checkpoint, in one file for all objectives and callbacks."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_dict` returned (called on resume, before the first step)."""

    def card_entries(self) -> dict[str, Any]:
        """What the model card records about this objective beyond its config (e.g. a measured constraint level)."""
        return {}

    def describe(self) -> str:
        """How the objective is shown on model cards and in errors."""
        return type(self).__name__


class TrainerBoundCallback:
    """Mixin for callbacks that log through the trainer they are given to; hf_unlearn trainers call
    :meth:`bind_trainer` on construction (other trainers: pass the trainer to the callback yourself)."""

    trainer: Any = None

    def bind_trainer(self, trainer: Any) -> None:
        if self.trainer is None:
            self.trainer = trainer

    def log_metrics(self, logs: dict[str, float], state: Any) -> None:
        """Log ``logs`` through the bound trainer (to every reporter; see :func:`log_from_callback`), or into
        ``state.log_history`` without one."""
        if self.trainer is None:
            state.log_history.append({**logs, "step": state.global_step})
        else:
            log_from_callback(self.trainer, logs)


def log_from_callback(trainer: Any, logs: dict[str, float]) -> None:
    """``trainer.log(logs)`` from inside a callback event, keeping a log the Trainer still has to write at this step:
    ``Trainer.log`` clears ``control.should_log``, which would merge the step's loss log into the next one."""
    pending = trainer.control.should_log
    trainer.log(logs)
    trainer.control.should_log = pending


@dataclass(frozen=True)
class Requirements:
    """What a list of objectives needs from the trainer's inputs (see :func:`requirements`)."""

    retain: bool
    reference: bool
    reference_groups: tuple[str, ...]
    live_reference: bool  # full reference distributions at every step: cannot be precomputed
    forward_groups: tuple[str, ...]
    logits_groups: tuple[str, ...]
    label_logits_groups: tuple[str, ...]
    hooked_layers: tuple[int, ...]


def _union(groups: Sequence[Sequence[str]]) -> tuple[str, ...]:
    out: list[str] = []
    for gs in groups:
        out.extend(g for g in gs if g not in out)
    return tuple(out)


def forward_groups(objectives: Sequence[UnlearningObjective]) -> tuple[str, ...]:
    """Groups of the step's shared forward, in order of first appearance (label-log-prob groups first)."""
    return _union(
        [
            *(o.logp_groups for o in objectives),
            *(o.logits_groups for o in objectives),
            *(o.label_logits_groups for o in objectives),
            *(o.activation_groups for o in objectives),
        ]
    )


@dataclass(frozen=True)
class ForwardPlan:
    """The step's forward, from the declarations (see the module docstring's forward rule): ``kind`` is
    ``"labels"``, ``"truncated"`` (stopped after ``stop_after``) or ``"none"``, over ``groups``."""

    kind: str
    groups: tuple[str, ...]
    stop_after: int | None = None


def forward_plan(objectives: Sequence[UnlearningObjective]) -> ForwardPlan:
    """The one rule that decides the step's forward (module docstring)."""
    groups = forward_groups(objectives)
    if any(o.logp_groups or o.logits_groups or o.label_logits_groups for o in objectives):
        return ForwardPlan("labels", groups)
    layers = [layer for o in objectives for layer in o.hooked_layers]
    if layers:
        return ForwardPlan("truncated", groups, max(layers))
    return ForwardPlan("none", ())


def requirements(objectives: Sequence[UnlearningObjective]) -> Requirements:
    """Aggregate the declarations of ``objectives``: the one place that decides whether retain data and a
    reference are needed (the trainers and the recipe both ask here)."""
    return Requirements(
        retain=any(o.needs_retain for o in objectives),
        reference=any(o.needs_reference for o in objectives),
        reference_groups=_union([o.reference_groups for o in objectives]),
        live_reference=any(o.reference_logits_groups or o.reference_label_logits_groups for o in objectives),
        forward_groups=forward_groups(objectives),
        logits_groups=_union([o.logits_groups for o in objectives]),
        label_logits_groups=_union([o.label_logits_groups for o in objectives]),
        hooked_layers=tuple(sorted({layer for o in objectives for layer in o.hooked_layers})),
    )


def check_objectives(
    objectives: Sequence[UnlearningObjective],
    *,
    has_retain: bool,
    has_ref_model: bool,
    peft: bool,
    precompute: bool,
    owner: str = "This trainer",
) -> Requirements:
    """Validate a trainer's inputs against its objectives; raise a :class:`ValueError` that names the fix."""
    if not objectives:
        raise ValueError(
            "forget_coeff=0 without a retain loss leaves nothing to optimise; add a representation callback "
            "(e.g. RMUCallback) or set forget_coeff > 0."
        )
    req = requirements(objectives)
    idle = [o.describe() for o in objectives if o.activation_groups and not o.hooked_layers]
    if idle:
        raise ValueError(
            f"{', '.join(idle)} declare activation_groups but hook no layer (hooked_layers): their rows would run "
            "through a forward that nothing reads. Declare the layers they hook, or logp_groups for label outputs."
        )
    if req.retain and not has_retain:
        users = ", ".join(o.describe() for o in objectives if o.needs_retain)
        raise ValueError(
            f"{users} needs retain_dataset (or set retain_loss_type='none' / retain_coeff=0 for an output retain term)."
        )
    if has_retain and not req.retain:
        raise ValueError(
            f"{owner} with this config has no retain term, so retain_dataset would be ignored; drop it, or use a "
            "method with a retain term (e.g. GradDiffTrainer)."
        )
    if has_ref_model and not req.reference:
        raise ValueError(f"{owner} with this config uses no reference model; drop ref_model.")
    if req.live_reference and not has_ref_model and not peft and precompute:
        users = ", ".join(
            o.describe() for o in objectives if o.reference_logits_groups or o.reference_label_logits_groups
        )
        raise ValueError(
            f"{users} compares full next-token distributions with the reference at every step (e.g. "
            "retain_loss_type='kl'), which cannot be precomputed: pass ref_model=, train a LoRA adapter "
            "(peft_config=, the reference is then the model with the adapter disabled), or set "
            "precompute_ref_log_probs=False to let TRL load the reference from the model's path."
        )
    return req
