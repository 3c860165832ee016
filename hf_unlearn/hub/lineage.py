"""Where a model came from: the Hub model at the root and every fine-tune and unlearning step since.

An unlearned adapter is often trained on a local fine-tune (the demo's target model lives in hf_unlearn's cache).
Its ``adapter_config.json`` then names an absolute path that means nothing on another machine. The lineage file
(``hf_unlearn_lineage.json``, written next to the weights by :func:`~hf_unlearn.trainers.finetune.finetune` and by
every hf_unlearn trainer's ``save_model``) records the chain without absolute paths, so that the card can name the
real Hub base, :func:`~hf_unlearn.hub.push_unlearned` can publish what the adapter needs, and
:func:`~hf_unlearn.load_unlearned` can find a cached base again or say how to re-create it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..models import BUNDLED_HUB_ID, cache_root, is_bundled_model

__all__ = [
    "LINEAGE_FILE",
    "cache_relative",
    "describe_lineage",
    "extend_lineage",
    "is_local_path",
    "locate_cached",
    "read_lineage",
    "write_lineage",
]

LINEAGE_FILE = "hf_unlearn_lineage.json"
_FORMAT = 1


def is_local_path(name_or_path: str | os.PathLike[str]) -> bool:
    """Whether ``name_or_path`` names a folder on disk rather than a Hub repository id (``owner/name``)."""
    text = str(name_or_path)
    if is_bundled_model(text):
        return False
    return os.path.isabs(text) or text.startswith((".", "~")) or text.count("/") > 1 or Path(text).is_dir()


def read_lineage(name_or_path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The lineage of a model: ``{"base": <Hub id at the root or None>, "steps": [...]}``.

    A Hub id (or the bundled model) is its own root with no steps; a local folder without a lineage file has an
    unknown root.
    """
    if not name_or_path:
        return {"format": _FORMAT, "base": None, "steps": []}
    text = str(name_or_path)
    if is_bundled_model(text):
        return {"format": _FORMAT, "base": BUNDLED_HUB_ID, "steps": []}
    path = Path(text).expanduser()
    if (path / LINEAGE_FILE).is_file():
        try:
            data = json.loads((path / LINEAGE_FILE).read_text())
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("steps"), list):
            return {"format": _FORMAT, "base": data.get("base"), "steps": list(data["steps"])}
    if is_local_path(text):
        return {"format": _FORMAT, "base": None, "steps": []}
    return {"format": _FORMAT, "base": text, "steps": []}


def extend_lineage(parent: str | os.PathLike[str] | None, step: Mapping[str, Any]) -> dict[str, Any]:
    """``parent``'s lineage plus ``step``. A step made in hf_unlearn's cache records its place there (relative to
    the cache root) under ``cache``, never an absolute path."""
    lineage = read_lineage(parent)
    return {**lineage, "steps": [*lineage["steps"], {k: v for k, v in step.items() if v is not None}]}


def cache_relative(path: str | os.PathLike[str]) -> str | None:
    """``path`` relative to hf_unlearn's cache root, or ``None`` outside it."""
    try:
        return Path(path).expanduser().resolve().relative_to(cache_root().resolve()).as_posix()
    except ValueError:
        return None


def write_lineage(folder: str | os.PathLike[str], lineage: Mapping[str, Any]) -> Path:
    out = Path(folder) / LINEAGE_FILE
    out.write_text(json.dumps(dict(lineage), indent=1) + "\n")
    return out


def locate_cached(lineage: Mapping[str, Any]) -> Path | None:
    """The folder of the lineage's last step on *this* machine when that step was made in hf_unlearn's cache and the
    cache holds it (the same settings give the same cache path on every machine)."""
    steps = lineage.get("steps") or []
    if not steps or not steps[-1].get("cache"):
        return None
    path = cache_root() / steps[-1]["cache"]
    return path if (path / "config.json").is_file() else None


def describe_lineage(lineage: Mapping[str, Any]) -> str:
    """One line: ``HuggingFaceTB/SmolLM2-135M-Instruct -> fine-tune (...) -> unlearn (NPO, LoRA adapter)``."""
    parts = [f"`{lineage['base']}`" if lineage.get("base") else "an unknown model"]
    for step in lineage.get("steps") or []:
        extra = [str(step[k]) for k in ("method", "data") if step.get(k)]
        if step.get("epochs") is not None:
            extra.append(f"{step['epochs']:g} epochs")
        if step.get("adapter"):
            extra.append("LoRA adapter")
        parts.append(f"{step.get('kind', 'step')} ({', '.join(extra)})" if extra else str(step.get("kind", "step")))
    return " → ".join(parts)
