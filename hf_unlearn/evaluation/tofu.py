"""TOFU-style evaluation: Prob, ROUGE-L, Truth Ratio, Forget Quality, Model Utility, ES/EM, MIA and PrivLeak.

Cost: every (question, answer variant) sequence of every split - answers, paraphrased answers, all perturbed answers,
holdout answers - is scored in ONE length-sorted pass that also yields the per-token statistics for MIA, exact
memorisation and extraction strength; identical sequences are scored once. Generation (for ROUGE) is one batched
greedy pass over the unique questions. No metric runs a pass of its own.

Splits follow TOFU (``forget``, ``retain``, ``real_authors``, ``world_facts``, ``holdout``). Any of the last four may be
absent; Model Utility is then the harmonic mean of the components that exist, and ``details["model_utility"]`` lists
them. On the built-in benchmark, :func:`builtin_tofu_splits` maps ``general_knowledge`` to ``world_facts`` (there is no
real-authors split).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..data.tokenization import encode_prompt, encode_qa
from . import metrics as M
from .decoding import GreedyDecoder, select_cache_rows, supports_greedy_decoder
from .generation import decode_generation, generate_from_ids, greedy_decoder
from .mia import content_tokens, score_attacks
from .report import DEFINITIONS, EvalResult, check_reference, items_fingerprint, prompt_fingerprint
from .scoring import score_sequences

__all__ = ["TOFU_SPLITS", "builtin_tofu_splits", "evaluate_tofu"]

TOFU_SPLITS = ("forget", "retain", "real_authors", "world_facts", "holdout")
_OPTION_SPLITS = ("real_authors", "world_facts")  # Prob normalised over options; TR uses the answer itself
_MIA_ATTACKS = ("loss", "zlib", "min_k", "min_k_plus_plus")


def builtin_tofu_splits(bench: Any, *, retain_size: int | None = 200) -> dict[str, list[dict]]:
    """TOFU splits from the built-in benchmark (``retain_size`` retain items, taken evenly, like TOFU's 400 of 3600)."""
    retain = bench["retain"]
    if retain_size is not None and retain_size < len(retain):
        step = len(retain) / retain_size
        retain = [retain[int(i * step)] for i in range(retain_size)]
    return {
        "forget": bench["forget"],
        "retain": retain,
        "world_facts": bench["general_knowledge"],
        "holdout": bench["holdout"],
    }


def _variants(split: str, row: Mapping[str, Any]) -> dict[str, str]:
    """The targets scored for one item: answer, paraphrased answer (forget/retain), perturbed answers."""
    out = {"answer": row["answer"]}
    if split == "holdout":
        return out
    if split in ("forget", "retain") and row.get("paraphrased_answer"):
        out["para"] = row["paraphrased_answer"]
    for j, p in enumerate(row.get("perturbed_answer") or []):
        out[f"pert{j}"] = p
    return out


def _encoding_plan(
    splits: Mapping[str, list[dict]], tokenizer: Any, system_prompt: str | None, max_length: int
) -> tuple[list[dict], dict[str, dict[int, dict[str, int]]], dict[str, list[int]]]:
    """Encode every (question, target) sequence once. Returns the encoded sequences, per split and item the index of
    each variant's sequence, and the items dropped because a target has no token left."""
    keys: dict[tuple[Any, str], int] = {}
    encoded: list[dict] = []
    plan: dict[str, dict[int, dict[str, int]]] = {s: {} for s in splits}
    dropped: dict[str, list[int]] = {s: [] for s in splits}
    for split, rows in splits.items():
        for i, row in enumerate(rows):
            ids = {}
            for name, target in _variants(split, row).items():
                key = (row["question"], target)
                if key not in keys:
                    ex = encode_qa(
                        tokenizer, row["question"], target, system_prompt=system_prompt, max_length=max_length
                    )
                    keys[key] = -1 if ex.num_labels == 0 else len(encoded)
                    if ex.num_labels:
                        encoded.append(ex.to_dict())
                ids[name] = keys[key]
            if any(v < 0 for v in ids.values()):
                dropped[split].append(i)
            else:
                plan[split][i] = ids
    return encoded, plan, dropped


def _generation_plan(
    splits: Mapping[str, list[dict]],
    tokenizer: Any,
    system_prompt: str | None,
    max_new_tokens: int,
    generation_budget: float | None,
) -> tuple[dict[str, list[int]], dict[str, int]]:
    """The prompt (token ids) and token budget of every unique generated question, in split order."""
    if generation_budget is not None and generation_budget <= 0:
        raise ValueError(f"generation_budget must be > 0 (a multiple of the longest answer), got {generation_budget}.")
    prompts: dict[str, list[int]] = {}
    budgets: dict[str, int] = {}
    for split in ("forget", "retain", *_OPTION_SPLITS):
        rows = splits.get(split, [])
        cap = max_new_tokens
        if generation_budget is not None and rows:
            longest = max(len(tokenizer(r["answer"], add_special_tokens=False)["input_ids"]) for r in rows)
            cap = min(max_new_tokens, math.ceil(generation_budget * longest))
        for r in rows:
            q = r["question"]
            if q not in prompts:
                prompts[q] = encode_prompt(tokenizer, q, system_prompt=system_prompt)
            budgets[q] = max(budgets.get(q, 0), cap)
    return prompts, budgets


def _bar_label(progress: bool | str, what: str) -> str | bool:
    """A progress bar's description (``progress`` may name what is evaluated), or ``False`` for no bar."""
    if not progress:
        return False
    return f"{progress}: {what}" if isinstance(progress, str) else what


def _decoder(
    model: torch.nn.Module, tokenizer: Any, batch_size: int, total: int, progress: bool | str
) -> GreedyDecoder | None:
    if not supports_greedy_decoder(model):
        return None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=_bar_label(progress, "generating") or "", disable=not progress, leave=False)
    return greedy_decoder(model, tokenizer, batch_size=batch_size, progress=bar)


