"""The recipes shipped inside the package, so that ``pip install hf-unlearn`` users have them too.

* **Method configs** (``configs/<name>.yaml``): ``hf-unlearn train --config npo_tofu`` (a name) or ``--config my.yaml``
  (a file; a copy of a shipped one is the usual start: ``hf-unlearn recipes copy npo_tofu my.yaml``).
* **accelerate configs** (``accelerate/<name>.yaml``): ``hf-unlearn train --accelerate_config zero3 ...`` launches
  through ``accelerate launch --config_file <that file>``, as ``trl <command> --accelerate_config`` does.

A file path always wins over a name; a name that is neither says which names exist.
"""

from __future__ import annotations

import logging
import warnings
from importlib import resources
from pathlib import Path

__all__ = [
    "accelerate_config_names",
    "config_names",
    "resolve_accelerate_config",
    "resolve_config",
]

logger = logging.getLogger(__name__)

# The layout of hf_unlearn <= 0.1 (recipes/configs/<suite>/<method>.yaml in the repository), for one release.
_OLD_LAYOUT = {
    "demo": "demo",
    "quickstart/qlora_own_documents": "qlora_own_documents",
    "o3/o3": "o3",
    "rtofu/reasoned_idk": "reasoned_idk",
    "task_arithmetic/sta": "sta_tofu",
    "task_arithmetic/task_vector": "task_vector_tofu",
    "wmdp/rmu": "rmu_wmdp",
    **{f"muse/{m}": f"{m}_muse_news" for m in ("grad_diff", "npo", "simnpo")},
    **{
        f"tofu/{m}": f"{m}_tofu"
        for m in (
            "ceu",
            "grad_ascent",
            "grad_diff",
            "idk_dpo",
            "idk_sft",
            "npo",
            "pdu",
            "satimp",
            "simnpo",
            "undial",
            "wga",
        )
    },
}


def _folder(kind: str) -> Path:
    return Path(str(resources.files(__name__).joinpath(kind)))


def config_names() -> list[str]:
    """The method configs shipped with hf_unlearn (``hf-unlearn train --config NAME``)."""
    return sorted(p.stem for p in _folder("configs").glob("*.yaml"))


def accelerate_config_names() -> list[str]:
    """The accelerate configs shipped with hf_unlearn (``--accelerate_config NAME``)."""
    return sorted(p.stem for p in _folder("accelerate").glob("*.yaml"))


def _old_name(value: str) -> str | None:
    """``recipes/configs/tofu/npo.yaml`` (the repository layout before the recipes moved into the package)."""
    key = value.replace("\\", "/").removesuffix(".yaml")
    key = key.split("recipes/configs/", 1)[-1]
    return _OLD_LAYOUT.get(key)


def resolve_config(name_or_path: str | Path) -> Path:
    """The YAML file behind ``--config``: an existing file as given, else a shipped config by name (with or without
    ``.yaml``), else a path of the old repository layout (with a deprecation warning)."""
    value = str(name_or_path)
    if Path(value).is_file():
        return Path(value)
    stem = value.removesuffix(".yaml")
    candidate = _folder("configs") / f"{stem}.yaml"
    if "/" not in stem and candidate.is_file():
        return candidate
    old = _old_name(value)
    if old is not None:
        message = (
            f"--config {value}: the recipes now ship inside the package; use --config {old} (this path keeps working "
            "for one release)."
        )
        warnings.warn(message, FutureWarning, stacklevel=2)
        logger.warning(message)
        return _folder("configs") / f"{old}.yaml"
    raise FileNotFoundError(
        f"--config {value} is neither a file nor a config shipped with hf_unlearn. Shipped configs: "
        f"{', '.join(config_names())} (`hf-unlearn recipes` lists them)."
    )


def resolve_accelerate_config(name_or_path: str | Path) -> Path:
    """The accelerate config file behind ``--accelerate_config``: a file as given, else a shipped one by name."""
    value = str(name_or_path)
    if Path(value).is_file():
        return Path(value)
    candidate = _folder("accelerate") / f"{value.removesuffix('.yaml')}.yaml"
    if candidate.is_file():
        return candidate
    raise FileNotFoundError(
        f"--accelerate_config {value} is neither a file nor an accelerate config shipped with hf_unlearn: "
        f"{', '.join(accelerate_config_names())}."
    )
