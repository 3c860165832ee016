"""Publishing unlearned models and adapters, and loading them back.

Every entry point publishes through :func:`push_unlearned`: the recipe's ``--push_to_hub``, ``trainer.push_to_hub()``
(and ``trainer.save_model()`` with ``push_to_hub=True``), ``hf-unlearn push``, ``O3Model.push_to_hub`` and task-vector
outputs. It creates the repository private unless asked otherwise, uploads the allow-listed files only, and never
modifies the local folder, so a failed push can simply be run again.
"""

from __future__ import annotations

import fnmatch
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "ALLOWED_FILES",
    "O3_FILES",
    "HubLoginRequiredError",
    "HubPushError",
    "feature_bank_detectors",
    "hub_private",
    "load_saved",
    "push_unlearned",
    "require_token",
    "sanitize_results",
]

# Only model, tokenizer, card, plot and aggregate-results files are uploaded: never datasets, per-item evaluation
# logs (they hold forget questions and generated answers), optimizer states or pickles.
ALLOWED_FILES = [
    "*.safetensors",
    "config.json",
    "generation_config.json",
    "adapter_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "README.md",
    "*.png",
    "results.json",
    "hf_unlearn_lineage.json",
]


# An O3Model folder also holds its detectors and lora_A snapshots (safetensors + JSON, never pickle) and its manifest.
O3_FILES = ["o3_manifest.json", "o3/detector_*.safetensors", "o3/detector_*.json", "o3/lora_A_*.safetensors"]


class HubLoginRequiredError(RuntimeError):
    """No Hugging Face token is available for a push."""


class HubPushError(RuntimeError):
    """A push failed after it started (network, permissions, quota). The local folder is complete and unchanged; the
    message says what to run to retry."""


def hub_private(hub_private_repo: bool | None) -> bool:
    """The visibility of a repository hf_unlearn creates: private unless ``hub_private_repo`` is ``False`` exactly
    (transformers' ``None`` means "the account's default", which is usually public)."""
    return hub_private_repo is not False


def require_token(token: str | None = None) -> str:
    """``token`` or the logged-in one; otherwise :class:`HubLoginRequiredError` saying how to log in. No network call:
    the trainers ask it at start-up so that a missing login fails before training, not after it."""
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise HubLoginRequiredError(
            "No Hugging Face token found: run `hf auth login` (or set HF_TOKEN), or pass token=... / --token / "
            "--hub_token."
        )
    return token


def sanitize_results(result: Any) -> dict:
    """Aggregate metrics, details and metadata only: ``per_item`` (forget questions, generations) is dropped."""
    data = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    data.pop("per_item", None)
    return data


