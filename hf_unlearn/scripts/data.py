"""``hf-unlearn data export``: write the built-in benchmark (fictitious-authors) as files, one per split (forget,
retain, holdout, general_knowledge, the MCQ sets, ...), to train or evaluate with other tools.

    hf-unlearn data export outputs/fictitious-authors --format both
    hf-unlearn data export --output_dir /tmp/fa --num_authors 20 --qa_per_author 8 --benchmark_seed 1
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from .arguments import BENCHMARK_RENAMES, BenchmarkArguments, CommandParser

__all__ = ["DataExportArguments", "main", "make_parser"]


@dataclass
class DataExportArguments(BenchmarkArguments):
    """Where and how to write the benchmark.

    Parameters:
        output_dir: the folder (refused when not empty, unless ``overwrite``).
        format: ``json`` (JSON lines), ``parquet`` or ``both``.
        overwrite: replace an earlier export in ``output_dir``.
    """

    output_dir: str | None = field(default=None, metadata={"help": "Output folder (refused if not empty)."})
    format: str = field(default="json", metadata={"help": "File format.", "choices": ["json", "parquet", "both"]})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing export."})


def make_parser(prog: str = "hf-unlearn data export") -> CommandParser:
    return CommandParser(
        (DataExportArguments,),
        prog=prog,
        description="Write the built-in benchmark (fictitious-authors), one file per split.",
        renamed=BENCHMARK_RENAMES,
        positionals=("output_dir",),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``hf-unlearn data export ...`` (``argv`` starts after ``data``)."""
    from ..data.fictitious_authors import build_fictitious_authors

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: hf-unlearn data export OUTPUT_DIR [--option value ...]\n\n" + (__doc__ or "").split("\n\n")[0])
        return 0 if argv else 2
    if argv[0] != "export":
        print(f"hf-unlearn data: unknown action {argv[0]!r}; the action is: export", file=sys.stderr)
        return 2
    parser = make_parser()
    (a,) = parser.parse_args_and_config(argv[1:])
    if not a.output_dir:
        parser.error("the following arguments are required: OUTPUT_DIR (or --output_dir)")
    bench = build_fictitious_authors(**a.benchmark_kwargs())
    path = bench.export(a.output_dir, format=a.format, overwrite=a.overwrite)
    counts = ", ".join(f"{k} {v}" for k, v in bench.metadata()["num_rows"].items())
    print(f"Wrote fictitious-authors ({a.format}) to {path}: {counts}.")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
