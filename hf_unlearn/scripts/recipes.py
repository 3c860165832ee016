"""``hf-unlearn recipes``: the configs shipped with hf_unlearn - list them, print one, or copy one to edit.

hf-unlearn recipes                                  # every method config and accelerate config, one line each
hf-unlearn recipes npo_tofu                         # print it
hf-unlearn recipes qlora_own_documents --copy_to my.yaml   # a copy to edit; then: hf-unlearn train --config my.yaml
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .arguments import CommandParser

__all__ = ["RecipesArguments", "main"]


@dataclass
class RecipesArguments:
    """Parameters:
    name: a config to print (or copy); none lists them all.
    copy_to: write a copy of ``name`` here (refused when the file exists).
    """

    name: str | None = field(default=None, metadata={"help": "A config to print or copy (none: list them)."})
    copy_to: str | None = field(default=None, metadata={"help": "Write a copy of the config here, to edit."})


def _summary(path: Path) -> str:
    """A config's first comment line."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    from ..recipes import accelerate_config_names, config_names, resolve_accelerate_config, resolve_config

    parser = CommandParser(
        (RecipesArguments,),
        prog="hf-unlearn recipes",
        description="The configs shipped with hf_unlearn: list, print or copy them.",
        positionals=("name",),
    )
    (a,) = parser.parse_args_and_config(list(sys.argv[1:] if argv is None else argv))
    if a.name is None:
        names = config_names()
        width = max(map(len, names))
        print("Method configs (hf-unlearn train --config NAME):")
        for name in names:
            print(f"  {name:<{width}}  {_summary(resolve_config(name))[:100]}")
        print("\naccelerate configs (hf-unlearn train --accelerate_config NAME):")
        for name in accelerate_config_names():
            print(f"  {name:<{width}}  {_summary(resolve_accelerate_config(name))[:100]}")
        return 0
    if a.name in accelerate_config_names() and a.name not in config_names():
        path = resolve_accelerate_config(a.name)
    else:
        path = resolve_config(a.name)
    if a.copy_to is None:
        print(path.read_text(), end="")
        return 0
    target = Path(a.copy_to)
    if target.exists():
        raise FileExistsError(f"{target} exists; choose another --copy_to (nothing was written).")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    print(f"Wrote {target}; edit it, then run: hf-unlearn train --config {target}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
