"""``hf-unlearn task-vector``: reinforce, (optionally) choose the scale, select entries, negate.

    hf-unlearn task-vector --model_name_or_path outputs/target --reinforced_model_name_or_path outputs/reinforced \
        --output_dir outputs/tv --scale 1.0
    hf-unlearn task-vector --model_name_or_path T --reinforced_model_name_or_path R --output_dir O --sweep 0.25 0.5 1 2
    hf-unlearn task-vector --config sta_tofu --sta_keep 0.05                  # Selective Task Arithmetic

When the reinforced folder holds no model, the target is first fine-tuned on the forget set into it (MUSE's recipe):
the built-in benchmark's, or ``--dataset_name`` / ``--forget_path`` as in ``hf-unlearn train``. ``--sweep`` picks the
largest scale whose general-knowledge accuracy stays within ``--tolerance`` of the target's (Ilharco et al. 2023); it
holds the vector in memory, like ``--sta_keep`` (which needs gradients at the reinforced weights). Plain negation
streams tensor by tensor. The output folder gets a model card.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .arguments import BENCHMARK_RENAMES, BenchmarkArguments, CommandParser, DataArguments, Renamed

__all__ = ["TaskVectorArguments", "main", "make_parser", "run"]


@dataclass
class TaskVectorArguments(DataArguments, BenchmarkArguments):
    """Task-vector negation and Selective Task Arithmetic (the data fields are shared with ``hf-unlearn train``).

    Parameters:
        model_name_or_path: the model to unlearn from (the target): a local folder or ``bundled``.
        reinforced_model_name_or_path: the target fine-tuned further on the forget set; a folder without a model is
            created by fine-tuning the target on the forget rows (``reinforce_*``).
        output_dir: the unlearned model's folder (refused when not empty, unless ``overwrite``).
        scale: the negation scale alpha: ``target - alpha * (reinforced - target)``.
        sweep: scales to try; the largest keeping general-knowledge accuracy within ``tolerance`` of the target's
            is applied (instead of ``scale``).
        tolerance: the general-knowledge accuracy drop allowed by ``sweep``.
        sta_keep: Selective Task Arithmetic (arXiv:2411.16139): the fraction of the vector's entries kept.
        sta_importance, sta_granularity, sta_batches: STA's importance (``taylor`` |g * tau| or ``fisher``), the
            scope of its top-k (``tensor`` or ``global``), and the forget batches of its gradient.
        reinforce_epochs, reinforce_learning_rate: the reinforcing fine-tune (MUSE: 5 epochs at 1e-5).
        overwrite: replace a non-empty output folder.
    """

    model_name_or_path: str | None = field(default=None, metadata={"help": "The target: a local folder or 'bundled'."})
    reinforced_model_name_or_path: str | None = field(
        default=None, metadata={"help": "The target reinforced on the forget set (made when the folder is empty)."}
    )
    output_dir: str | None = field(default=None, metadata={"help": "The unlearned model's folder."})
    scale: float = field(default=1.0, metadata={"help": "Negation scale alpha."})
    sweep: list[str] = field(
        default_factory=list, metadata={"help": "Scales to try, e.g. 0.25 0.5 1 2 (the largest within tolerance)."}
    )
    tolerance: float = field(default=0.02, metadata={"help": "Allowed general-knowledge accuracy drop."})
    sta_keep: float | None = field(default=None, metadata={"help": "Selective Task Arithmetic: fraction kept."})
    sta_importance: str = field(default="taylor", metadata={"help": "STA importance.", "choices": ["taylor", "fisher"]})
    sta_granularity: str = field(
        default="tensor", metadata={"help": "STA top-k scope.", "choices": ["tensor", "global"]}
    )
    sta_batches: int = field(default=4, metadata={"help": "Forget batches for the STA gradient."})
    reinforce_epochs: float = field(default=5.0, metadata={"help": "Epochs when reinforcing (MUSE: 5)."})
    reinforce_learning_rate: float = field(default=1e-5, metadata={"help": "Learning rate when reinforcing (1e-5)."})
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty output folder."})


def _scales(values: Sequence[Any]) -> list[float]:
    """``--sweep 0.25 0.5 1``, ``--sweep 0.25,0.5,1`` (hf_unlearn 0.1) or a YAML list, as numbers."""
    try:
        return [float(x) for v in values for x in str(v).split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--sweep takes numbers (e.g. --sweep 0.5 1 2), got {' '.join(map(str, values))}.") from None


RENAMED = {
    **BENCHMARK_RENAMES,
    "target": Renamed("model_name_or_path"),
    "reinforced": Renamed("reinforced_model_name_or_path"),
    "output": Renamed("output_dir"),
    "reinforce_lr": Renamed("reinforce_learning_rate"),
}


def make_parser(prog: str = "hf-unlearn task-vector") -> CommandParser:
    return CommandParser(
        (TaskVectorArguments,),
        prog=prog,
        description="Weight-space unlearning: target - scale x (reinforced - target); Selective Task Arithmetic with "
        "--sta_keep. Streamed tensor by tensor.",
        renamed=RENAMED,
    )


def _rows(a: TaskVectorArguments) -> tuple[list[dict], list[dict], str]:
    """The forget rows (to reinforce on and score STA with), the general-knowledge rows, and the data's name."""
    from ..sources import training_data

    name = a.dataset_name or ("files" if a.forget_path else "fictitious-authors")
    data = training_data(
        name,
        benchmark=a.benchmark_kwargs(),
        tofu_split=a.tofu_split,
        forget_path=a.forget_path,
        dataset_config=a.dataset_config,
        forget_split=a.forget_split,
    )
    if name == "fictitious-authors":
        from ..data import build_fictitious_authors

        utility = build_fictitious_authors(**a.benchmark_kwargs())["general_knowledge"]
    else:
        from ..data.general_knowledge import general_knowledge_rows

        utility = general_knowledge_rows()
    return data.forget, utility, f"{data.name} forget"