def _prefix_sink(decoder: GreedyDecoder, prompts: Mapping[str, list[int]], budgets: Mapping[str, int]) -> Any:
    """Hand the scoring pass's prompt caches of generated questions to the decoder, then decode while it is full."""
    wanted = {tuple(p): q for q, p in prompts.items()}

    def sink(scored: list[list[int]], cache: Any, mask: torch.Tensor) -> None:
        rows = [j for j, p in enumerate(scored) if tuple(p) in wanted and wanted[tuple(p)] not in decoder.budget]
        if not rows:
            return
        keys = [wanted[tuple(scored[j])] for j in rows]
        try:
            decoder.submit_prefilled(
                keys, [scored[j] for j in rows], [budgets[k] for k in keys], select_cache_rows(cache, rows), mask[rows]
            )
        except NotImplementedError:  # not a plain cache: the decoder encodes these prompts itself
            return
        decoder.run()

    return sink


def _generate(
    model: torch.nn.Module,
    tokenizer: Any,
    decoder: GreedyDecoder | None,
    prompts: Mapping[str, list[int]],
    budgets: Mapping[str, int],
    batch_size: int,
    progress: bool | str,
) -> tuple[dict[str, str], dict[str, Any]]:
    """Finish the decoder's work (the questions the scoring pass did not hand over are encoded by it), or run
    ``generate``; returns the generations per question and what was done."""
    questions = list(prompts)
    if decoder is not None:
        bar = decoder.progress
        try:
            for q in questions:
                if q not in decoder.budget:
                    decoder.submit(q, prompts[q], budgets[q])
            ids = decoder.finish()
        except NotImplementedError:  # not a plain key/value cache (detected at the first prompt encoded)
            decoder = None
        finally:
            bar.close()
    if decoder is not None:
        stats = decoder.stats
        details = {
            "engine": "decoder",
            "prompts_from_scoring": stats.reused,
            "prompts_encoded": stats.prefilled,
            "steps": stats.steps,
            "tokens": stats.tokens,
            "seconds": round(stats.seconds_prefill + stats.seconds_decode, 2),
        }
        return {q: decode_generation(tokenizer, ids[q]) for q in questions}, details
    answers = generate_from_ids(  # no decoder: asked for, unsupported, or not a plain cache
        model,
        tokenizer,
        [prompts[q] for q in questions],
        max_new_tokens=[budgets[q] for q in questions],
        batch_size=batch_size,
        progress=_bar_label(progress, "generating"),
        engine="generate",
    )
    return dict(zip(questions, answers, strict=True)), {"engine": "generate"}


