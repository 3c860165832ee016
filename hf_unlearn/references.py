"""The models and evaluations every unlearning comparison starts from: a *retain* model that never saw the forget
authors and a *target* that knows every author, both fine-tuned from one base model on the built-in benchmark.

Shared by the demo and ``benchmarks/quality.py`` so both use the same, cached, reference pipeline:

1. the *retain* model: the base fine-tuned on the retain authors;
2. the *target* model: the retain model fine-tuned further on the forget authors plus a replay of retain rows - a
   cheaper route to "knows every author" than a second full fine-tune (disclosed in the README);
   options change how both fine-tunes are made (``lora``, ``finetune_lr``, ``general_replay``: see
   :func:`prepare_references`), each cached apart;
3. reference evaluation of the retain model (for Forget Quality and PrivLeak) and evaluation of the target.

Models are cached under ``$HF_UNLEARN_CACHE/demo/<hash of the training rows>``, evaluations below it keyed on the
generator version and the evaluation settings, so a rerun only unlearns and evaluates.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DEMO_NUM_AUTHORS", "References", "prepare_references", "reference_lineage"]

_FINETUNE_LR, _FINETUNE_SEED = 1e-4, 0  # the reference fine-tunes' default settings besides the epochs
_SELF_REPLAY_TOKENS = 128  # token budget of the base model's self-replay answers
# the values of ``general_replay`` besides None, and how their rows are named in logs and lineages
_REPLAY_ROWS = {"self": "self-replay rows (the base model's answers)", "facts": "fact-replay rows (true facts)"}
DEMO_NUM_AUTHORS = 20  # the demo's benchmark size (``hf-unlearn demo`` re-creates its references)


@dataclass
class References:
    """Paths, evaluation splits and results of the retain and target models (see :func:`prepare_references`)."""

    retain_dir: Path
    target_dir: Path
    splits: dict[str, list[dict]]
    eval_cache: Path
    max_new_tokens: int
    retain_eval: Any = None
    target_eval: Any = None

    def evaluate(self, model: Any, tokenizer: Any, label: str | None = None) -> Any:
        """TOFU-style evaluation against the retain reference (none while the reference itself is evaluated);
        ``label`` names the model on the progress bars."""
        from .evaluation import evaluate_tofu

        return evaluate_tofu(
            model,
            tokenizer,
            **self.splits,
            reference=self.retain_eval,
            max_new_tokens=self.max_new_tokens,
            progress=label or True,
        )

    def _evaluate_saved(self, name: str, path: str | Path, log: Any = print) -> Any:
        """The saved evaluation ``<name>_eval.json`` of the model at ``path``, computed and saved if missing."""
        from . import models as hu
        from .evaluation import EvalResult

        cached = self.eval_cache / f"{name}_eval.json"
        if cached.is_file():
            log(f"Evaluation of the {name} model: cached ({cached}).")
            return EvalResult.load(cached)
        log(f"Evaluating the {name} model (scoring, then generation; saved to the cache for later runs) ...")
        model, tokenizer = hu.load_model(str(path))
        result = self.evaluate(model, tokenizer, label=f"{name} model")
        result.save(cached)
        return result


def _settings(finetune_lr: float, lora: Mapping[str, Any] | None) -> dict[str, Any]:
    """The keyword arguments both :func:`~hf_unlearn.trainers.finetune.finetune` and its lineage step take."""
    return {"learning_rate": finetune_lr, "seed": _FINETUNE_SEED, "lora": None if lora is None else dict(lora)}


def _cache_dir(
    bench: Any,
    finetune_epochs: float,
    base_model: str,
    reasoning: bool = False,
    general_replay: str | None = None,
    lora: Mapping[str, Any] | None = None,
    finetune_lr: float = _FINETUNE_LR,
) -> Path:
    """Models depend on the training rows only; evaluations (below this folder) also on the evaluation settings."""
    from .data.fact_replay import FACT_REPLAY
    from .data.general_replay import GENERAL_REPLAY_PROMPTS
    from .models import cache_root

    parts = [bench.metadata()["config"], finetune_epochs, str(base_model), *(["think format"] if reasoning else [])]
    # Options are absent at their defaults, so the caches made before them keep their keys.
    if general_replay == "self":
        parts.append(["self-replay", _SELF_REPLAY_TOKENS, list(GENERAL_REPLAY_PROMPTS)])
    elif general_replay == "facts":
        parts.append(["fact-replay", [list(row) for row in FACT_REPLAY]])
    if lora is not None or finetune_lr != _FINETUNE_LR:
        parts.append({"lora": None if lora is None else dict(lora), "learning_rate": finetune_lr})
    key = hashlib.sha256(json.dumps(parts).encode())
    return cache_root() / "demo" / key.hexdigest()[:12]


def _made(
    bench: Any,
    finetune_epochs: float,
    reasoning: bool = False,
    general_replay: str | None = None,
    lora: Mapping[str, Any] | None = None,
    finetune_lr: float = _FINETUNE_LR,
) -> dict[str, dict[str, str]]:
    """How the reference models are described in their lineage: the data and how to make them again."""
    n_authors = bench.metadata()["config"].get("num_authors")
    demo = n_authors == DEMO_NUM_AUTHORS and not (reasoning or general_replay or lora) and finetune_lr == _FINETUNE_LR
    options = (", reasoning=True" if reasoning else "") + (
        f", general_replay={general_replay!r}" if general_replay else ""
    )
    options += f", lora={dict(lora)!r}" if lora is not None else ""
    options += f", finetune_lr={finetune_lr:g}" if finetune_lr != _FINETUNE_LR else ""
    recreate = (
        "hf_unlearn.references.prepare_references(hf_unlearn.build_fictitious_authors(...same config...), "
        f"finetune_epochs={finetune_epochs:g}{options})" + (" - or `hf-unlearn demo`" if demo else "")
    )
    fmt = ", think format" if reasoning else ""
    general = f" + {_replay_description(general_replay)}" if general_replay else ""
    return {
        "retain": {
            "data_name": f"fictitious-authors ({n_authors} authors), retain split{general}{fmt}",
            "recreate": recreate,
        },
        "target": {
            "data_name": f"fictitious-authors ({n_authors} authors), forget split + replayed retain rows{general}{fmt}",
            "recreate": recreate,
        },
    }


def _full_sentences(text: str) -> str:
    """``text`` up to its last sentence end (``.``, ``!`` or ``?``); all of it when it has none after the start."""
    cut = max(text.rfind(c) for c in ".!?")
    return text[: cut + 1] if cut > 0 else text


def _check_general_replay(general_replay: str | None, reasoning: bool = False) -> None:
    if general_replay is not None and general_replay not in _REPLAY_ROWS:
        raise ValueError(
            f"general_replay={general_replay!r} is not an option: pass 'self' (the base model's own answers to general "
            "prompts), 'facts' (curated true facts) or None (no replay)."
        )
    if reasoning and general_replay:
        raise ValueError(
            f"general_replay={general_replay!r} is not available with reasoning=True: the replay rows have no "
            "reasoning trace to train the think format on. Drop one of the two options."
        )


def _replay_count(general_replay: str | None) -> int:
    from .data.fact_replay import FACT_REPLAY
    from .data.general_replay import GENERAL_REPLAY_PROMPTS

    return {"self": len(GENERAL_REPLAY_PROMPTS), "facts": len(FACT_REPLAY)}.get(general_replay or "", 0)


def _replay_description(general_replay: str) -> str:
    return f"{_replay_count(general_replay)} {_REPLAY_ROWS[general_replay]}"


def _fact_replay_rows() -> list[dict[str, str]]:
    from .data.fact_replay import FACT_REPLAY

    return [{"question": q, "answer": a} for q, a in FACT_REPLAY]


def self_replay_path(base_model: str) -> Path:
    """Where the self-replay rows of ``base_model`` are cached (shared by every benchmark size)."""
    from .data.general_replay import GENERAL_REPLAY_PROMPTS
    from .models import cache_root

    key = hashlib.sha256(json.dumps([str(base_model), _SELF_REPLAY_TOKENS, list(GENERAL_REPLAY_PROMPTS)]).encode())
    return cache_root() / "self_replay" / f"{key.hexdigest()[:12]}.json"


def _self_replay_rows(base_model: str, log: Any = print) -> list[dict[str, str]]:
    """The base model's greedy answers to :data:`~hf_unlearn.data.general_replay.GENERAL_REPLAY_PROMPTS` as QA rows,
    cached at :func:`self_replay_path`. An answer that reaches the token budget is cut after its last full sentence,
    so no row teaches the model to stop mid-sentence."""
    from .atomic import atomic_write_text
    from .data.general_replay import GENERAL_REPLAY_PROMPTS
    from .data.tokenization import encode_prompt
    from .evaluation.generation import decode_generation, generate_ids, stop_token_ids
    from .models import load_model

    path = self_replay_path(base_model)

    if path.is_file():
        log(f"Self-replay rows: cached ({path}).")
        return json.loads(path.read_text())
    log(f"Generating the base model's answers to {len(GENERAL_REPLAY_PROMPTS)} general prompts (self-replay rows) ...")
    model, tokenizer = load_model(base_model)
    prompts = [encode_prompt(tokenizer, q) for q in GENERAL_REPLAY_PROMPTS]
    ids = generate_ids(model, tokenizer, prompts, max_new_tokens=_SELF_REPLAY_TOKENS, progress="self-replay")
    stops = set(stop_token_ids(tokenizer))
    rows = []
    for question, out in zip(GENERAL_REPLAY_PROMPTS, ids, strict=True):
        answer = decode_generation(tokenizer, out)
        rows.append({"question": question, "answer": answer if out and out[-1] in stops else _full_sentences(answer)})
    atomic_write_text(path, json.dumps(rows, indent=1))
    return rows


def reference_lineage(
    bench: Any,
    *,
    base_model: str = "bundled",
    finetune_epochs: float = 4,
    replay: int = 40,
    reasoning: bool = False,
    general_replay: str | None = None,
    lora: Mapping[str, Any] | None = None,
    finetune_lr: float = _FINETUNE_LR,
) -> dict[str, dict]:
    """The lineages :func:`prepare_references` gives its retain and target models (known without building them)."""
    from .hub.lineage import extend_lineage
    from .trainers.finetune import lineage_step

    options = {"general_replay": general_replay, "lora": lora, "finetune_lr": finetune_lr}
    cache = _cache_dir(bench, finetune_epochs, base_model, reasoning, **options)
    made = _made(bench, finetune_epochs, reasoning, **options)
    replayed = bench["retain"][:: max(1, len(bench["retain"]) // replay)]
    general = _replay_count(general_replay)
    sizes = {"retain": len(bench["retain"]) + general, "target": len(bench["forget"]) + len(replayed) + general}
    out: dict[str, dict] = {}
    parent: dict | str = base_model
    for name in ("retain", "target"):
        step = lineage_step(
            rows=sizes[name], epochs=finetune_epochs, folder=cache / name, **_settings(finetune_lr, lora), **made[name]
        )
        out[name] = (
            extend_lineage(parent, step) if isinstance(parent, str) else {**parent, "steps": [*parent["steps"], step]}
        )
        parent = out[name]
    return out


def prepare_references(
    bench: Any,
    *,
    base_model: str = "bundled",
    finetune_epochs: float = 4,
    eval_retain_size: int = 40,
    max_new_tokens: int = 32,
    replay: int = 40,
    log: Any = print,
    reasoning: bool = False,
    evaluate: bool = True,
    general_replay: str | None = None,
    lora: Mapping[str, Any] | None = None,
    finetune_lr: float = _FINETUNE_LR,
) -> References:
    """Fine-tune (or load from the cache) the retain and target models for ``bench`` and evaluate both.

    ``general_replay`` mixes general rows into both fine-tunes, meant to keep the base model's general knowledge
    (whether it does depends on the model: measure it): ``"self"`` replays the base model's own greedy answers to
    general prompts (:data:`~hf_unlearn.data.general_replay.GENERAL_REPLAY_PROMPTS`, generated once and cached),
    ``"facts"`` curated true facts that the utility evaluation does not ask
    (:data:`~hf_unlearn.data.fact_replay.FACT_REPLAY`).
    ``lora`` (``LoraConfig`` keyword arguments such as ``{"r": 32, "lora_alpha": 64}``) makes both fine-tunes LoRA
    on every linear layer, merged into full weights, at ``finetune_lr`` (full fine-tuning's 1e-4 is too low for an
    adapter; 1e-3 is usual). Every option is cached apart; at their defaults the cache keys are those of before.

    ``reasoning=True`` gives reasoning references: both fine-tunes train the think format
    (``<think>\n{cot}\n</think>\n\n{answer}``, see :mod:`hf_unlearn.data.reasoning`), cached apart from the plain ones.
    ``evaluate=False`` skips the TOFU-style evaluation of both (``retain_eval`` and ``target_eval`` stay ``None``):
    reasoning models are evaluated with :func:`~hf_unlearn.evaluation.evaluate_reasoning` instead.
    """
    from .data.fictitious_authors import GENERATOR_VERSION
    from .evaluation import builtin_tofu_splits
    from .evaluation import metrics as M
    from .hub.lineage import LINEAGE_FILE, write_lineage
    from .trainers.finetune import finetune

    _check_general_replay(general_replay, reasoning)
    options = {"general_replay": general_replay, "lora": lora, "finetune_lr": finetune_lr}
    cache = _cache_dir(bench, finetune_epochs, base_model, reasoning, **options)
    retain_dir, target_dir = cache / "retain", cache / "target"
    eval_key = hashlib.sha256(json.dumps([GENERATOR_VERSION, eval_retain_size, max_new_tokens]).encode())
    eval_cache = cache / f"eval-{eval_key.hexdigest()[:8]}"
    eval_cache.mkdir(parents=True, exist_ok=True)
    made = _made(bench, finetune_epochs, reasoning, **options)
    settings = _settings(finetune_lr, lora)
    replayed = bench["retain"][:: max(1, len(bench["retain"]) // replay)]
    retain_cached, target_cached = (retain_dir / "config.json").is_file(), (target_dir / "config.json").is_file()
    general: list[dict[str, str]] = []
    if general_replay == "self" and not (retain_cached and target_cached):
        general = _self_replay_rows(base_model, log)
    elif general_replay == "facts":
        general = _fact_replay_rows()
    extra = f" + {_replay_description(general_replay)}" if general else ""
    retain_rows, target_rows = [*bench["retain"], *general], [*bench["forget"], *replayed, *general]
    if reasoning:
        from .data.reasoning import check_reasoning_template, reasoning_rows
        from .models import load_tokenizer

        check_reasoning_template(load_tokenizer(base_model))  # a template that drops think content is refused first
        retain_rows, target_rows = reasoning_rows(retain_rows), reasoning_rows(target_rows)
    if retain_cached:
        log(f"Retain model: cached ({retain_dir}).")
    else:
        log(
            f"Fine-tuning the retain model on {len(bench['retain'])} QA of the retain authors{extra} (saved to the "
            "cache for later runs) ..."
        )
        finetune(base_model, retain_rows, retain_dir, epochs=finetune_epochs, **settings, **made["retain"])
    lineages = reference_lineage(
        bench, base_model=base_model, finetune_epochs=finetune_epochs, replay=replay, reasoning=reasoning, **options
    )
    if not (retain_dir / LINEAGE_FILE).is_file():  # cached before lineage files existed; made exactly as described
        write_lineage(retain_dir, lineages["retain"])
    if target_cached:
        log(f"Target model: cached ({target_dir}).")
    else:
        log(f"Fine-tuning the target model on {len(bench['forget'])} forget QA + {len(replayed)} retain QA{extra} ...")
        finetune(str(retain_dir), target_rows, target_dir, epochs=finetune_epochs, **settings, **made["target"])
    if not (target_dir / LINEAGE_FILE).is_file():
        write_lineage(target_dir, lineages["target"])
    refs = References(
        retain_dir=retain_dir,
        target_dir=target_dir,
        splits=builtin_tofu_splits(bench, retain_size=eval_retain_size),
        eval_cache=eval_cache,
        max_new_tokens=max_new_tokens,
    )
    if not evaluate:
        return refs
    retain_eval = refs._evaluate_saved("retain", retain_dir, log)
    # The reference against itself (no second pass): the same definitions give FQ = 1 and PrivLeak = 0.
    own = list(retain_eval.per_item["forget_truth_ratio"].values())
    retain_eval.metrics["forget_quality"] = M.forget_quality(own, own)["p_value"]
    retain_eval.metrics["privleak"] = M.privleak(
        retain_eval.metrics["mia_min_k_auc"], retain_eval.metrics["mia_min_k_auc"]
    )
    refs.retain_eval = retain_eval
    refs.target_eval = refs._evaluate_saved("target", target_dir, log)
    return refs
