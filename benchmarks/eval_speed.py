"""Evaluation speed, in two parts (both write ``benchmarks/results/eval_speed.json``; a part run alone keeps the other's
committed numbers).

    .venv/bin/python benchmarks/eval_speed.py --part scoring      # suite vs one pass per metric
    .venv/bin/python benchmarks/eval_speed.py --part generation   # GreedyDecoder vs model.generate

**scoring**: the TOFU-style suite (one shared scoring pass + one generation pass) against a straightforward evaluation
that runs one pass per metric with full logits, in dataset order - the way open-unlearning's evaluator is organised.
Both compute the same numbers on the built-in demo split with the bundled model; the script checks that every
aggregate agrees to 1e-5 and reports both wall times. Generation (ROUGE) is one identical pass in both.

**generation**: the suite before and after the decoder, on the same items (the quality benchmark's evaluation split) at
``max_new_tokens=200`` (open-unlearning's default), batch 32, for the demo's target model (short answers) and the
bundled instruct model (long answers, as an over-unlearned model's rambling). Each configuration runs in a fresh
process, so its peak resident memory is its own:

- ``before``: today's implementation kept runnable - scoring with the LM head over up to 4096 label positions at a
  time, then ``model.generate`` on fixed length-sorted batches (``generation_engine="generate"``);
- ``static_cache``: the same ``model.generate`` with ``cache_implementation="static"``;
- ``after``: the suite as shipped (GreedyDecoder fed by the scoring pass's prompt caches, 256-row LM-head chunks);
- ``after_budget``: the same with ``generation_budget=2.0`` (each split capped at twice its longest answer).

It checks that ``after`` produces the same greedy text for every question and the same metrics as ``before``, and
reports how many ROUGE-L values the budget changes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_info
from quality import BENCH

from hf_unlearn import build_fictitious_authors, load_model
from hf_unlearn.data import DataCollatorForUnlearning, encode_qa
from hf_unlearn.evaluation import builtin_tofu_splits, evaluate_tofu, generate_answers
from hf_unlearn.evaluation import metrics as M

OUT = Path(__file__).parent / "results" / "eval_speed.json"
BATCH, MAX_NEW = 32, 48


def _full_logits_pass(model, tok, pairs):
    """One straightforward pass: dataset-order batches, full (B, T, V) logits, float32 log-softmax.

    Returns per pair: (average NLL, label-token log-probs, argmax hits, Min-K%++ z) - each metric below calls this
    for its own data, as separate evaluators would.
    """
    collate = DataCollatorForUnlearning(pad_token_id=tok.pad_token_id)
    out = []
    with torch.no_grad():
        for start in range(0, len(pairs), BATCH):
            chunk = [encode_qa(tok, q, a).to_dict() for q, a in pairs[start : start + BATCH]]
            b = collate(chunk)
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1].float()
            logp = logits.log_softmax(-1)
            for r in range(len(chunk)):
                t = b["labels"][r, 1:]
                sel = t != -100
                lp = logp[r][sel]
                picked = lp.gather(-1, t[sel][:, None]).squeeze(-1)
                p = lp.exp()
                mu = (p * lp).sum(-1)
                z = (picked - mu) / ((p * lp.square()).sum(-1) - mu.square()).clamp(min=1e-6).sqrt()
                hits = logits[r][sel].argmax(-1) == t[sel]
                out.append((float(-picked.mean()), picked, hits, z))
    return out


def naive(model, tok, splits, generations):
    m = {}
    content = lambda x: x[:-1]  # noqa: E731  (the end-of-turn token is excluded from MIA/ES/EM)
    utility = {}
    for split in ("forget", "retain", "world_facts"):
        rows = splits[split]
        ans = _full_logits_pass(model, tok, [(r["question"], r["answer"]) for r in rows])  # Prob
        if split == "world_facts":  # Prob normalised over options: its own pass over the options
            opts = [_full_logits_pass(model, tok, [(r["question"], p) for p in r["perturbed_answer"]]) for r in rows]
            m[f"{split}_prob"] = sum(
                math.exp(-a[0]) / (math.exp(-a[0]) + sum(math.exp(-o[0]) for o in os_))
                for a, os_ in zip(ans, opts, strict=True)
            ) / len(rows)
            true = _full_logits_pass(model, tok, [(r["question"], r["answer"]) for r in rows])  # TR: true answers
        else:
            m[f"{split}_prob"] = sum(math.exp(-a[0]) for a in ans) / len(rows)
            true = _full_logits_pass(model, tok, [(r["question"], r["paraphrased_answer"]) for r in rows])
        pert = [_full_logits_pass(model, tok, [(r["question"], p) for p in r["perturbed_answer"]]) for r in rows]
        ratios = [M.truth_ratio(t[0], [p[0] for p in ps]) for t, ps in zip(true, pert, strict=True)]
        m[f"{split}_truth_ratio"] = M.truth_ratio_aggregate(
            ratios, "closer_to_1" if split == "forget" else "true_better"
        )
        m[f"{split}_rouge"] = sum(M.rouge_l(generations[r["question"]], r["answer"])["recall"] for r in rows) / len(
            rows
        )
        if split != "forget":
            utility.update({f"{split}_{k}": m[f"{split}_{k}"] for k in ("prob", "rouge", "truth_ratio")})
    m["model_utility"] = M.harmonic_mean(list(utility.values()))
    forget_pairs = [(r["question"], r["answer"]) for r in splits["forget"]]
    holdout_pairs = [(r["question"], r["answer"]) for r in splits["holdout"]]
    es = _full_logits_pass(model, tok, forget_pairs)
    m["extraction_strength"] = sum(M.extraction_strength(content(x[2])) for x in es) / len(es)
    em = _full_logits_pass(model, tok, forget_pairs)
    m["exact_memorization"] = sum(M.exact_memorization(content(x[2])) for x in em) / len(em)
    attacks = {
        "loss": lambda x, a: x[0],
        "zlib": lambda x, a: M.zlib_score(x[0], a),
        "min_k": lambda x, a: M.min_k_score(content(x[1]), 0.4),
        "min_k_plus_plus": lambda x, a: M.min_k_score(content(x[3]), 0.4),
    }
    for name, fn in attacks.items():  # each attack runs its own passes over forget and holdout
        f = [fn(x, a) for x, (_, a) in zip(_full_logits_pass(model, tok, forget_pairs), forget_pairs, strict=True)]
        h = [fn(x, a) for x, (_, a) in zip(_full_logits_pass(model, tok, holdout_pairs), holdout_pairs, strict=True)]
        m[f"mia_{name}_auc"] = M.auc(f, h)
    return m


GEN_MAX_NEW, GEN_BATCH = 200, 32
GEN_CONFIGS = ("before", "static_cache", "after", "after_budget")


def _generation_run(model_path: str, config: str, out: str) -> None:
    """One configuration in this (fresh) process: time, peak memory, generations and metrics to ``out``."""
    import functools

    import hf_unlearn.evaluation.tofu as tofu
    from hf_unlearn.evaluation.generation import decode_generation, generate_ids

    model, tok = load_model(model_path)
    model.eval()
    splits = builtin_tofu_splits(build_fictitious_authors(**BENCH), retain_size=40)
    record: dict = {"config": config}
    if config in ("before", "static_cache"):
        tofu.score_sequences = functools.partial(tofu.score_sequences, logit_rows=4096)  # the previous chunking
        kwargs = {"cache_implementation": "static"} if config == "static_cache" else {}
        timer = {"seconds": 0.0}

        def timed_generate(model, tok, prompts, *, max_new_tokens, batch_size, progress, engine):
            start = time.perf_counter()
            ids = generate_ids(
                model, tok, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, engine=engine, **kwargs
            )
            timer["seconds"] += time.perf_counter() - start
            return [decode_generation(tok, x) for x in ids]

        tofu.generate_from_ids = timed_generate
        start = time.perf_counter()
        result = evaluate_tofu(
            model, tok, **splits, max_new_tokens=GEN_MAX_NEW, batch_size=GEN_BATCH, generation_engine="generate"
        )
        record["seconds_suite"] = time.perf_counter() - start
        record["seconds_generation"] = timer["seconds"]
        record["seconds_scoring"] = record["seconds_suite"] - timer["seconds"]
    else:
        budget = 2.0 if config == "after_budget" else None
        start = time.perf_counter()
        result = evaluate_tofu(
            model, tok, **splits, max_new_tokens=GEN_MAX_NEW, batch_size=GEN_BATCH, generation_budget=budget
        )
        record["seconds_suite"] = time.perf_counter() - start
        details = result.details["generation"]
        record["seconds_generation"] = details["seconds"]  # the decoder's own time, interleaved with scoring
        record["seconds_scoring"] = record["seconds_suite"] - details["seconds"]
        record["decoder"] = details
    record["metrics"] = result.metrics
    record["generations"] = {
        splits[s][i]["question"]: text
        for s in ("forget", "retain", "world_facts")
        for i, text in result.per_item[f"{s}_generation"].items()
    }
    record["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(out).write_text(json.dumps(record))


def _generation_part() -> dict:
    from hf_unlearn.references import prepare_references

    models = {"target": str(prepare_references(build_fictitious_authors(**BENCH)).target_dir), "bundled": "bundled"}
    part: dict = {"max_new_tokens": GEN_MAX_NEW, "batch_size": GEN_BATCH, "models": {}}
    tmp = Path(tempfile.gettempdir()) / f"hf_unlearn_eval_speed_{os.getpid()}.json"
    for name, path in models.items():
        runs = {}
        for config in GEN_CONFIGS:
            cmd = [sys.executable, __file__, "--one", path, config, str(tmp)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                runs[config] = {"error": proc.stderr.strip().splitlines()[-1]}
                print(f"{name} {config}: failed: {runs[config]['error']}")
                continue
            runs[config] = json.loads(tmp.read_text())
            r = runs[config]
            print(
                f"{name} {config}: suite {r['seconds_suite']:.1f} s (scoring {r['seconds_scoring']:.1f}, "
                f"generation {r['seconds_generation']:.1f}), peak {r['peak_rss_mb']:.0f} MB"
            )
        tmp.unlink(missing_ok=True)
        before, after, budget = runs["before"], runs["after"], runs["after_budget"]
        questions = list(before["generations"])
        row = {
            "questions": len(questions),
            "configs": {
                c: {
                    k: (round(v, 1) if isinstance(v, float) else v)
                    for k, v in r.items()
                    if k not in ("generations", "metrics", "config")
                }
                for c, r in runs.items()
            },
            "identical_generations": sum(before["generations"][q] == after["generations"][q] for q in questions),
            "identical_generations_static_cache": (
                sum(before["generations"][q] == runs["static_cache"]["generations"][q] for q in questions)
                if "generations" in runs["static_cache"]
                else None
            ),
            "metrics_max_abs_diff": max(
                abs((before["metrics"][k] or 0) - (after["metrics"][k] or 0)) for k in before["metrics"]
            ),
            "generation_speedup": round(before["seconds_generation"] / after["seconds_generation"], 2),
            "suite_speedup": round(before["seconds_suite"] / after["seconds_suite"], 2),
            "suite_speedup_with_budget": round(before["seconds_suite"] / budget["seconds_suite"], 2),
            "budget_rouge": {
                k: [after["metrics"][k], budget["metrics"][k]] for k in after["metrics"] if k.endswith("_rouge")
            },
            "budget_texts_changed": sum(after["generations"][q] != budget["generations"][q] for q in questions),
        }
        part["models"][name] = row
        print(
            f"{name}: generation {row['generation_speedup']}x, suite {row['suite_speedup']}x "
            f"({row['suite_speedup_with_budget']}x with the budget), identical "
            f"{row['identical_generations']}/{len(questions)}"
        )
    return part


def _scoring_part() -> dict:
    model, tok = load_model("bundled")
    model.eval()
    splits = builtin_tofu_splits(build_fictitious_authors(num_authors=20), retain_size=40)
    start = time.perf_counter()
    ours = evaluate_tofu(model, tok, **splits, max_new_tokens=MAX_NEW, batch_size=BATCH)
    t_ours = time.perf_counter() - start

    start = time.perf_counter()
    questions = list(dict.fromkeys(r["question"] for s in ("forget", "retain", "world_facts") for r in splits[s]))
    generations = dict(
        zip(questions, generate_answers(model, tok, questions, max_new_tokens=MAX_NEW, batch_size=BATCH), strict=True)
    )
    base = naive(model, tok, splits, generations)
    t_naive = time.perf_counter() - start

    diffs = {k: abs(base[k] - ours.metrics[k]) for k in base}
    result = {
        "split": {k: len(v) for k, v in splits.items()},
        "sequences_scored_by_suite": ours.meta["sequences_scored"],
        "seconds_suite": round(t_ours, 1),
        "seconds_one_pass_per_metric": round(t_naive, 1),
        "speedup": round(t_naive / t_ours, 2),
        "max_abs_diff": max(diffs.values()),
        "diffs": diffs,
        "machine": machine_info(),
    }
    print(
        f"suite {t_ours:.1f} s, one pass per metric {t_naive:.1f} s, speedup {result['speedup']}x, "
        f"max |diff| {result['max_abs_diff']:.2e}"
    )
    if result["max_abs_diff"] > 1e-5:
        raise SystemExit(f"values differ: {diffs}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["scoring", "generation", "all"], default="all")
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "CONFIG", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        _generation_run(*args.one)
        return
    results = json.loads(OUT.read_text()) if OUT.is_file() else {}
    if "scoring" not in results and "speedup" in results:  # the layout before the generation part
        results = {"scoring": results}
    if args.part in ("scoring", "all"):
        results["scoring"] = _scoring_part()
    if args.part in ("generation", "all"):
        results["generation"] = {**_generation_part(), "machine": machine_info()}
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
