"""The model card of a trainer's run: hf_unlearn's card (:mod:`hf_unlearn.hub.cards`) with the method, the settings
its config declares, what objectives and callbacks report (``card_entries``), the lineage and the real base model."""

from __future__ import annotations

import os
from typing import Any

from accelerate.utils import is_peft_model

from ..models import BUNDLED_HUB_ID, is_bundled_model
from ..objective import declared_fields

__all__ = ["CardMixin"]


class CardMixin:
    """``create_model_card`` (TRL's signature) and what it records."""

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
        sources = {id(o): o for o in [*self.objectives, *self.callback_handler.callbacks]}
        for source in sources.values():  # what objectives and callbacks measured or decided (card_entries)
            entries = getattr(source, "card_entries", None)
            if callable(entries):
                hyper.update(entries())
        return hyper

    def create_model_card(self, model_name=None, dataset_name=None, tags=None, **kwargs):
        """Write hf_unlearn's card (see :mod:`hf_unlearn.hub.cards`) to ``output_dir/README.md``.

        Keeps TRL's signature (TRL calls it at every checkpoint; ``push_to_hub`` calls it too). Extra keywords:
        ``metrics`` (aggregate evaluation results), ``plot`` (an image file name in the output folder) and
        ``plot_title`` (its caption), ``forget_name``/``retain_name`` (dataset names shown on the card; their content
        never is), ``search`` (the :class:`~hf_unlearn.search.SearchResult` that chose the settings), ``datasets``
        (the Hub ids of the data, for the card's ``datasets:``; never local files), ``eval_dataset`` (the evaluation
        data's name in ``model-index``), ``license`` (default: the base model's where known), ``robustness`` (a
        robustness result or its path: the card's "Robustness" section), ``output_dir`` (default
        ``args.output_dir``).
        """
        from ..hub.cards import build_model_card

        if not self.is_world_process_zero():
            return
        a = self.args
        hyper = self._card_hyperparameters()
        if kwargs.get("search") is not None:  # the settings search that chose this run
            hyper["settings_search"] = kwargs["search"].card_entry()
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
            plot_title=kwargs.get("plot_title"),
            robustness=kwargs.get("robustness"),
            datasets=kwargs.get("datasets"),
            citation=(self._paper or {}).get("citation", ""),
            lineage=self._lineage(),
            **optional,
        )
        card.save(os.path.join(kwargs.get("output_dir") or a.output_dir, "README.md"))

    # transformers' Hub hooks, taken over: no Hub call at start-up (transformers creates the repository there, with the
    # account's default visibility) and none during training (it uploads every checkpoint, optimizer state included).
