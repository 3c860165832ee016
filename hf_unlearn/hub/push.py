"""Publishing unlearned models and adapters, and loading them back."""

from __future__ import annotations

import fnmatch
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["ALLOWED_FILES", "HubLoginRequiredError", "load_unlearned", "push_unlearned", "sanitize_results"]

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
]


class HubLoginRequiredError(RuntimeError):
    """No Hugging Face token is available for a push."""


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
) -> Any:
    """Create ``repo_id`` (private unless ``private=False``) and upload the allowed files of ``folder``.

    Only top-level files matching :data:`ALLOWED_FILES` go up: intermediate ``checkpoint-*`` folders (less unlearned
    than the final weights) never do. A ``results.json`` is uploaded without its per-item data; the local file is
    left untouched (a later ``--reference-logs`` needs it). Raises :class:`HubLoginRequiredError` (with how to log
    in) when no token is configured.
    """
    from huggingface_hub import HfApi, get_token

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder holding a saved model or adapter.")
    if not (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} holds neither adapter_config.json nor config.json: nothing to push.")
    token = token or get_token()
    if not token:
        raise HubLoginRequiredError(
            "No Hugging Face token found: run `hf auth login` (or set HF_TOKEN), or pass token=... / --token."
        )
    api = api or HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, token=token)
    with tempfile.TemporaryDirectory(prefix="hf_unlearn_push_") as staging:
        for path in _upload_files(folder):
            if path.name == "results.json":
                try:
                    data = json.loads(path.read_text())
                except ValueError as err:
                    raise ValueError(f"{path} is not valid JSON ({err}); fix or remove it before pushing.") from None
                (Path(staging) / path.name).write_text(json.dumps(sanitize_results(data), indent=1) + "\n")
            else:
                os.symlink(path.resolve(), Path(staging) / path.name)  # no copy of the weights
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=staging,
            allow_patterns=ALLOWED_FILES,
            commit_message=commit_message,
            token=token,
        )


def _upload_files(folder: Path) -> list[Path]:
    """The top-level files of ``folder`` that may be published (no subfolder is ever uploaded)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and any(fnmatch.fnmatch(p.name, a) for a in ALLOWED_FILES))


def load_unlearned(repo_or_dir: str | os.PathLike[str], **kwargs: Any):
    """Load what :func:`push_unlearned` published (or a local output folder) as ``(model, tokenizer)``.

    For an adapter, the base model is resolved from ``adapter_config.json`` (or the card's ``base_model``) and loaded
    with :func:`~hf_unlearn.load_model`; the bundled model's Hub id maps to the offline copy.
    """
    from huggingface_hub import ModelCard

    from ..models import is_bundled_model, load_model, load_tokenizer

    path = Path(repo_or_dir)
    if path.is_dir():
        adapter = path / "adapter_config.json"
        card = path / "README.md"
    else:  # a Hub repo: fetch the two small files that say what it is
        from huggingface_hub import hf_hub_download

        try:
            adapter = Path(hf_hub_download(str(repo_or_dir), "adapter_config.json"))
        except Exception:
            adapter = None
        card = None
    if adapter is None or not adapter.is_file():
        return load_model(str(repo_or_dir), **kwargs)
    base = json.loads(adapter.read_text()).get("base_model_name_or_path")
    if not base and card is not None and card.is_file():
        base = ModelCard.load(card).data.base_model
    if not base:
        raise ValueError(f"Cannot tell the base model of {repo_or_dir}: no base_model_name_or_path and no card.")
    local = os.path.isabs(base) or base.startswith((".", "~")) or base.count("/") > 1
    if local and not is_bundled_model(base) and not Path(base).expanduser().is_dir():
        raise FileNotFoundError(
            f"The adapter {repo_or_dir} was trained on a local model, {base}, which is not on this machine. Copy that "
            "folder to this path, or load the base yourself and apply the adapter with "
            "PeftModel.from_pretrained(base_model, adapter_folder)."
        )
    if is_bundled_model(base):
        base = "bundled"  # the offline copy of the same weights
    from peft import PeftModel

    model, tokenizer = load_model(base, **kwargs)
    model = PeftModel.from_pretrained(model, str(repo_or_dir))
    if path.is_dir() and (path / "tokenizer.json").is_file():
        tokenizer = load_tokenizer(path)
    return model, tokenizer
