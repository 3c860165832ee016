"""``hf-unlearn report``: one self-contained HTML page for a finished run (its results, training curves, membership
inference, per-item forget table, robustness and search), written to ``OUTPUT_DIR/report.html``.

    hf-unlearn report outputs/npo
    hf-unlearn report outputs/npo --compare outputs/simnpo outputs/rmu     # further runs as columns
    hf-unlearn report outputs/npo --forget_path forget.jsonl               # questions and answer classes too

The page holds forget-set text and stays local: ``hf-unlearn push`` never uploads it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from .arguments import CommandParser

__all__ = ["ReportArguments", "main", "make_parser"]


@dataclass
class ReportArguments:
    """What to report.

    Parameters:
        output_dir: the folder a run wrote (``results.json``, ``trainer_state.json``, ``robustness.json``,
            ``search.json``: whichever exist); the page is written there.
        compare: other runs' folders, shown as further columns (named by their folder).
        forget_path: the evaluated forget rows (JSON lines, in the evaluation's order), for the per-item table's
            questions, reference answers and answer classes.
        title: the page's title (default: the folder's name).
    """

    output_dir: str | None = field(default=None, metadata={"help": "The folder a run wrote; report.html goes there."})
    compare: list[str] = field(default_factory=list, metadata={"help": "Other runs' folders, as further columns."})
    forget_path: str | None = field(
        default=None, metadata={"help": "The evaluated forget rows (JSON lines), for questions and answer classes."}
    )
    title: str | None = field(default=None, metadata={"help": "The page's title (default: the folder's name)."})


def make_parser(prog: str = "hf-unlearn report") -> CommandParser:
    return CommandParser(
        (ReportArguments,),
        prog=prog,
        description="Write OUTPUT_DIR/report.html: a self-contained page of a run's results (kept local).",
        positionals=("output_dir",),
    )


def main(argv: Sequence[str] | None = None) -> int:
    from ..data.loading import load_rows
    from ..report import write_report

    parser = make_parser()
    (a,) = parser.parse_args_and_config(list(sys.argv[1:] if argv is None else argv))
    if not a.output_dir:
        parser.error("the following arguments are required: --output_dir (the folder a run wrote)")
    rows = load_rows(a.forget_path) if a.forget_path else None
    try:
        path = write_report(a.output_dir, compare=a.compare, forget_rows=rows, title=a.title)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    print(f"Wrote {path} (local only: it shows forget-set text; hf-unlearn push never uploads it).")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