def _split_metrics(
    result: EvalResult,
    split: str,
    rows: list[dict],
    items: Mapping[int, Mapping[str, int]],
    avg_nll: list[float],
    generations: Mapping[str, str],
) -> dict[int, float]:
    """Prob, truth ratio, ROUGE-L recall (and option accuracy) of one split into ``result``; returns the per-item
    truth ratios."""
    m, per = result.metrics, result.per_item
    prob, ratio, rouge, first = {}, {}, {}, {}
    for i, ids in items.items():
        p_ans = math.exp(-avg_nll[ids["answer"]])
        perts = [avg_nll[v] for k, v in ids.items() if k.startswith("pert")]
        if split in _OPTION_SPLITS:
            prob[i] = p_ans / (p_ans + sum(math.exp(-x) for x in perts))
            first[i] = float(all(avg_nll[ids["answer"]] < x for x in perts))  # true answer ranked first
        else:
            prob[i] = p_ans
        if perts:
            true_nll = avg_nll[ids["para"]] if "para" in ids else avg_nll[ids["answer"]]
            ratio[i] = M.truth_ratio(true_nll, perts)
        if generations:
            rouge[i] = M.rouge_l(generations[rows[i]["question"]], rows[i]["answer"])["recall"]
    per[f"{split}_prob"] = prob
    m[f"{split}_prob"] = M.mean(prob)
    if first:
        per[f"{split}_accuracy"] = first
        m[f"{split}_accuracy"] = M.mean(first)  # not a Model Utility component (TOFU's MU has 9 fixed ones)
    if ratio:
        per[f"{split}_truth_ratio"] = ratio
        agg = "closer_to_1" if split == "forget" else "true_better"
        m[f"{split}_truth_ratio"] = M.truth_ratio_aggregate(list(ratio.values()), agg)
    if generations:
        per[f"{split}_rouge"] = rouge
        per[f"{split}_generation"] = {i: generations[rows[i]["question"]] for i in items}
        m[f"{split}_rouge"] = M.mean(rouge)
    return ratio


def _reference_metrics(
    result: EvalResult, reference: EvalResult, forget_ratios: Mapping[int, float] | None, mia_k: float
) -> None:
    """Forget Quality (truth ratios against the retain model's) and PrivLeak (Min-K% AUC against its AUC); the
    reference was checked against this evaluation's metadata before scoring."""
    m = result.metrics
    ref_ratios = reference.per_item.get("forget_truth_ratio")
    if not ref_ratios:
        reason = (
            "the reference log has no per-item forget truth ratios (a copy saved without per_item, such as the one "
            "pushed to the Hub), so Forget Quality cannot be computed; pass the full results.json of the retain model"
        )
        result.details["forget_quality"] = {"skipped": reason}
        warnings.warn(reason, UserWarning, stacklevel=3)
    elif forget_ratios:
        fq = M.forget_quality(list(forget_ratios.values()), list(ref_ratios.values()))
        m["forget_quality"] = fq["p_value"]
        result.details["forget_quality"] = fq
    ref_auc = reference.metrics.get("mia_min_k_auc")
    if ref_auc is not None and m.get("mia_min_k_auc") is not None:
        details = {"attack": "min_k", "k": mia_k, "auc": m["mia_min_k_auc"], "reference_auc": ref_auc}
        m["privleak"], reason = M.privleak_or_reason(m["mia_min_k_auc"], ref_auc)
        if reason:
            details["skipped"] = reason
            warnings.warn(f"PrivLeak not computed: {reason}", UserWarning, stacklevel=3)
        result.details["privleak"] = details


