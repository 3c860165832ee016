"""Continual unlearning: K sequential requests on the built-in benchmark, O3 against two ways of running NPO.

    .venv/bin/python benchmarks/continual.py                  # -> results/continual.json + continual.png
    .venv/bin/python benchmarks/continual.py --systems o3     # one system (the others are read from the JSON)
    .venv/bin/python benchmarks/continual.py --routing        # routing cost only -> results/continual_routing.json
    .venv/bin/python benchmarks/continual.py --detectors      # detector kinds -> results/continual_detectors.json

Set-up: the quality benchmark's target (``quality.BENCH``: 40 authors, 4 forget authors), one request per forget author
(K = 4, 10 QA each, disjoint), every system trained with the quality benchmark's output-level settings (LoRA r 32 on
every linear layer, lr 2.5e-4, 5 epochs of batch 8):

* ``o3`` - :class:`hf_unlearn.continual.O3Model`: one adapter continued request after request (refusal NLL +
  orthogonality to the earlier requests' ``lora_A``), one detector per request, every query routed;
* ``npo_cumulative`` - NPO (+ retain NLL) re-run from the target on the union of the requests so far, at each request;
* ``npo_sequential`` - NPO (+ retain NLL) on each new request only, continuing the previous request's adapter (its
  reference is the model before that request).

After each request every system is scored on every request so far (forget answer probability on the original and on
the paraphrased questions), on 40 retain QA, the holdout authors and general knowledge (option ranking). O3 is scored
through its routing (each row weighted by its own prompt); O3 also reports each detector's AUROC between its request's
questions (original and paraphrased) and retain plus general-knowledge questions, and the cost of routed generation
of 16 queries against the adapter always on.

``--detectors`` compares the two detector kinds without training (a detector reads the base model only): the
per-example feature bank (``store_features=True``) and the statistics-only detector, on the same requests. For each:
AUROC of the request's questions against retain, holdout and general-knowledge questions, fitted as
``O3Model.unlearn`` fits (original and paraphrased wording) and fitted on the original wording only (the paraphrases
then unseen); at 1% and 5% generic pass rates (calibrated on half of the general-knowledge questions), the share of
each kind of query routed (weight > 0), routed fully (weight 1) and its mean weight, with the four detectors
together (the other half of general knowledge measuring the real pass rate; paraphrases also with detectors fitted on
the original wording only, as real queries are unseen wordings); a retrieval attack on the published detector files:
the request's questions hidden among 20 times as many same-template questions about other authors, ranked by the
detector (and, with a bank, by the largest cosine to it), top-1 and top-10 precision; and exact-wording membership:
the AUROC between the fitted questions and their paraphrases.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import quality as Q  # the benchmark, its target and the output-level settings

RESULTS = Path(__file__).parent / "results"
SYSTEMS = ("o3", "npo_cumulative", "npo_sequential")
TRAIN = {**Q.OUTPUT_LEVEL, "save_strategy": "no", "report_to": [], "logging_steps": 5, "seed": 0}
RETAIN_EVAL = 40
GENERAL_KNOWLEDGE_EVAL: int | None = None  # all 144 facts (the unit test uses a few)


def requests_of(bench: Any) -> list[list[dict]]:
    """One request per forget author (disjoint, in name order)."""
    authors = sorted({r["author"] for r in bench["forget"]})
    return [[r for r in bench["forget"] if r["author"] == a] for a in authors]


def _answer_probs(model, tokenizer, pairs, o3=None, batch_size: int = 16) -> list[float]:
    """Length-normalised answer probability of each (question, answer); with ``o3`` every row is routed by the
    weight of its own prompt."""
    import contextlib

    import torch

    from hf_unlearn.data import encode_prompt, encode_qa
    from hf_unlearn.data.collators import pad_sequences
    from hf_unlearn.evaluation import label_logprobs

    pad = tokenizer.pad_token_id
    out: list[float] = []
    device = next(model.parameters()).device
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        enc = [encode_qa(tokenizer, q, a) for q, a in chunk]
        ids, mask = pad_sequences([e.input_ids for e in enc], pad)
        labels, _ = pad_sequences([e.labels for e in enc], -100)
        weights = None
        if o3 is not None:
            prompt_ids, prompt_mask = pad_sequences([encode_prompt(tokenizer, q) for q, _ in chunk], pad)
            weights = o3.routing_weights(prompt_ids, prompt_mask)
        # The label-position path (no (B, T, V) logits); the LoRA hooks route each row inside it.
        with torch.no_grad(), o3.routed(weights) if o3 is not None else contextlib.nullcontext():
            logps, rows = label_logprobs(model, ids.to(device), mask.to(device), labels.to(device))
        sums = torch.zeros(len(chunk), device=logps.device).index_add_(0, rows, logps)
        counts = torch.bincount(rows, minlength=len(chunk)).clamp(min=1)
        out += torch.exp(sums / counts).tolist()
    return out


def evaluate(model, tokenizer, bench, requests, o3=None) -> dict:
    """Forget probabilities of every request so far and the utility measures (see the module docstring)."""
    model.eval()
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    out: dict[str, Any] = {"requests": []}
    for rows in requests:
        original = _answer_probs(model, tokenizer, [(r["question"], r["answer"]) for r in rows], o3)
        para = _answer_probs(model, tokenizer, [(r["paraphrased_question"], r["answer"]) for r in rows], o3)
        out["requests"].append({"forget_prob": mean(original), "forget_prob_paraphrased": mean(para)})
    retain = bench["retain"][:: max(1, len(bench["retain"]) // RETAIN_EVAL)][:RETAIN_EVAL]
    out["retain_prob"] = mean(_answer_probs(model, tokenizer, [(r["question"], r["answer"]) for r in retain], o3))
    out["holdout_prob"] = mean(
        _answer_probs(model, tokenizer, [(r["question"], r["answer"]) for r in bench["holdout"]], o3)
    )
    hits = []
    for r in bench["general_knowledge"][:GENERAL_KNOWLEDGE_EVAL]:
        options = [r["answer"], *r["perturbed_answer"]]
        probs = _answer_probs(model, tokenizer, [(r["question"], o) for o in options], o3)
        hits.append(float(max(range(len(probs)), key=probs.__getitem__) == 0))
    out["general_knowledge_accuracy"] = mean(hits)
    return out


def _detector_auroc(o3, bench, requests) -> list[float]:
    from hf_unlearn.evaluation import auc

    generic_rows = [*bench["retain"][:: max(1, len(bench["retain"]) // RETAIN_EVAL)], *bench["general_knowledge"]]
    generic = o3.features(o3._question_prompts([{"question": r["question"]} for r in generic_rows]))
    scores = []
    for det, rows in zip(o3.detectors, requests, strict=False):
        own = det.score(o3.features(o3._question_prompts(rows))).tolist()
        scores.append(auc(det.score(generic).tolist(), own))  # P(request question scores above a generic one)
    return scores


def _routing_cost(o3, tokenizer, bench, queries: int = 16, new_tokens: int = 32, rounds: int = 3) -> dict:
    """Greedy generation of ``new_tokens`` tokens for ``queries`` prompts (half forget questions, half general
    knowledge, left-padded into one batch): the adapter always on, routed generation (``O3Model.generate``: the
    feature pass fills the prompt cache of rows routed to 0) and the plain route (a feature pass, then generation from
    scratch). Every row generates exactly ``new_tokens`` tokens, so the three do the same work whatever they answer;
    the three alternate ``rounds`` times and the fastest of each is kept."""
    import torch

    from hf_unlearn.data import encode_prompt
    from hf_unlearn.data.collators import pad_sequences

    rows = [*bench["forget"][: queries // 2], *bench["general_knowledge"][: queries - queries // 2]]
    ids, mask = pad_sequences(
        [encode_prompt(tokenizer, r["question"]) for r in rows], tokenizer.pad_token_id, padding_side="left"
    )
    kw = dict(
        attention_mask=mask,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
    )

    def adapter_on():
        with o3.routed(torch.ones(len(rows))):
            o3.model.generate(input_ids=ids, **kw)

    def plain():
        with o3.routed(o3.routing_weights(ids, mask)):
            o3.model.generate(input_ids=ids, **kw)

    runs = {"adapter_on": adapter_on, "routed": lambda: o3.generate(ids, **kw), "routed_plain": plain}
    times: dict[str, float] = {}
    with torch.no_grad():
        for _ in range(rounds):
            for name, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                times[name] = min(times.get(name, float("inf")), time.perf_counter() - t0)
    return {
        "queries": len(rows),
        "prompt_tokens": int(mask.sum()),
        "new_tokens": new_tokens,
        "routed_rows": int((o3.routing_weights(ids, mask) > 0).sum()),
        **{f"{k}_seconds": round(v, 3) for k, v in times.items()},
        "ratio": round(times["routed"] / times["adapter_on"], 3),
        "ratio_plain": round(times["routed_plain"] / times["adapter_on"], 3),
    }


def routing_child(steps: int = 2) -> dict:
    """Routing cost alone, without the 1.5-hour training: the O3 run's requests with ``steps`` optimizer steps each.
    Its detectors equal the full run's (they read the base model with the adapter off) and the cost of a LoRA forward
    does not depend on the adapter's values, so only the generated text differs from the full run."""
    import tempfile

    import torch
    from peft import LoraConfig

    import hf_unlearn as hu
    from hf_unlearn.continual import O3Model
    from hf_unlearn.references import prepare_references

    bench = hu.build_fictitious_authors(**Q.BENCH)
    model, tok = hu.load_model(str(prepare_references(bench).target_dir))
    o3 = O3Model.from_base(model, tok, LoraConfig(**Q.LORA, task_type="CAUSAL_LM"))
    with tempfile.TemporaryDirectory() as work:
        for t, rows in enumerate(requests_of(bench)):
            args = hu.O3Config(output_dir=f"{work}/{t}", **{**TRAIN, "max_steps": steps})
            o3.unlearn(rows, name=f"request-{t + 1}", args=args)
    o3.eval()
    info = {"requests": len(o3.detectors), "train_steps_per_request": steps, "torch_threads": torch.get_num_threads()}
    return {**info, **_routing_cost(o3, tok, bench)}