def push_unlearned(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool = True,
    token: str | None = None,
    commit_message: str = "Upload unlearned model (hf_unlearn)",
    api: Any = None,
    merge: bool = False,
    base_repo_id: str | None = None,
    revision: str | None = None,
    allow_forget_features: bool = False,
) -> Any:
    """Create ``repo_id`` (private unless ``private=False``) and upload the allowed files of ``folder``.

    Only top-level files matching :data:`ALLOWED_FILES` go up: intermediate ``checkpoint-*`` folders (less unlearned
    than the final weights) never do. A ``results.json`` is uploaded without its per-item data; the local file is
    left untouched (a later ``--reference-logs`` needs it). The card is rewritten for ``repo_id`` (its metadata and
    "How to load it"); the folder itself is never modified. Raises :class:`HubLoginRequiredError` (with how to log
    in) when no token is configured, and :class:`HubPushError` (with the command that retries) when the Hub fails
    midway; ``revision`` is the branch to commit to.

    An adapter trained on a *local* model (a fine-tune that is not on the Hub, like the demo's target) cannot be
    loaded from a repository that holds only the adapter, so one of these is required:

    - ``merge=True``: the adapter merged into its base, uploaded as full weights (recommended: one repository, and
      the pre-unlearning weights are never published);
    - ``base_repo_id``: the base folder is uploaded as a repository of its own (always private: it still holds
      everything the adapter removes), and the adapter's ``base_model_name_or_path`` and the card name it.

    An O3 model whose detectors store per-example features (the hidden states of every forget question, which anyone
    could match candidate questions against) is refused unless ``allow_forget_features=True``
    (``--allow-forget-features``); statistics-only detectors go up as they are.
    """
    from .cards import card_for_push
    from .lineage import is_local_path, read_lineage

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder holding a saved model or adapter.")
    if not (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} holds neither adapter_config.json nor config.json: nothing to push.")
    is_adapter = (folder / "adapter_config.json").is_file()
    base = _read_json(folder / "adapter_config.json").get("base_model_name_or_path") if is_adapter else None
    local_base = bool(base) and is_local_path(base)
    lineage = read_lineage(folder)
    if merge and base_repo_id:
        raise ValueError("Choose one of merge=True (--merge) and base_repo_id (--base_repo), not both.")
    if merge and (folder / O3_FILES[0]).is_file():
        raise ValueError(
            f"{folder} is an O3Model: its routing needs the adapter kept apart from the base, so it cannot be merged. "
            "Push it as is (its base must be on the Hub) or with base_repo_id (--base_repo)."
        )
    if merge and not is_adapter:
        raise ValueError(f"merge=True (--merge) merges an adapter into its base; {folder} already holds full weights.")
    if base_repo_id and not local_base:
        raise ValueError(
            f"base_repo_id (--base_repo) publishes an adapter's local base model; {folder}'s base is "
            f"{base or 'not a local folder'}, so push it without base_repo_id."
        )
    if local_base and not (merge or base_repo_id):
        raise ValueError(
            f"The adapter in {folder} was trained on a local model ({base}), so a repository holding only the adapter "
            "cannot be loaded anywhere else. Pass merge=True (--merge: the merged full weights; the pre-unlearning "
            "model is never published) or base_repo_id='you/name' (--base_repo: the base as a private repository "
            "of its own)."
        )
    banks = feature_bank_detectors(folder)
    if banks and not allow_forget_features:
        raise ValueError(
            f"{folder} is an O3 model whose detectors for {', '.join(banks)} store per-example features: the "
            "hidden states of every forget question. Anyone who downloads them can test a candidate question "
            "against them (a forgotten question matches almost exactly) and try to invert them toward the text. "
            "Re-fit those requests with statistics-only detectors (O3Model.unlearn(..., store_features=False), the "
            "default), or pass allow_forget_features=True (--allow-forget-features) to publish them anyway."
        )
    base_dir = _local_base_dir(folder, base, lineage) if local_base else None  # fails before anything is uploaded
    token = require_token(token)
    from huggingface_hub import HfApi

    api = api or HfApi(token=token)
    from ..models import BUNDLED_HUB_ID, is_bundled_model

    hub_base = BUNDLED_HUB_ID if base and is_bundled_model(base) else base
    if base_repo_id:
        hub_base = base_repo_id
    elif merge or not is_adapter:  # full weights descend from the lineage's Hub root
        hub_base = lineage.get("base") or (None if local_base else hub_base)
    retry = f"hf-unlearn push --output_dir {folder} --hub_model_id {repo_id}"
    retry += " --hub_private_repo false" if not private else ""
    retry += " --allow_forget_features" if banks else ""
    retry += " --merge" if merge else (f" --base_repo {base_repo_id}" if base_repo_id else "")
    with tempfile.TemporaryDirectory(prefix="hf_unlearn_push_") as staging:
        stage = Path(staging)
        # Everything local first (merging, results, configs): a local problem fails before the Hub is touched.
        _stage(folder, stage, is_adapter=is_adapter, merge=merge, base_repo_id=base_repo_id)
        try:
            if base_repo_id:
                _push_base(api, base_dir, base_repo_id, repo_id, read_lineage(base_dir), token)
            url = api.create_repo(repo_id, private=private, exist_ok=True, token=token)
            repo_id = getattr(url, "repo_id", None) or repo_id  # a bare name resolves to the account's namespace
            if (folder / "README.md").is_file():
                card = card_for_push(
                    (folder / "README.md").read_text(), repo_id, hub_base, is_adapter=is_adapter and not merge
                )
                (stage / "README.md").write_text(card)
            return api.upload_folder(
                repo_id=repo_id,
                folder_path=staging,
                allow_patterns=[*ALLOWED_FILES, *O3_FILES],
                commit_message=commit_message,
                token=token,
                revision=revision,
            )
        except Exception as err:
            raise HubPushError(
                f"Pushing {folder} to {repo_id} failed ({type(err).__name__}: {err}). The local folder is complete "
                f"and unchanged; retry with `{retry}`."
            ) from err