def evaluate_tofu(
    model: torch.nn.Module,
    tokenizer: Any,
    *,
    forget: Sequence[Mapping[str, Any]],
    retain: Sequence[Mapping[str, Any]] | None = None,
    real_authors: Sequence[Mapping[str, Any]] | None = None,
    world_facts: Sequence[Mapping[str, Any]] | None = None,
    holdout: Sequence[Mapping[str, Any]] | None = None,
    reference: EvalResult | str | None = None,
    system_prompt: str | None = None,
    max_length: int = 512,
    batch_size: int = 32,
    max_new_tokens: int = 200,
    generation_budget: float | None = None,
    generate: bool = True,
    generation_engine: str = "auto",
    mia_k: float = 0.4,
    strict_reference: bool = True,
    progress: bool | str = False,
) -> EvalResult:
    """Evaluate ``model`` on TOFU-schema QA splits; see the module docstring.

    Args:
        forget, retain, real_authors, world_facts, holdout: QA rows (TOFU field names). ``forget``/``retain`` use
            ``paraphrased_answer`` and ``perturbed_answer`` for the Truth Ratio; RA/WF use ``answer`` and
            ``perturbed_answer`` as options; ``holdout`` (never trained on) provides MIA non-members.
        reference: the retain model's saved result (or its path) for Forget Quality and PrivLeak; refused when it was
            computed differently (see :func:`~hf_unlearn.evaluation.report.check_reference`).
        max_new_tokens: the generation length for ROUGE (200, open-unlearning's setting, by default).
        generation_budget: when set, a split's questions generate at most ``ceil(generation_budget x`` its longest
            reference answer in tokens``)`` (and ``max_new_tokens``): ROUGE-L recall needs the answer, not 200 tokens
            of continuation, and a model that rambles (as over-unlearned ones do) otherwise sets the cost. Greedy
            text is a prefix of the unbudgeted text, so ROUGE changes only where the answer's words come after the
            budget. ``None`` (default) keeps ``max_new_tokens`` for every question.
        generate: run greedy generation for ROUGE (the slow part on CPU); ``False`` skips the ROUGE metrics.
        generation_engine: ``"auto"`` decodes with :class:`~hf_unlearn.evaluation.decoding.GreedyDecoder`, fed the
            prompt caches of the scoring pass, where it reproduces ``model.generate``; ``"generate"`` runs
            ``model.generate`` on fixed batches after scoring (the previous implementation, for comparison).
        mia_k: the k of Min-K% / Min-K%++ (0.4 as in TOFU/MUSE).
        progress: progress bars for scoring and generation; a string (e.g. ``"retain model"``) labels them.
    """
    splits = {"forget": forget, "retain": retain, "real_authors": real_authors, "world_facts": world_facts}
    splits["holdout"] = holdout
    splits = {k: list(v) for k, v in splits.items() if v}
    if isinstance(reference, str | bytes) or hasattr(reference, "__fspath__"):
        reference = EvalResult.load(reference)
    comparable = {  # what makes two results comparable, known before any model time is spent
        "definitions": DEFINITIONS,
        "prompt": prompt_fingerprint(tokenizer, system_prompt),
        "dtype": str(next(model.parameters()).dtype),
        "items": {s: items_fingerprint(rows) for s, rows in splits.items()},
    }
    if reference is not None:  # a mismatched reference is refused before scoring
        need = ["forget"] + (["holdout"] if "holdout" in splits else [])
        check_reference(comparable, reference, splits=need, strict=strict_reference)

    # 1. Encode every needed sequence once. 2. One scoring pass with per-token statistics; the prompts it encodes
    # for questions that are also generated go straight to the decoder (3), which runs alongside.
    encoded, plan, dropped = _encoding_plan(splits, tokenizer, system_prompt, max_length)
    decoder, prompts, budgets = None, {}, {}
    if generate:
        prompts, budgets = _generation_plan(splits, tokenizer, system_prompt, max_new_tokens, generation_budget)
        if generation_engine not in ("auto", "generate"):
            raise ValueError(f"generation_engine must be 'auto' or 'generate', got {generation_engine!r}.")
        if generation_engine == "auto":
            decoder = _decoder(model, tokenizer, batch_size, len(prompts), progress)
    sink = None if decoder is None else _prefix_sink(decoder, prompts, budgets)
    scores = score_sequences(
        model,
        encoded,
        pad_token_id=tokenizer.pad_token_id,
        batch_size=batch_size,
        token_stats=True,
        progress=_bar_label(progress, "scoring"),
        prefix_sink=sink,
    )
    avg_nll = scores.avg_nll.tolist()
    special = set(getattr(tokenizer, "all_special_ids", []) or []) | {tokenizer.eos_token_id}

    def content(seq: int, what: list) -> torch.Tensor:
        return content_tokens(what[seq], encoded[seq]["labels"], special)

    # 3. Greedy generation of every unique question (forget, retain, RA, WF).
    generations: dict[str, str] = {}
    generation_details: dict[str, Any] = {}
    if generate:
        generations, generation_details = _generate(model, tokenizer, decoder, prompts, budgets, batch_size, progress)

    # 4. Per-split metrics and Model Utility.
    result = EvalResult("tofu")
    m, per = result.metrics, result.per_item
    utility: dict[str, float] = {}
    truth_ratios: dict[str, dict[int, float]] = {}
    for split in ("forget", "retain", *_OPTION_SPLITS):
        if split not in splits:
            continue
        ratio = _split_metrics(result, split, splits[split], plan[split], avg_nll, generations)
        if ratio:
            truth_ratios[split] = ratio
        if split != "forget":
            for name in ("prob", "rouge", "truth_ratio"):
                if m.get(f"{split}_{name}") is not None:
                    utility[f"{split}_{name}"] = m[f"{split}_{name}"]
    m["model_utility"] = M.harmonic_mean(list(utility.values())) if utility else None
    result.details["model_utility"] = {"components": utility}
    if generation_details:
        result.details["generation"] = generation_details

    # Memorisation of the forget answers (teacher-forced argmax, end-of-turn token excluded).
    es = {i: M.extraction_strength(content(ids["answer"], scores.is_argmax)) for i, ids in plan["forget"].items()}
    em = {i: M.exact_memorization(content(ids["answer"], scores.is_argmax)) for i, ids in plan["forget"].items()}
    per["extraction_strength"], per["exact_memorization"] = es, em
    m["extraction_strength"], m["exact_memorization"] = M.mean(es), M.mean(em)

    # Membership inference: forget (members) vs holdout (non-members).
    if "holdout" in splits:
        mia: dict[str, dict[str, dict[int, float]]] = {}
        for split in ("forget", "holdout"):
            mia[split] = {a: {} for a in _MIA_ATTACKS}
            for i, ids in plan[split].items():
                seq = ids["answer"]
                item = score_attacks(
                    avg_nll[seq],
                    content(seq, scores.token_logps),
                    content(seq, scores.minkpp_z),
                    splits[split][i]["answer"],
                    mia_k,
                )
                for attack, value in item.items():
                    mia[split][attack][i] = value
        for attack in _MIA_ATTACKS:
            m[f"mia_{attack}_auc"] = M.auc(list(mia["forget"][attack].values()), list(mia["holdout"][attack].values()))
            per[f"mia_{attack}_forget"], per[f"mia_{attack}_holdout"] = mia["forget"][attack], mia["holdout"][attack]

    result.meta = {
        **comparable,
        "n_items": {s: len(plan[s]) for s in splits},
        "dropped_items": {s: d for s, d in dropped.items() if d},
        "sequences_scored": len(encoded),
        "generation": (
            {"greedy": True, "max_new_tokens": max_new_tokens, "generation_budget": generation_budget}
            if generate
            else None
        ),
        "mia_k": mia_k,
    }
    if any(dropped.values()):
        result.details["dropped"] = {s: len(d) for s, d in dropped.items() if d}

    # Reference-based metrics: Forget Quality and PrivLeak.
    m["forget_quality"], m["privleak"] = None, None
    if reference is not None:
        _reference_metrics(result, reference, truth_ratios.get("forget"), mia_k)
    return result
