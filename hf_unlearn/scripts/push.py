"""``hf-unlearn push``: publish a saved unlearned model or adapter (model files, card, plot and aggregate results only;
a private repository unless ``--hub_private_repo false``).

    hf-unlearn push --output_dir outputs/npo --hub_model_id me/smollm2-npo-unlearned
    hf-unlearn push outputs/npo me/smollm2-npo-unlearned                 # the same, positionally
    hf-unlearn push outputs/demo/npo me/demo-npo --merge                 # an adapter on a local base, merged
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from .arguments import CommandParser, Renamed

__all__ = ["PushArguments", "main", "make_parser"]

logger = logging.getLogger("hf_unlearn.push")


@dataclass
class PushArguments:
    """What to publish where, with the names ``TrainingArguments`` gives them.

    Parameters:
        output_dir: the folder a training run wrote (model or adapter, with its ``README.md`` card).
        hub_model_id: the repository, e.g. ``me/model-npo``.
        hub_private_repo: create it private (the default; ``false`` for public).
        hub_token: a Hugging Face token (default: the logged-in one).
        hub_revision: the branch to push to.
        merge: an adapter on a local base (e.g. the demo's): upload the adapter merged into it, as full weights.
        base_repo: an adapter on a local base: also upload that base to this (private) repository and point the
            adapter at it.
        allow_forget_features: an O3 model: also publish detectors that store per-example features of the forget
            questions (refused by default: they can reveal which questions were forgotten).
    """

    output_dir: str | None = field(default=None, metadata={"help": "The folder a training run wrote."})
    hub_model_id: str | None = field(default=None, metadata={"help": "The repository, e.g. me/model-npo."})
    hub_private_repo: bool = field(default=True, metadata={"help": "Private repository (default); false = public."})
    hub_token: str | None = field(default=None, metadata={"help": "Hugging Face token (default: the logged-in one)."})
    hub_revision: str | None = field(default=None, metadata={"help": "Branch to push to."})
    merge: bool = field(default=False, metadata={"help": "An adapter on a local base: upload it merged, full weights."})
    base_repo: str | None = field(
        default=None, metadata={"help": "An adapter on a local base: upload the base here too (private)."}
    )
    allow_forget_features: bool = field(
        default=False, metadata={"help": "O3: also publish detectors holding per-question features (risky)."}
    )


def _public(value: object) -> str:
    """Old ``--public`` (or ``public: true`` in YAML): a public repository."""
    return "true" if str(value).lower() in ("false", "0", "no") else "false"


RENAMED = {
    "public": Renamed("hub_private_repo", convert=_public, flag=True),
    "token": Renamed("hub_token"),
}


def make_parser(prog: str = "hf-unlearn push") -> CommandParser:
    return CommandParser(
        (PushArguments,),
        prog=prog,
        description="Upload a saved unlearned model or adapter: model files, card, plot and aggregate results only.",
        renamed=RENAMED,
        positionals=("output_dir", "hub_model_id"),
    )


def main(argv: Sequence[str] | None = None) -> int:
    from .. import set_verbosity
    from ..hub import push_unlearned

    set_verbosity(os.environ.get("HF_UNLEARN_VERBOSITY", "info"))
    parser = make_parser()
    (a,) = parser.parse_args_and_config(list(sys.argv[1:] if argv is None else argv))
    missing = [f"--{k}" for k in ("output_dir", "hub_model_id") if not getattr(a, k)]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    info = push_unlearned(
        a.output_dir,
        a.hub_model_id,
        private=a.hub_private_repo,
        token=a.hub_token,
        revision=a.hub_revision,
        merge=a.merge,
        base_repo_id=a.base_repo,
        allow_forget_features=a.allow_forget_features,
    )
    print(f"Pushed {a.output_dir} to {a.hub_model_id} ({'private' if a.hub_private_repo else 'public'}): {info}")
    if a.base_repo:
        print(f"Pushed its base model to {a.base_repo} (private: it still holds what the adapter removes).")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