def _stage(folder: Path, stage: Path, *, is_adapter: bool, merge: bool, base_repo_id: str | None) -> None:
    """What goes up, except the card (rewritten once the repository's full id is known): the allowed files (weights
    as symlinks, no copy), results without per-item data, the merged weights, or the adapter config pointing at
    ``base_repo_id``."""
    files = _upload_files(folder)
    if merge:
        files = [p for p in files if not p.name.startswith("adapter_")]
        _save_merged(folder, stage)
    for path in files:
        if path.name == "results.json":
            data = _read_json(path)
            (stage / path.name).write_text(json.dumps(sanitize_results(data), indent=1) + "\n")
        elif path.name == "README.md":
            continue
        elif path.name == "adapter_config.json" and base_repo_id:
            config = _read_json(path)
            config["base_model_name_or_path"] = base_repo_id
            (stage / path.name).write_text(json.dumps(config, indent=2) + "\n")
        else:
            rel = path.relative_to(folder)
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            if not (stage / rel).exists():
                os.symlink(path.resolve(), stage / rel)


def feature_bank_detectors(folder: str | os.PathLike[str]) -> list[str]:
    """The requests of an O3 folder whose detector stores per-example features (a ``bank`` tensor); ``[]`` for any
    other folder. Read from the safetensors headers, without loading a tensor."""
    from safetensors import safe_open

    folder = Path(folder)
    if not (folder / O3_FILES[0]).is_file():
        return []
    names = [r.get("name", "?") for r in _read_json(folder / O3_FILES[0]).get("requests", [])]
    found = []
    for i, path in enumerate(sorted((folder / "o3").glob("detector_*.safetensors"))):
        with safe_open(str(path), framework="pt") as fh:
            if "bank" in fh.keys():  # noqa: SIM118 - safe_open is not a mapping
                found.append(names[i] if i < len(names) else path.stem)
    return found


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); fix or remove it before pushing.") from None


def _parent_lineage(lineage: dict) -> dict:
    """The lineage of the model an unlearning run started from (its own step removed)."""
    steps = lineage.get("steps") or []
    if steps and steps[-1].get("kind") == "unlearn":
        steps = steps[:-1]
    return {**lineage, "steps": steps}


def _local_base_dir(adapter: Path | str, base: str, lineage: dict) -> Path:
    """The adapter's local base on this machine: the path it names, else the same folder in this machine's
    hf_unlearn cache (the lineage records where it was made); otherwise a one-line error saying how to get it."""
    from .lineage import describe_lineage, locate_cached

    path = Path(base).expanduser()
    if (path / "config.json").is_file():
        return path
    parent = _parent_lineage(lineage)
    cached = locate_cached(parent)
    if cached is not None:
        return cached
    steps = parent.get("steps") or []
    message = f"The adapter {adapter} was trained on a local model, {base}, which is not on this machine."
    if steps:
        message += f" It is {describe_lineage(parent)}."
    recreate = steps[-1].get("recreate") if steps else None
    if recreate:
        found = " (it is then found in hf_unlearn's cache)" if steps[-1].get("cache") else ""
        message += f" Re-create it with {recreate}{found}, or copy that folder to {base}."
    else:
        message += (
            " Copy that folder to this path, or load the base yourself and apply the adapter with "
            "PeftModel.from_pretrained(base_model, adapter_folder)."
        )
    raise FileNotFoundError(message)


