"""Rows from wherever a user keeps them, the ``datasets`` way: a Hub dataset id, a local file or a folder.

:func:`load_rows` goes through ``datasets.load_dataset`` as TRL's scripts do (``dataset_name``, ``dataset_config``,
a split). Local files are read by their extension: ``.jsonl``/``.json`` (JSON), ``.csv``, ``.parquet``, ``.arrow``,
and ``.txt``/``.md`` (each file one document, ``{"text": ...}``). A folder is read by ``datasets`` as a whole, except
that files named after the asked split (``forget.jsonl``, ``holdout.parquet`` ...: what ``hf-unlearn data export``
writes) are that split. Errors name the source, what was found and what is accepted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["FILE_TYPES", "as_rows", "load_rows", "source_name"]

# file extension -> datasets builder
FILE_TYPES = {
    ".jsonl": "json",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".txt": "text",
    ".md": "text",
}


def as_rows(data: Any) -> list[dict[str, Any]] | None:
    """Rows given to the Python API as a list of dicts: a ``datasets.Dataset`` or any sequence of mappings (``None``
    stays ``None``). A path is refused with how to load it: the API takes rows, the recipe takes paths."""
    if data is None:
        return None
    if isinstance(data, str | os.PathLike):
        raise ValueError(
            f"Got the path {str(data)!r} where rows are expected: load them first, e.g. "
            "hf_unlearn.data.load_rows(path) or datasets.load_dataset('json', data_files=path)['train']."
        )
    if hasattr(data, "to_list"):  # datasets.Dataset
        return data.to_list()
    return list(data)


def source_name(source: str | os.PathLike[str]) -> str:
    """How a card or a result names a source: a Hub id as it is, a local file or folder by its name only (a path
    says nothing to a reader and may name private folders)."""
    path = Path(source).expanduser()
    return path.name if path.exists() else str(source)


def load_rows(
    source: str | os.PathLike[str] | Any,
    *,
    config: str | None = None,
    split: str = "train",
    revision: str | None = None,
) -> list[dict[str, Any]]:
    """The rows of ``split`` of ``source`` as a list of dicts: a ``datasets.Dataset`` (or list of dicts), a Hub
    dataset id (``config`` = its configuration, ``revision`` a commit), a file or a folder (see the module
    docstring). A single file has one split, ``train``."""
    if hasattr(source, "to_list"):
        return source.to_list()
    if isinstance(source, list | tuple):
        return [dict(r) for r in source]
    import datasets

    text = str(source)
    path = Path(text).expanduser()
    if path.is_file():
        if split != "train":
            raise ValueError(
                f"{path.name} is one file, so it has one split (train), not {split!r}: give the other splits as files "
                "of their own (--retain_path, --holdout_path) or a folder with forget/retain/holdout files."
            )
        return _rows(_load_file(datasets, path), text)
    if path.is_dir():
        return _rows(_load_folder(datasets, path, split), text)
    if path.suffix.lower() in FILE_TYPES or text.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{text} does not exist (it is not a file, a folder or a Hub dataset id).")
    try:
        data = datasets.load_dataset(text, config, split=split, revision=revision)
    except ValueError as err:
        if "split" not in str(err).lower():
            raise
        raise ValueError(
            f"{text}: {err} Pick one of its splits with --forget_split / --retain_split / --holdout_split."
        ) from None
    return _rows(data, text)


def _load_file(datasets: Any, path: Path) -> Any:
    builder = FILE_TYPES.get(path.suffix.lower())
    if builder is None:
        raise ValueError(
            f"Cannot read {path.name}: hf_unlearn reads {', '.join(FILE_TYPES)} files, a folder of them, or a Hub "
            "dataset id."
        )
    kwargs = {"sample_by": "document"} if builder == "text" else {}
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train", **kwargs)
    except (
        Exception
    ) as err:  # datasets wraps parser errors in its own types; say which file, where, and what it expected
        if path.suffix.lower() == ".jsonl":
            _check_json_lines(path)
        raise ValueError(
            f"{path.name} could not be read as {builder} ({type(err).__name__}: {str(err).splitlines()[0][:200]})."
        ) from None


def _check_json_lines(path: Path) -> None:
    """Raise naming the first line of ``path`` that is not a JSON object (what a parser error leaves out)."""
    import json

    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                json.loads(line)
            except ValueError as err:
                raise ValueError(f"{path}, line {number}: not valid JSON ({err}); one JSON object per line.") from None


def _load_folder(datasets: Any, folder: Path, split: str) -> Any:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FILE_TYPES)
    named = [p for p in files if p.stem == split]
    if named:  # forget.jsonl, holdout.parquet ...: the split by its file name (JSON lines first)
        return _load_file(datasets, sorted(named, key=lambda p: list(FILE_TYPES).index(p.suffix.lower()))[0])
    if files and all(FILE_TYPES[p.suffix.lower()] == "text" for p in files):
        if split != "train":
            raise ValueError(f"{folder.name} is a folder of text documents: it has one split, train, not {split!r}.")
        return datasets.load_dataset("text", data_files=[str(p) for p in files], split="train", sample_by="document")
    if not files:
        raise ValueError(
            f"{folder.name} holds no {', '.join(FILE_TYPES)} file; point dataset_name at a file, a folder of them "
            "or a Hub dataset id."
        )
    stems = sorted({p.stem for p in files})
    try:
        return datasets.load_dataset(str(folder), split=split)
    except ValueError as err:
        raise ValueError(
            f"{folder.name} has no split {split!r} ({err}); its files are named {', '.join(stems)}."
        ) from None


def _rows(data: Any, name: str) -> list[dict[str, Any]]:
    rows = data.to_list() if hasattr(data, "to_list") else [dict(r) for r in data]
    if not rows:
        raise ValueError(f"{name} holds no rows.")
    if not isinstance(rows[0], Mapping):
        raise ValueError(f"{name}: rows must be mappings of columns, got {type(rows[0]).__name__}.")
    return rows
