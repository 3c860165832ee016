"""``hf-unlearn train`` through ``accelerate launch``, as ``trl <command>`` does.

``--accelerate_config NAME_OR_PATH`` becomes ``accelerate launch --config_file <file>`` (a name is one of the configs
shipped in :mod:`hf_unlearn.recipes`: single_gpu, multi_gpu, fsdp2, zero3, multi_cpu); the options of the command line
that the recipe does not know and ``accelerate launch`` does (``--num_processes 4``, ``--main_process_port``, ...)
go to the launcher; the rest goes to the recipe in every process. A process that already runs under a launcher
(accelerate, torchrun, or this module) runs the recipe in place instead of launching again.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cache

__all__ = ["launch", "pop_accelerate_config", "under_launcher", "unknown_to_accelerate"]

_MARKER = "HF_UNLEARN_LAUNCHED"


def pop_accelerate_config(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """``(value of --accelerate_config, argv without it)``; ``--accelerate_config=X`` works too."""
    out: list[str] = []
    value = None
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in ("--accelerate_config", "--accelerate-config"):
            if i + 1 >= len(tokens):
                raise ValueError(
                    "--accelerate_config needs a value: single_gpu, multi_gpu, fsdp2, zero3, multi_cpu or a file."
                )
            value, i = tokens[i + 1], i + 2
        elif token.startswith(("--accelerate_config=", "--accelerate-config=")):
            value, i = token.split("=", 1)[1], i + 1
        else:
            out.append(token)
            i += 1
    return value, out


def under_launcher() -> bool:
    """Whether this process was started by a launcher (this module, ``accelerate launch`` or ``torchrun``)."""
    return any(os.environ.get(k) for k in (_MARKER, "LOCAL_RANK", "ACCELERATE_MIXED_PRECISION"))


@cache
def _accelerate_options() -> frozenset[str]:
    from accelerate.commands.launch import launch_command_parser

    return frozenset(s for action in launch_command_parser()._actions for s in action.option_strings)


def unknown_to_accelerate(tokens: Sequence[str]) -> list[str]:
    """The options among ``tokens`` (left over by the recipe's parser) that ``accelerate launch`` does not take."""
    return [t for t in tokens if t.startswith("-") and t.split("=", 1)[0] not in _accelerate_options()]


def _without(argv: Sequence[str], taken: Sequence[str]) -> list[str]:
    """``argv`` less ``taken``, an ordered subsequence of it (the launcher's tokens)."""
    out, k = [], 0
    for token in argv:
        if k < len(taken) and token == taken[k]:
            k += 1
        else:
            out.append(token)
    return out


def launch(
    argv: Sequence[str], from_config: Sequence[str], from_flags: Sequence[str], accelerate_config: str | None
) -> int:
    """Run the recipe under ``accelerate launch --config_file <accelerate_config> [launcher options]``; its exit
    code. ``from_config`` and ``from_flags`` are the launcher's options found in the YAML and on the command line
    (``argv``, which each process receives without them; the YAML's stay in the file, where a launched process
    ignores them)."""
    import subprocess

    from accelerate.commands.launch import launch_command, launch_command_parser

    from ..recipes import resolve_accelerate_config

    prefix = ["--config_file", str(resolve_accelerate_config(accelerate_config))] if accelerate_config else []
    # Each process runs the recipe as a module (`python -m`), so the scripts folder never shadows top-level modules.
    script = ["--module", "hf_unlearn.scripts.unlearn"]
    launcher = [*prefix, *from_config, *from_flags]
    args = launch_command_parser().parse_args([*launcher, *script, *_without(argv, from_flags)])
    os.environ[_MARKER] = "1"  # the launched processes inherit it: they run the recipe, they do not launch again
    try:
        launch_command(args)
    except subprocess.CalledProcessError as err:  # the single-process launcher; the message came from the process
        return err.returncode or 1
    finally:
        os.environ.pop(_MARKER, None)
    return 0