def _save_merged(adapter: Path, out: Path) -> None:
    """The adapter merged into its base, saved as safetensors with the tokenizer."""
    model, tokenizer = load_saved(adapter)
    merged = model.merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _push_base(api: Any, base_dir: Path, base_repo_id: str, adapter_repo: str, lineage: dict, token: str) -> None:
    """Upload an adapter's local base as its own private repository, with a card that says what it is."""
    from huggingface_hub import ModelCard, ModelCardData

    from .lineage import describe_lineage

    api.create_repo(base_repo_id, private=True, exist_ok=True, token=token)
    root = lineage.get("base")
    data = ModelCardData(
        base_model=root,
        base_model_relation="finetune" if root else None,
        library_name="transformers",
        tags=["hf_unlearn"],
    )
    text = (
        f"# {base_repo_id.split('/')[-1]}\n\nThe base model of the unlearned adapter "
        f"[{adapter_repo}](https://huggingface.co/{adapter_repo}): {describe_lineage(lineage)}.\n\n"
        "It is the model *before* unlearning: it still holds everything the adapter removes, so this repository was "
        "created private. Make it public only if that content may be public.\n"
    )
    with tempfile.TemporaryDirectory(prefix="hf_unlearn_push_base_") as staging:
        stage = Path(staging)
        for path in _upload_files(base_dir):
            if path.name not in ("README.md", "results.json"):
                os.symlink(path.resolve(), stage / path.name)
        (stage / "README.md").write_text(str(ModelCard(f"---\n{data.to_yaml()}\n---\n{text}")))
        api.upload_folder(
            repo_id=base_repo_id,
            folder_path=staging,
            allow_patterns=ALLOWED_FILES,
            commit_message=f"Base model of {adapter_repo} (hf_unlearn)",
            token=token,
        )


def _upload_files(folder: Path) -> list[Path]:
    """The top-level files of ``folder`` that may be published (no other subfolder than an O3Model's ``o3/``)."""
    files = [p for p in folder.iterdir() if p.is_file() and any(fnmatch.fnmatch(p.name, a) for a in ALLOWED_FILES)]
    if (folder / O3_FILES[0]).is_file():
        files += [
            p
            for p in folder.rglob("*")
            if p.is_file() and any(fnmatch.fnmatch(p.relative_to(folder).as_posix(), a) for a in O3_FILES)
        ]
    return sorted(set(files))


def load_saved(folder: str | os.PathLike[str], **kwargs: Any):
    """``(model, tokenizer)`` of a local folder of full weights, or of an adapter on the base it names (found where
    the adapter config names it, in this machine's hf_unlearn cache, or on the Hub); ``kwargs`` go to
    :func:`~hf_unlearn.load_model`."""
    from huggingface_hub import ModelCard

    from ..models import is_bundled_model, load_model, load_tokenizer

    path = Path(folder)
    adapter, card = path / "adapter_config.json", path / "README.md"
    if not adapter.is_file():
        return load_model(str(path), **kwargs)
    base = _read_json(adapter).get("base_model_name_or_path")
    if not base and card.is_file():
        base = ModelCard.load(card).data.base_model
    if not base:
        raise ValueError(f"Cannot tell the base model of {folder}: no base_model_name_or_path and no card.")
    from .lineage import is_local_path, read_lineage

    if is_local_path(base):  # found where the adapter names it or in this machine's cache, else says how to get it
        base = str(_local_base_dir(folder, base, read_lineage(path)))
    if is_bundled_model(base):
        base = "bundled"  # the offline copy of the same weights
    from peft import PeftModel

    model, tokenizer = load_model(base, **kwargs)
    model = PeftModel.from_pretrained(model, str(path))
    if (path / "tokenizer.json").is_file():
        tokenizer = load_tokenizer(path)
    return model, tokenizer