def main(argv: Sequence[str] | None = None) -> int:
    from .. import set_verbosity

    set_verbosity(os.environ.get("HF_UNLEARN_VERBOSITY", "info"))
    parser = make_parser()
    (a,) = parser.parse_args_and_config(list(sys.argv[1:] if argv is None else argv))
    missing = [
        f"--{k}" for k in ("model_name_or_path", "reinforced_model_name_or_path", "output_dir") if not getattr(a, k)
    ]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    forget, utility, forget_name = _rows(a)
    done = run(
        target=a.model_name_or_path,
        reinforced=a.reinforced_model_name_or_path,
        output=a.output_dir,
        forget_rows=forget,
        utility_rows=utility,
        forget_name=forget_name,
        scale=a.scale,
        sweep=_scales(a.sweep),
        tolerance=a.tolerance,
        sta_keep=a.sta_keep,
        sta_importance=a.sta_importance,
        sta_granularity=a.sta_granularity,
        sta_batches=a.sta_batches,
        reinforce_epochs=a.reinforce_epochs,
        reinforce_lr=a.reinforce_learning_rate,
        overwrite=a.overwrite,
    )
    print(
        f"Wrote {a.output_dir} (scale {done['scale']:g}); evaluate it with: hf-unlearn eval --model_name_or_path "
        f"{a.output_dir} ..."
    )
    return 0


def _general_knowledge(model: Any, tokenizer: Any, rows: Sequence[dict]) -> float:
    from ..evaluation import rank_answers

    return rank_answers(model, tokenizer, rows).accuracy