DETECTOR_KINDS = {"feature_bank": True, "statistics_only": False}
DECOYS_PER_QUESTION = 20
PASS_RATES = (0.01, 0.05)


def decoy_questions(bench, rows, per_question: int = DECOYS_PER_QUESTION, seed: int = 0) -> list[str]:
    """``per_question`` questions of the same fact type about authors outside ``bench`` for each of ``rows``: what an
    attacker would test against published detector files (the same templates, other people)."""
    import random

    import hf_unlearn as hu

    known = {r["author"] for split in ("forget", "retain", "holdout") for r in bench[split]}
    other = hu.build_fictitious_authors(num_authors=400, seed=seed + 4321)
    pool: dict[str, list[str]] = {}
    for split in ("forget", "retain", "holdout"):
        for r in other[split]:
            if r["author"] not in known:
                pool.setdefault(r["fact_type"], []).append(r["question"])
    rng = random.Random(seed)
    return [q for r in rows for q in rng.sample(pool[r["fact_type"]], per_question)]


def _precision_at(scores: list[float], is_target: list[bool], k: int) -> float:
    top = sorted(range(len(scores)), key=lambda i: -scores[i])[:k]
    return sum(is_target[i] for i in top) / k


def detectors_child() -> dict:
    """See ``--detectors`` in the module docstring: the quality benchmark's target and requests."""
    import hf_unlearn as hu
    from hf_unlearn.references import prepare_references

    bench = hu.build_fictitious_authors(**Q.BENCH)
    model, tok = hu.load_model(str(prepare_references(bench, evaluate=False).target_dir))
    return compare_detectors(model, tok, bench)


