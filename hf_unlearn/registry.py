"""Method registry: every unlearning method by its recipe name, with its config, trainer and default recipe.

The recipe, the ``hf-unlearn`` command and the benchmarks look methods up here; adding an output-level method is its
trainer file plus one line in :data:`METHODS`. Classes are imported on first use (trainers import TRL).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["CALLBACKS", "METHODS", "MethodSpec", "get_method", "make_callback"]


@dataclass(frozen=True)
class MethodSpec:
    """One output-level method: ``<prefix>Config`` and ``<prefix>Trainer`` in ``module``, and its default recipe
    (the name of a config shipped in :mod:`hf_unlearn.recipes`: ``hf-unlearn train --config <recipe>``)."""

    name: str
    prefix: str
    module: str
    recipe: str

    def _load(self, suffix: str) -> Any:
        return getattr(importlib.import_module(self.module), f"{self.prefix}{suffix}")

    @property
    def recipe_path(self) -> Any:
        """The recipe's YAML file, inside the installed package."""
        from .recipes import resolve_config

        return resolve_config(self.recipe)

    @property
    def config_class(self) -> type:
        return self._load("Config")

    @property
    def trainer_class(self) -> type:
        return self._load("Trainer")


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("grad_ascent", "GradAscent", "hf_unlearn.trainers.grad_ascent", "grad_ascent_tofu"),
        MethodSpec("grad_diff", "GradDiff", "hf_unlearn.trainers.grad_ascent", "grad_diff_tofu"),
        MethodSpec("npo", "NPO", "hf_unlearn.trainers.npo", "npo_tofu"),
        MethodSpec("simnpo", "SimNPO", "hf_unlearn.trainers.simnpo", "simnpo_tofu"),
        MethodSpec("idk_sft", "IdkSFT", "hf_unlearn.trainers.idk_sft", "idk_sft_tofu"),
        MethodSpec("idk_dpo", "IdkDPO", "hf_unlearn.trainers.idk_dpo", "idk_dpo_tofu"),
        MethodSpec("undial", "UNDIAL", "hf_unlearn.trainers.undial", "undial_tofu"),
        MethodSpec("wga", "WGA", "hf_unlearn.trainers.wga", "wga_tofu"),
        MethodSpec("satimp", "SatImp", "hf_unlearn.trainers.satimp", "satimp_tofu"),
        MethodSpec("ceu", "CEU", "hf_unlearn.trainers.ceu", "ceu_tofu"),
        MethodSpec("pdu", "PDU", "hf_unlearn.trainers.pdu", "pdu_tofu"),
        MethodSpec("o3", "O3", "hf_unlearn.trainers.o3", "o3"),
        MethodSpec("reasoned_idk", "ReasonedIDK", "hf_unlearn.trainers.reasoned_idk", "reasoned_idk"),
    )
}


def get_method(name: str) -> MethodSpec:
    """The registered method ``name``; a clear error lists the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"Unknown method {name!r}; choose one of {', '.join(METHODS)}.") from None


def _rmu(layer: int, qa: bool = True) -> Any:
    from .callbacks import RMUCallback

    return RMUCallback(layer=layer, token_mask="labels" if qa else "attention")


def _adaptive_rmu(layer: int, qa: bool = True) -> Any:
    from .callbacks import AdaptiveRMUCallback

    return AdaptiveRMUCallback(layer=layer, token_mask="labels" if qa else "attention")


def _attention_shifting(layer: int, qa: bool = True) -> Any:
    from .callbacks import AttentionShiftingCallback

    return AttentionShiftingCallback(layers=[max(0, layer - 1), layer])


# Representation-level objectives by recipe name: a factory taking the steered (deepest) layer and whether the data
# is chat-formatted QA. On QA rows RMU steers the answer tokens only (token_mask="labels"): steering every real token
# would also move the chat template's prefix, which retain rows share and the retain term holds fixed. On raw text
# (MUSE, WMDP corpora) every real token is content (token_mask="attention").
CALLBACKS: dict[str, Callable[..., Any]] = {
    "rmu": _rmu,
    "adaptive_rmu": _adaptive_rmu,
    "attention_shifting": _attention_shifting,
}


def make_callback(name: str, layer: int, *, qa: bool = True) -> Any:
    """The representation callback ``name`` at ``layer`` with the settings for QA (``qa=True``) or raw-text data;
    a clear error lists the known ones."""
    if name not in CALLBACKS:
        raise ValueError(f"Unknown callbacks [{name!r}]; choose from {', '.join(CALLBACKS)}.")
    return CALLBACKS[name](layer, qa)
