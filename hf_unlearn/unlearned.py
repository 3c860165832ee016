"""Loading what was unlearned and published, whatever it is: full weights, an adapter on its base, or a routed
continual-unlearning model (:class:`~hf_unlearn.continual.O3Model`), from a local folder or the Hub."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .hub.push import ALLOWED_FILES, O3_FILES, load_saved

__all__ = ["load_unlearned"]


def load_unlearned(repo_or_dir: str | os.PathLike[str], *, revision: str | None = None, **kwargs: Any):
    """Load what :func:`push_unlearned` published (or a local output folder) as ``(model, tokenizer)``.

    For an adapter, the base model is resolved from ``adapter_config.json`` (or the card's ``base_model``) and loaded
    with :func:`~hf_unlearn.load_model`; the bundled model's Hub id maps to the offline copy. A continual-unlearning
    folder (``o3_manifest.json``) loads as a routed :class:`~hf_unlearn.continual.O3Model`.

    A Hub repository is read with one ``snapshot_download`` of the files a push uploads (cached like any Hub
    download), so its file list answers what kind of repository it is. Authentication, network and "not found"
    errors of the Hub surface as ``huggingface_hub`` raises them.
    """
    path = Path(repo_or_dir).expanduser()
    on_hub = not path.is_dir()
    if on_hub:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(str(repo_or_dir), revision=revision, allow_patterns=[*ALLOWED_FILES, *O3_FILES]))
    if (path / O3_FILES[0]).is_file():
        from .continual import O3Model

        o3 = O3Model.from_pretrained(path)
        return o3, o3.tokenizer
    model, tokenizer = load_saved(path, **kwargs)
    if on_hub and not (path / "adapter_config.json").is_file():  # full weights name their repository, as by id
        model.config._name_or_path = model.name_or_path = str(repo_or_dir)
    return model, tokenizer