def run(
    *,
    target: str,
    reinforced: str,
    output: str,
    forget_rows: Sequence[dict],
    utility_rows: Sequence[dict],
    forget_name: str = "fictitious-authors forget",
    scale: float = 1.0,
    sweep: Sequence[float] = (),
    tolerance: float = 0.02,
    sta_keep: float | None = None,
    sta_importance: str = "taylor",
    sta_granularity: str = "tensor",
    sta_batches: int = 4,
    reinforce_epochs: float = 5,
    reinforce_lr: float = 1e-5,
    overwrite: bool = False,
    log: Any = None,
) -> dict[str, Any]:
    """Reinforce if needed, choose the scale, build STA masks if asked, negate; returns what was done. ``log``
    receives the progress lines (default: hf_unlearn's logger, at INFO)."""
    import logging

    log = log or logging.getLogger("hf_unlearn.task_vector").info
    from .. import task_arithmetic as ta
    from ..hub.cards import build_model_card
    from ..models import BUNDLED_HUB_ID, is_bundled_model, load_model, resolve_model_path

    target = str(resolve_model_path(target))
    done: dict[str, Any] = {"target": target, "reinforced": reinforced}
    if not (Path(reinforced) / "config.json").is_file():
        log(
            f"Reinforcing {target} on {len(forget_rows)} forget rows ({reinforce_epochs} epochs, lr {reinforce_lr}) ..."
        )
        t0 = time.perf_counter()
        ta.reinforce(target, forget_rows, reinforced, epochs=reinforce_epochs, learning_rate=reinforce_lr)
        done["reinforce_seconds"] = round(time.perf_counter() - t0, 1)
    masks = None
    if sweep or sta_keep is not None:
        tau = ta.TaskVector.from_models(target, reinforced)
        if sta_keep is not None:
            log(f"Scoring task-vector entries ({sta_importance}, {sta_batches} batches) ...")
            model, tok = load_model(reinforced)
            importance = ta.sta_importance(model, tok, forget_rows, tau, kind=sta_importance, batches=sta_batches)
            masks = ta.sta_masks(importance, keep=sta_keep, granularity=sta_granularity)
            tau = tau.masked(masks)
            del model, importance
            done["sta"] = {"keep": sta_keep, "importance": sta_importance, "granularity": sta_granularity}
        if sweep:
            model, tok = load_model(target)
            model.eval()
            log(f"Choosing the scale among {', '.join(f'{s:g}' for s in sorted(sweep))} ...")
            choice = ta.sweep_negation(
                model, tau, lambda m: _general_knowledge(m, tok, utility_rows), sweep, tolerance=tolerance
            )
            for s, accuracy in choice.curve:
                log(f"  scale {s:g}: general knowledge {accuracy:.3f} (target {choice.baseline:.3f})")
            scale = choice.scale
            done["sweep"] = {"baseline": choice.baseline, "tolerance": tolerance, "curve": choice.curve}
            del model
    log(f"Negating: target - {scale:g} x {'mask x ' if masks is not None else ''}(reinforced - target) -> {output}")
    ta.negate_checkpoint(target, reinforced, output, scale=scale, masks=masks, overwrite=overwrite)
    done["scale"] = scale
    method = "STA" if masks is not None else "TaskVector"
    hyper = {"scale": scale, "reinforce_epochs": reinforce_epochs, "reinforce_learning_rate": reinforce_lr}
    if masks is not None:
        hyper.update({f"sta_{k}": v for k, v in done["sta"].items()})
    card = build_model_card(
        repo_id=Path(output).name,
        base_model=BUNDLED_HUB_ID if is_bundled_model(target) else target,
        method=method,
        is_adapter=False,
        forget_name=forget_name,
        forget_size=len(forget_rows),
        hyperparameters=hyper,
        citation=_CITATIONS[method],
    )
    card.save(str(Path(output) / "README.md"))
    return done


_CITATIONS = {
    "TaskVector": """@inproceedings{ilharco2023editing,
    title     = {{Editing Models with Task Arithmetic}},
    author    = {Gabriel Ilharco and Marco Tulio Ribeiro and Mitchell Wortsman and Ludwig Schmidt and Hannaneh
                 Hajishirzi and Ali Farhadi},
    year      = 2023,
    booktitle = {The Eleventh International Conference on Learning Representations},
}""",
    "STA": """@article{tian2024beyond,
    title   = {{Beyond Task Vectors: Selective Task Arithmetic Based on Importance Metrics}},
    author  = {Bowen Tian and Songning Lai and Jiemin Wu and Zhihao Shuai and Shiming Ge and Yutao Yue},
    year    = 2024,
    journal = {arXiv preprint arXiv:2411.16139},
}""",
}
