"""What every ``hf-unlearn`` command shares: one parser (TRL's ``TrlParser``: dataclasses, a YAML ``--config``, flags
that override it) and the argument groups that mean the same thing in every command, spelled as TRL and transformers
spell them (``model_name_or_path``, ``output_dir``, ``dataset_name``, ``dataset_config``, ``*_split``,
``per_device_eval_batch_size``, ``max_new_tokens``, ``seed``, ``report_to``).

Every field also answers to its dashed spelling (``--max-new-tokens``), as in transformers. The spellings of
hf_unlearn 0.1 that changed (``--model``, ``--output``, ``--batch-size``, ``--dataset``, ...) keep working, in flags and
in YAML files, until hf_unlearn 0.3, with a ``FutureWarning`` naming the new one (:class:`Renamed`).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trl import TrlParser

__all__ = [
    "BenchmarkArguments",
    "CommandParser",
    "DataArguments",
    "Renamed",
    "split_config_flag",
]

_DROP = object()  # a converter's answer for "the old value means: leave the new field unset"


@dataclass(frozen=True)
class Renamed:
    """An old spelling of a field: ``--old VALUE`` (or ``old: VALUE`` in YAML) becomes ``--new convert(VALUE)``.

    ``new=None`` drops the option (it has no counterpart); ``flag=True`` marks an old switch without a value
    (``--public``), whose ``convert`` receives ``True``.
    """

    new: str | None
    convert: Callable[[Any], Any] | None = None
    flag: bool = False
    note: str = ""
    instead: str | None = None  # what the warning tells users to write, when not simply the new name


def _cli_value(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def split_config_flag(argv: Sequence[str]) -> list[str]:
    """``--config=PATH`` as two tokens (TRL's parser looks for ``--config`` alone)."""
    out: list[str] = []
    for token in argv:
        if token.startswith("--config="):
            out += ["--config", token.split("=", 1)[1]]
        else:
            out.append(token)
    return out


class CommandParser(TrlParser):
    """``TrlParser`` for one ``hf-unlearn`` command, plus:

    * ``--config NAME`` resolves a config shipped with the package (:mod:`hf_unlearn.recipes`) as well as a file, and
      ``--config=PATH`` works;
    * old spellings (``renamed``) are rewritten, in flags and YAML keys alike, with a ``FutureWarning``;
    * no prefix matching (``--eval`` is not ``--evaluate``).
    """

    def __init__(
        self,
        dataclass_types: Any,
        *,
        prog: str | None = None,
        description: str | None = None,
        renamed: Mapping[str, Renamed] | None = None,
        positionals: Sequence[str] = (),
        epilog: str | None = None,
    ) -> None:
        super().__init__(
            dataclass_types,
            prog=prog,
            description=description,
            epilog=epilog,
            allow_abbrev=False,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        self.renamed = dict(renamed or {})
        self.positionals = tuple(positionals)
        if positionals:
            self.usage = f"{prog or '%(prog)s'} {' '.join(p.upper() for p in positionals)} [--option value ...]"

    # ------------------------------------------------------------------------------------------------ renames

    def _warn(self, old: str, rule: Renamed, where: str) -> None:
        target = "nothing (drop it)" if not rule.new else f"{rule.new}:" if where else f"--{rule.new}"
        target = rule.instead or target
        note = f" {rule.note}" if rule.note else ""
        warnings.warn(
            f"{where}{old} is deprecated: use {target}.{note} The old spelling works until hf_unlearn 0.3.",
            FutureWarning,
            stacklevel=4,
        )

    def _rule(self, name: str) -> tuple[str, Renamed] | None:
        key = name.replace("-", "_")
        return (key, self.renamed[key]) if key in self.renamed else None

    def rename_flags(self, argv: Sequence[str]) -> list[str]:
        """The command line with old spellings replaced (values converted)."""
        out: list[str] = []
        tokens = list(argv)
        i = 0
        while i < len(tokens):
            token = tokens[i]
            found = self._rule(token[2:].split("=", 1)[0]) if token.startswith("--") else None
            if found is None:
                out.append(token)
                i += 1
                continue
            _, rule = found
            self._warn(f"--{token[2:].split('=', 1)[0]}", rule, "")
            if rule.flag:
                values, i = [True], i + 1
            elif "=" in token:
                values, i = [token.split("=", 1)[1]], i + 1
            else:
                j = i + 1
                while j < len(tokens) and not tokens[j].startswith("--"):
                    j += 1
                values, i = tokens[i + 1 : j], j
            value: Any = values[0] if len(values) == 1 else values
            if rule.convert is not None:
                value = rule.convert(value)
            if rule.new is not None and value is not _DROP:
                out += [f"--{rule.new}", *_cli_value(value)]
        return out

    def rename_keys(self, config: Mapping[str, Any], source: str) -> dict[str, Any]:
        """A YAML mapping with old keys replaced (values converted)."""
        out: dict[str, Any] = {}
        for key, value in config.items():
            found = self._rule(str(key))
            if found is None:
                out[str(key).replace("-", "_")] = value
                continue
            old, rule = found
            self._warn(f"{old}:", rule, f"{source}: ")  # "file: old: is deprecated: use new:"
            if rule.convert is not None:
                value = rule.convert(value)
            if rule.new is not None and value is not _DROP:
                out[rule.new] = value
        return out

    def _positionals_as_flags(self, argv: list[str]) -> list[str]:
        """``cmd A B --x 1`` as ``cmd --a A --b B --x 1`` for the commands that take positionals."""
        head: list[str] = []
        while argv and not argv[0].startswith("-") and len(head) // 2 < len(self.positionals):
            head += [f"--{self.positionals[len(head) // 2]}", argv.pop(0)]
        return head + argv

    # ------------------------------------------------------------------------------------------------ parsing

    def parse_args_and_config(
        self,
        args: Iterable[str] | None = None,
        return_remaining_strings: bool = False,
        fail_with_unknown_args: bool = True,
        separate_remaining_strings: bool = False,
    ) -> tuple[Any, ...]:
        """TRL's ``parse_args_and_config``, with the config resolved by name and old spellings rewritten."""
        import yaml

        from ..recipes import resolve_config

        argv = split_config_flag(sys.argv[1:] if args is None else list(args))
        argv = self._positionals_as_flags(argv)
        config: dict[str, Any] = {}
        if "--config" in argv:
            at = argv.index("--config")
            if at + 1 >= len(argv):
                raise ValueError("--config needs a value: a config name (hf-unlearn recipes) or a YAML file.")
            path = resolve_config(argv[at + 1])
            del argv[at : at + 2]
            with open(path) as fh:
                try:
                    loaded = yaml.safe_load(fh) or {}
                except yaml.YAMLError as err:
                    raise ValueError(f"{path} is not valid YAML: {err}".replace("\n", " ")) from None
            if not isinstance(loaded, dict):
                raise ValueError(f"{path} must hold a mapping of options (key: value lines).")
            env = loaded.pop("env", {}) or {}
            if not isinstance(env, dict):
                raise ValueError(f"{path}: `env` must be a mapping of environment variables.")
            for key, value in env.items():
                os.environ[str(key)] = str(value)
            config = self.rename_keys(loaded, str(path))
        argv = self.rename_flags(argv)
        config_remaining = self.set_defaults_with_config(**config) if config else []
        output = self.parse_args_into_dataclasses(args=argv, return_remaining_strings=return_remaining_strings)
        if return_remaining_strings:
            *parsed, remaining = output
            if separate_remaining_strings:
                return (*parsed, config_remaining, remaining)
            return (*parsed, config_remaining + remaining)
        if fail_with_unknown_args and config_remaining:
            unknown = sorted(k[2:] for k in config_remaining if k.startswith("--"))
            raise ValueError(f"--config: unknown options {', '.join(unknown)} (see --help for this command's options).")
        return output


def dropped(_: Any) -> Any:
    """A :class:`Renamed` converter: the old value has no counterpart in the new spelling (leave the field unset)."""
    return _DROP


# --------------------------------------------------------------------------------------------- shared argument groups


@dataclass
class BenchmarkArguments:
    """The built-in benchmark (fictitious-authors): the same arguments build the same bytes in every command.

    Parameters:
        num_authors: authors generated.
        qa_per_author: facts asked per author (at most 12).
        forget_fraction: share of the authors that form the forget set.
        holdout_fraction: share of the authors never trained on (the holdout).
        benchmark_seed: the generator's seed (same seed, same benchmark).
    """

    num_authors: int = field(default=100, metadata={"help": "Built-in benchmark: authors."})
    qa_per_author: int = field(default=10, metadata={"help": "Built-in benchmark: facts asked per author (max 12)."})
    forget_fraction: float = field(default=0.1, metadata={"help": "Built-in benchmark: share of forget authors."})
    holdout_fraction: float = field(
        default=0.1, metadata={"help": "Built-in benchmark: share of never-trained (holdout) authors."}
    )
    benchmark_seed: int = field(default=0, metadata={"help": "Built-in benchmark: generator seed."})

    def benchmark_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`hf_unlearn.build_fictitious_authors`."""
        return {
            "num_authors": self.num_authors,
            "qa_per_author": self.qa_per_author,
            "forget_fraction": self.forget_fraction,
            "holdout_fraction": self.holdout_fraction,
            "seed": self.benchmark_seed,
        }


@dataclass
class DataArguments:
    """Which data: a built-in name or your own (a Hub dataset id, a file or a folder), as TRL's scripts name it.

    Parameters:
        dataset_name: ``fictitious-authors`` (built in, offline), ``tofu`` (``locuslab/TOFU``), ``muse-news`` /
            ``muse-books`` (MUSE), ``wmdp`` (evaluation only); or your data: a Hub dataset id, a local file
            (``.jsonl``, ``.json``, ``.csv``, ``.parquet``, ``.arrow``, ``.txt``) or a folder, read with
            ``datasets.load_dataset``, in any TRL format (``text``, prompt/completion, ``messages``) or QA.
        dataset_config: ``dataset_name``'s configuration (``name`` of ``datasets.load_dataset``).
        forget_split, retain_split, holdout_split: its splits (a file has one split, ``train``).
        forget_path, retain_path, holdout_path: files, folders or Hub ids of their own, alone or beside
            ``dataset_name`` (e.g. a holdout file beside a Hub dataset).
        tofu_split: TOFU's forget split (``forget01``, ``forget05``, ``forget10``) with ``dataset_name=tofu``.
    """

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "fictitious-authors (built in), tofu, muse-news, muse-books, or your data: a Hub dataset id, a "
            "file or a folder."
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "dataset_name's configuration."})
    forget_split: str = field(default="train", metadata={"help": "dataset_name's split to unlearn."})
    retain_split: str | None = field(default=None, metadata={"help": "dataset_name's split to keep."})
    holdout_split: str | None = field(
        default=None, metadata={"help": "dataset_name's split of text the model never saw."}
    )
    forget_path: str | None = field(default=None, metadata={"help": "Forget rows: a file, folder or Hub id."})
    retain_path: str | None = field(default=None, metadata={"help": "Retain rows: a file, folder or Hub id."})
    holdout_path: str | None = field(
        default=None, metadata={"help": "Holdout rows (text the model never saw): a file, folder or Hub id."}
    )
    tofu_split: str = field(
        default="forget10",
        metadata={"help": "TOFU forget split (dataset_name=tofu).", "choices": ["forget01", "forget05", "forget10"]},
    )


def tofu_split_of(value: Any) -> str:
    """Old ``--tofu-forget 10`` as ``forget10``."""
    text = str(value)
    return text if text.startswith("forget") else f"forget{int(text):02d}"


# The old spellings of the benchmark's seed: before 0.2, `--seed` of eval, task-vector and data export meant the
# benchmark's seed; it is now `benchmark_seed` everywhere (the recipe's `seed` is the training seed, as in TRL).
BENCHMARK_RENAMES = {"seed": Renamed("benchmark_seed", note="(--seed was the built-in benchmark's seed here.)")}