def compare_detectors(model, tok, bench) -> dict:
    """The two detector kinds on ``bench``'s requests, read from ``model`` (see ``--detectors``)."""
    import torch

    from hf_unlearn.continual import O3Model, RequestDetector
    from hf_unlearn.evaluation import auc

    t0 = time.perf_counter()
    o3 = O3Model.from_base(model, tok)  # a fresh adapter (B = 0): features are the target model's
    o3.eval()
    requests = requests_of(bench)

    def feats(questions: list[str]):
        return o3.features(o3._question_prompts([{"question": q} for q in questions]))

    general = [r["question"] for r in bench["general_knowledge"]]
    calibration, general_test = feats(general[::2]), feats(general[1::2])
    retain = feats([r["question"] for r in bench["retain"][:: max(1, len(bench["retain"]) // RETAIN_EVAL)]])
    holdout = feats([r["question"] for r in bench["holdout"]])
    original = [feats([r["question"] for r in rows]) for rows in requests]
    paraphrased = [feats([r["paraphrased_question"] for r in rows]) for rows in requests]
    decoys = [feats(decoy_questions(bench, rows, seed=t)) for t, rows in enumerate(requests)]
    others = {"retain": retain, "holdout": holdout, "general": general_test}
    out: dict[str, Any] = {"requests": len(requests), "questions_per_request": len(requests[0]), "kinds": {}}
    for kind, bank in DETECTOR_KINDS.items():
        row: dict[str, Any] = {}
        for fit_on in ("both_wordings", "original_only"):
            aurocs = {f"{w}_vs_{o}": [] for w in ("original", "paraphrased") for o in others}
            for t in range(len(requests)):
                fit = torch.cat([original[t], paraphrased[t]], 1) if fit_on == "both_wordings" else original[t]
                det = RequestDetector.fit(fit, store_features=bank)
                for wording, f in (("original", original[t]), ("paraphrased", paraphrased[t])):
                    own = det.score(f).tolist()
                    for name, g in others.items():
                        aurocs[f"{wording}_vs_{name}"].append(auc(det.score(g).tolist(), own))
            row[f"auroc_fit_{fit_on}"] = {k: {"min": min(v), "mean": sum(v) / len(v)} for k, v in aurocs.items()}
        for rate in PASS_RATES:  # the four detectors together, as O3Model routes (fitted as O3Model.unlearn fits)
            dets = [
                RequestDetector.fit(torch.cat([o, p], 1), store_features=bank).calibrate(
                    calibration, false_positive_rate=rate
                )
                for o, p in zip(original, paraphrased, strict=True)
            ]

            def weights(f, dets=dets):
                return torch.stack([d.weight(f) for d in dets]).max(0).values

            routed = {
                "forget_original": torch.cat([weights(f) for f in original]),
                "forget_paraphrased": torch.cat([weights(f) for f in paraphrased]),
                **{name: weights(f) for name, f in others.items()},
            }
            # Fitted on the original wording only: the weights real queries (unseen wordings) get.
            unseen = [
                RequestDetector.fit(o, store_features=bank).calibrate(calibration, false_positive_rate=rate)
                for o in original
            ]
            routed["forget_unseen_paraphrase"] = torch.cat(
                [torch.stack([d.weight(p) for d in unseen]).max(0).values for p in paraphrased]
            )
            row[f"pass_rate_{rate:g}"] = {
                name: {
                    "routed": float((w > 0).float().mean()),
                    "full": float((w >= 1).float().mean()),
                    "mean_weight": float(w.mean()),
                }
                for name, w in routed.items()
            }
        attack: dict[str, Any] = {}
        for wording, targets in (("original", original), ("paraphrased", paraphrased)):
            rankings = {"detector_score": []} | ({"max_cosine": []} if bank else {})
            for t in range(len(requests)):
                det = RequestDetector.fit(torch.cat([original[t], paraphrased[t]], 1), store_features=bank)
                pool = torch.cat([targets[t], decoys[t]], 1)
                is_target = [True] * targets[t].shape[1] + [False] * decoys[t].shape[1]
                scores = {"detector_score": det.score(pool).tolist()}
                if bank:
                    unit = torch.nn.functional.normalize(pool.float(), dim=-1)
                    cos = (unit @ det.tensors["bank"].transpose(1, 2)).max(-1).values.mean(0)
                    scores["max_cosine"] = cos.tolist()
                for name, s in scores.items():
                    rankings[name].append({f"top_{k}": _precision_at(s, is_target, k) for k in (1, 10)})
            attack[wording] = {
                name: {k: sum(r[k] for r in rs) / len(rs) for k in ("top_1", "top_10")} for name, rs in rankings.items()
            }
        row["retrieval_attack"] = attack
        # Exact wording: were these very strings in the request? Fitted on the original wording, the originals against
        # their paraphrases (same author, same facts, other words).
        membership = []
        for t in range(len(requests)):
            det = RequestDetector.fit(original[t], store_features=bank)
            membership.append(auc(det.score(paraphrased[t]).tolist(), det.score(original[t]).tolist()))
        row["exact_wording_auroc"] = {"min": min(membership), "mean": sum(membership) / len(membership)}
        out["kinds"][kind] = row
    n_target = original[0].shape[1]
    out["retrieval_chance"] = n_target / (n_target + decoys[0].shape[1])
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def detectors_table(data: dict) -> str:
    """The docs' comparison of the two detector kinds."""
    lines = [
        "| detector | AUROC, fitted as O3 fits (min over requests and comparisons) | "
        "AUROC on unseen paraphrases (min) | "
        "mean weight at 1%: fitted questions; unseen paraphrases; retain; holdout | general pass rate at 1% / 5% | "
        "retrieval attack top-1 / top-10 (original wording; paraphrased) | exact-wording membership AUROC (mean) |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, r in data["kinds"].items():
        fit_both = min(v["min"] for v in r["auroc_fit_both_wordings"].values())
        unseen = min(v["min"] for k, v in r["auroc_fit_original_only"].items() if k.startswith("paraphrased"))
        p1, p5 = r["pass_rate_0.01"], r["pass_rate_0.05"]
        routed = "; ".join(
            f"{p1[k]['mean_weight']:.2f}" for k in ("forget_original", "forget_unseen_paraphrase", "retain", "holdout")
        )
        best = {w: max(a.values(), key=lambda x: x["top_10"]) for w, a in r["retrieval_attack"].items()}
        attack = "; ".join(f"{best[w]['top_1']:.2f} / {best[w]['top_10']:.2f}" for w in ("original", "paraphrased"))
        lines.append(
            f"| {kind.replace('_', ' ')} | {fit_both:.3f} | {unseen:.3f} | {routed} | "
            f"{p1['general']['routed']:.3f} / {p5['general']['routed']:.3f} | {attack} | "
            f"{r['exact_wording_auroc']['mean']:.3f} |"
        )
    return "\n".join(lines) + f"\n\nRetrieval by chance: {data['retrieval_chance']:.3f}."


def run(system: str, target_dir: str, bench, requests, lora: dict | None = None, train: dict | None = None) -> dict:
    """Train ``system`` request after request from ``target_dir``; the evaluation after each request."""
    import tempfile

    from peft import LoraConfig, get_peft_model

    import hf_unlearn as hu
    from hf_unlearn.continual import O3Model

    lora, train = lora or Q.LORA, train or TRAIN
    steps, t0 = [], time.perf_counter()
    model, tok = hu.load_model(target_dir)
    before = evaluate(model, tok, bench, requests)
    with tempfile.TemporaryDirectory() as work:
        if system == "o3":
            o3 = O3Model.from_base(model, tok, LoraConfig(**lora, task_type="CAUSAL_LM"))
            for t, rows in enumerate(requests):
                o3.unlearn(rows, name=f"request-{t + 1}", args=hu.O3Config(output_dir=f"{work}/{t}", **train))
                step = evaluate(o3.model, tok, bench, requests[: t + 1], o3=o3)
                step["detector_auroc"] = _detector_auroc(o3, bench, requests[: t + 1])
                steps.append(step)
            extra = {"routed_generation": _routing_cost(o3, tok, bench), "manifest": o3.manifest}
        elif system in ("npo_cumulative", "npo_sequential"):

            def npo(model, rows, t):  # NPO + retain NLL on ``rows``; a PeftModel continues its own adapter
                trainer = hu.NPOTrainer(
                    model,
                    args=hu.NPOConfig(output_dir=f"{work}/{t}", **train),
                    forget_dataset=rows,
                    retain_dataset=bench["retain"],
                    processing_class=tok,
                )
                trainer.train()
                return trainer.accelerator.unwrap_model(trainer.model)

            sequential = get_peft_model(model, LoraConfig(**lora, task_type="CAUSAL_LM"))
            for t in range(len(requests)):
                if system == "npo_cumulative":  # from the target every time, on every request so far
                    fresh = get_peft_model(hu.load_model(target_dir)[0], LoraConfig(**lora, task_type="CAUSAL_LM"))
                    trained = npo(fresh, [r for req in requests[: t + 1] for r in req], t)
                else:
                    trained = sequential = npo(sequential, requests[t], t)
                steps.append(evaluate(trained, tok, bench, requests[: t + 1]))
            extra = {}
        else:
            raise ValueError(f"Unknown system {system!r}; choose from {', '.join(SYSTEMS)}.")
    return {"system": system, "target": before, "steps": steps, "seconds": round(time.perf_counter() - t0, 1), **extra}


def child(system: str) -> dict:
    import hf_unlearn as hu
    from hf_unlearn.references import prepare_references

    bench = hu.build_fictitious_authors(**Q.BENCH)
    refs = prepare_references(bench)
    return run(system, str(refs.target_dir), bench, requests_of(bench))


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for r in rows:
        k = range(1, len(r["steps"]) + 1)
        axes[0].plot(k, [s["general_knowledge_accuracy"] for s in r["steps"]], marker="o", label=r["system"])
        axes[1].plot(k, [s["retain_prob"] for s in r["steps"]], marker="o", label=r["system"])
        axes[2].plot(
            k, [max(q["forget_prob"] for q in s["requests"]) for s in r["steps"]], marker="o", label=r["system"]
        )
    for ax, title in zip(
        axes, ("general knowledge ↑", "retain answer prob ↑", "worst forget prob so far ↓"), strict=True
    ):
        ax.set_title(title)
        ax.set_xlabel("request")
    axes[0].legend()
    fig.suptitle("Continual unlearning: 4 requests of one author each (bundled model, built-in benchmark)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(rows: list[dict]) -> str:
    """The docs' table: every system after each request (forget answer probability of the requests so far, worst
    and mean, original / paraphrased questions; utility), the target first."""
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    lines = [
        "| system | after request | forget prob, worst / mean | paraphrased, mean | retain prob | holdout prob | "
        "general knowledge | detector AUROC, min |",
        "|---|---|---|---|---|---|---|",
    ]

    def line(name: str, k: str, s: dict) -> str:
        f = [q["forget_prob"] for q in s["requests"]]
        para = mean([q["forget_prob_paraphrased"] for q in s["requests"]])
        auroc = f"{min(s['detector_auroc']):.3f}" if s.get("detector_auroc") else "-"
        return (
            f"| {name} | {k} | {max(f):.3f} / {mean(f):.3f} | {para:.3f} | {s['retain_prob']:.3f} | "
            f"{s['holdout_prob']:.3f} | {s['general_knowledge_accuracy']:.3f} | {auroc} |"
        )

    if rows:
        lines.append(line("target", "-", rows[0]["target"]))
    for r in rows:
        lines += [line(r["system"], str(k), s) for k, s in enumerate(r["steps"], 1)]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--systems", nargs="*", default=list(SYSTEMS))
    p.add_argument("--routing", action="store_true", help="only the routing cost -> results/continual_routing.json")
    p.add_argument("--detectors", action="store_true", help="detector kinds -> results/continual_detectors.json")
    a = p.parse_args()
    if a.child:
        children = {"routing": routing_child, "detectors": detectors_child}
        print("RESULT " + json.dumps(children[a.child]() if a.child in children else child(a.child)), flush=True)
        return
    if a.detectors:
        from _machine import machine_info

        row = {**Q.run_child(__file__, "detectors"), "machine": machine_info()}
        (RESULTS / "continual_detectors.json").write_text(json.dumps(row, indent=1) + "\n")
        print(detectors_table(row))
        return
    if a.routing:
        from _machine import machine_info

        row = {**Q.run_child(__file__, "routing"), "machine": machine_info()}
        (RESULTS / "continual_routing.json").write_text(json.dumps(row, indent=1) + "\n")
        print(json.dumps(row, indent=1))
        return
    out = RESULTS / "continual.json"
    rows = {r["system"]: r for r in (json.loads(out.read_text()) if out.is_file() else [])}
    for system in a.systems:
        rows[system] = Q.run_child(__file__, system)
        out.write_text(json.dumps([rows[s] for s in SYSTEMS if s in rows], indent=1) + "\n")
    plot([rows[s] for s in SYSTEMS if s in rows], RESULTS / "continual.png")
    print(table([rows[s] for s in SYSTEMS if s in rows]))


if __name__ == "__main__":
    main()
