"""LoRA task vectors: an adapter's update ``scaling * B @ A``, negated or merged without materialising a model.

A LoRA fine-tune's task vector is ``tau = scaling * B A`` per adapted weight. Negating it means negating ``B`` only
(or only ``A``): negating both leaves ``B A`` unchanged, a classic bug. :func:`negate_lora_adapter` writes such an
adapter (usable with PEFT on the same base), :func:`merge_lora` streams ``theta_base + scale * tau`` into a full model
folder, and :func:`lora_task_vector` returns ``tau`` as a :class:`~hf_unlearn.task_arithmetic.TaskVector`.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import torch

from .checkpoint import Checkpoint
from .vector import TaskVector, stream_checkpoint

__all__ = ["lora_task_vector", "merge_lora", "negate_lora_adapter"]

_PREFIX = "base_model.model."


def _config(adapter_dir: Path) -> dict[str, Any]:
    path = adapter_dir / "adapter_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{adapter_dir} has no adapter_config.json: it is not a PEFT adapter folder.")
    config = json.loads(path.read_text())
    if config.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{adapter_dir} is a {config['peft_type']} adapter; only LoRA adapters are supported.")
    if config.get("use_dora"):
        raise ValueError(f"{adapter_dir} is a DoRA adapter: its update is not B @ A, so it cannot be negated this way.")
    return config


def _pattern_value(module: str, pattern: dict[str, Any], default: Any) -> Any:
    """PEFT's rank_pattern / alpha_pattern lookup: a key matches a module name by its suffix (regex)."""
    for key, value in pattern.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def _scaling(config: dict[str, Any], module: str) -> float:
    r = _pattern_value(module, config.get("rank_pattern") or {}, config["r"])
    alpha = _pattern_value(module, config.get("alpha_pattern") or {}, config["lora_alpha"])
    return alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r


def _pairs(adapter: Checkpoint) -> dict[str, tuple[str, str]]:
    """Base weight key -> (lora_A key, lora_B key)."""
    pairs: dict[str, tuple[str, str]] = {}
    for key in adapter:
        if ".lora_A." in key:
            module = key.split(".lora_A.")[0]
            b_key = key.replace(".lora_A.", ".lora_B.")
            if b_key not in adapter:
                raise ValueError(f"The adapter has {key} but no {b_key}.")
            pairs[module.removeprefix(_PREFIX) + ".weight"] = (key, b_key)
        elif ".lora_B." not in key:
            raise ValueError(
                f"The adapter holds {key}, which is not a LoRA factor (modules_to_save or biases are not supported)."
            )
    if not pairs:
        raise ValueError("The adapter holds no lora_A/lora_B weights.")
    return pairs


def lora_task_vector(adapter_dir: str | Path) -> TaskVector:
    """``tau = scaling * B @ A`` for every adapted weight of a LoRA adapter folder (float32), keyed by base weight
    name (``fan_in_fan_out`` adapters are transposed back)."""
    adapter_dir = Path(adapter_dir)
    config = _config(adapter_dir)
    adapter = Checkpoint(adapter_dir, weights="adapter_model")
    deltas = {}
    for weight, (a_key, b_key) in _pairs(adapter).items():
        module = weight.removesuffix(".weight")
        delta = _scaling(config, module) * (adapter.get(b_key).float() @ adapter.get(a_key).float())
        deltas[weight] = delta.T if config.get("fan_in_fan_out") else delta
    return TaskVector(deltas)


def negate_lora_adapter(
    adapter_dir: str | Path, output_dir: str | Path, *, scale: float = 1.0, overwrite: bool = False
) -> Path:
    """Write an adapter whose update is ``-scale * tau``: every ``lora_B`` multiplied by ``-scale``, ``lora_A``
    unchanged. Loaded on the same base with PEFT it gives ``theta_base - scale * tau``."""
    adapter_dir = Path(adapter_dir)
    _config(adapter_dir)
    _pairs(Checkpoint(adapter_dir, weights="adapter_model"))  # validates the content

    def transform(key: str, t: torch.Tensor) -> torch.Tensor | None:
        return t.mul_(-scale) if ".lora_B." in key else None

    record = {"formula": "lora_B <- -scale * lora_B", "adapter": str(adapter_dir), "scale": scale}
    return stream_checkpoint(
        adapter_dir, output_dir, transform, record=record, overwrite=overwrite, weights="adapter_model"
    )


def merge_lora(
    base_dir: str | Path,
    adapter_dir: str | Path,
    output_dir: str | Path,
    *,
    scale: float = 1.0,
    overwrite: bool = False,
) -> Path:
    """Stream ``theta_base + scale * tau_adapter`` into a full model folder (``scale=-1``: the negated adapter
    merged). Refuses an adapter whose shapes do not fit ``base_dir`` (trained on another base)."""
    base_dir, adapter_dir = Path(base_dir), Path(adapter_dir)
    tau = lora_task_vector(adapter_dir)
    base = Checkpoint(base_dir)
    for weight, delta in tau.items():
        if weight not in base:
            raise ValueError(
                f"The adapter in {adapter_dir} adapts {weight}, which {base_dir} does not have: it was "
                "trained on another base model."
            )
        if base.shape(weight) != tuple(delta.shape):
            raise ValueError(
                f"The adapter in {adapter_dir} does not fit {base_dir} ({weight}: {tuple(delta.shape)} vs "
                f"{base.shape(weight)}): it was trained on another base model."
            )

    def transform(key: str, t: torch.Tensor) -> torch.Tensor | None:
        return t + scale * tau[key] if key in tau else None

    record = {
        "formula": "theta_base + scale * scaling * B @ A",
        "base": str(base_dir),
        "adapter": str(adapter_dir),
        "scale": scale,
    }
    return stream_checkpoint(base_dir, output_dir, transform, inputs=[adapter_dir], record=record, overwrite=overwrite)
