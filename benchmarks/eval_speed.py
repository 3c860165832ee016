"""The TOFU-style suite (one shared scoring pass + one generation pass) against a straightforward evaluation that runs
one pass per metric with full logits, in dataset order - the way open-unlearning's evaluator is organised.

    .venv/bin/python benchmarks/eval_speed.py    # writes benchmarks/results/eval_speed.json

Both compute the same numbers on the built-in demo split with the bundled model; the script checks that every
aggregate agrees to 1e-5 and reports both wall times. Generation (ROUGE) is one identical pass in both.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_info

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


def main() -> None:
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
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"suite {t_ours:.1f} s, one pass per metric {t_naive:.1f} s, speedup {result['speedup']}x, "
        f"max |diff| {result['max_abs_diff']:.2e}"
    )
    if result["max_abs_diff"] > 1e-5:
        raise SystemExit(f"values differ: {diffs}")


if __name__ == "__main__":
    main()
