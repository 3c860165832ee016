"""The trainer's public seams: what it was built from, a new trainer of its class on the same data (``spawn``), and
transformers' ``hyperparameter_search`` answered by hf_unlearn's settings search."""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["SeamsMixin"]


class SeamsMixin:
    """``init_inputs``, ``text_tokenizer``, ``spawn`` and ``hyperparameter_search``."""

    @property
    def init_inputs(self) -> Mapping[str, Any]:
        """What this trainer was built from: ``forget_rows``, ``retain_rows`` (documents already split into blocks),
        ``processing_class``, ``callbacks``, ``objectives`` (those given, not the method's own) and ``optimizers``."""
        return types.MappingProxyType(self._init_inputs)

    @property
    def text_tokenizer(self) -> Any:
        """The tokenizer (the processor's, when ``processing_class`` is a processor)."""
        return self._tokenizer

    def spawn(self, *, args: Any = None, callbacks: list | None = None, objectives: Sequence | None = None) -> Any:
        """A new trainer of this class on the same model, data, tokenizer and reference, with ``args`` (default:
        this trainer's), ``callbacks`` and ``objectives`` (default: those this trainer was given). A settings search
        builds its trials this way; the new trainer shares the model's weights."""
        inputs = self._init_inputs
        return type(self)(
            self.accelerator.unwrap_model(self.model),
            args=args if args is not None else self.args,
            forget_dataset=inputs["forget_rows"],
            retain_dataset=inputs["retain_rows"] if self.requirements.retain else None,
            processing_class=inputs["processing_class"],
            ref_model=self.ref_model,
            callbacks=list(inputs["callbacks"] if callbacks is None else callbacks),
            objectives=list(inputs["objectives"] if objectives is None else objectives),
        )

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
