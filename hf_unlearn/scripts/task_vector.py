"""Task-vector unlearning from the command line: reinforce, (optionally) choose the scale, select entries, negate.

    hf-unlearn task-vector --target outputs/target --reinforced outputs/reinforced --output outputs/tv --scale 1.0
    hf-unlearn task-vector --target T --reinforced R --output O --sweep 0.25,0.5,1,2 --tolerance 0.02
    hf-unlearn task-vector --target T --reinforced R --output O --sta-keep 0.1        # Selective Task Arithmetic

When ``--reinforced`` names a folder without a model, the target is first fine-tuned on the built-in benchmark's forget
set into it (MUSE's recipe). ``--sweep`` picks the largest scale whose general-knowledge accuracy stays within
``--tolerance`` of the target's (Ilharco et al. 2023); it holds the vector in memory, like ``--sta-keep`` (which needs
gradients at the reinforced weights). Plain negation streams tensor by tensor. The output folder gets a model card.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["run"]


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
    log: Any = print,
) -> dict[str, Any]:
    """Reinforce if needed, choose the scale, build STA masks if asked, negate; returns what was done."""
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
