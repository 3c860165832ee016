"""Evaluation metrics on cases whose value is known by hand or computed independently; suites on tiny models."""

import math
import re

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from hf_unlearn import build_fictitious_authors
from hf_unlearn.cli import main
from hf_unlearn.evaluation import (
    EvalResult,
    ReferenceMismatchError,
    auc,
    builtin_muse_splits,
    builtin_tofu_splits,
    evaluate_mcq,
    evaluate_mia,
    evaluate_muse,
    evaluate_tofu,
    exact_memorization,
    extraction_strength,
    forget_quality,
    harmonic_mean,
    min_k_score,
    next_token_logprobs,
    privleak,
    rouge_l,
    score_sequences,
    truth_ratio,
    truth_ratio_aggregate,
)
from hf_unlearn.logprobs import gather_label_logprobs

from .conftest import make_tiny_llama


@pytest.fixture(scope="module")
def bench():
    return build_fictitious_authors(num_authors=10, qa_per_author=2, seed=4)


def test_rouge_on_fixed_strings():
    r = rouge_l("alpha beta gamma delta", "alpha beta omega delta")  # LCS = alpha beta delta
    assert r["recall"] == pytest.approx(3 / 4) and r["f1"] == pytest.approx(3 / 4)
    r = rouge_l("alpha beta", "alpha beta omega delta")
    assert r["recall"] == pytest.approx(2 / 4) and r["f1"] == pytest.approx(2 * (1 * 0.5) / 1.5)
    assert rouge_l("walking", "walked")["recall"] == 1.0  # Porter stemmer, as open-unlearning uses


def test_truth_ratio_and_aggregators_from_constructed_probabilities():
    # P_true = 0.5, perturbed probs 0.25 and 0.0625 -> geometric mean 0.125 -> R = 0.25
    r = truth_ratio(-math.log(0.5), [-math.log(0.25), -math.log(0.0625)])
    assert r == pytest.approx(0.125 / 0.5, rel=1e-6)
    ratios = [0.25, 4.0, 1.0]
    assert truth_ratio_aggregate(ratios, "closer_to_1") == pytest.approx((0.25 + 0.25 + 1.0) / 3)
    assert truth_ratio_aggregate(ratios, "true_better") == pytest.approx((0.75 + 0 + 0) / 3)
    assert truth_ratio_aggregate(ratios, "prob_mean") == pytest.approx((1 / 1.25 + 1 / 5 + 1 / 2) / 3)
    with pytest.raises(ValueError, match="aggregator"):
        truth_ratio_aggregate(ratios, "mean")


def test_forget_quality_is_scipy_ks_and_one_against_itself():
    rng = np.random.default_rng(0)
    a, b = rng.random(40), rng.random(30) ** 2
    fq = forget_quality(a, b)
    ref = ks_2samp(a, b)
    assert fq["p_value"] == pytest.approx(ref.pvalue) and fq["statistic"] == pytest.approx(ref.statistic)
    assert (fq["n"], fq["n_reference"]) == (40, 30)
    assert forget_quality(a, a)["p_value"] == 1.0


def test_model_utility_collapses_at_zero():
    assert harmonic_mean([0.5, 0.25]) == pytest.approx(2 / (2 + 4))
    assert harmonic_mean([0.9, 0.0, 0.7]) == 0.0


def test_memorisation_scores_by_hand():
    hits = torch.tensor([False, True, False, True, True])
    assert exact_memorization(hits) == pytest.approx(3 / 5)
    assert extraction_strength(hits) == pytest.approx(1 - 3 / 5)  # suffix match starts at k = 3
    assert extraction_strength(torch.tensor([True, True])) == 1.0
    assert extraction_strength(torch.tensor([True, False])) == 0.0


def test_auc_and_privleak_conventions():
    forget, holdout = [0.1, 0.2, 0.3], [0.25, 0.4, 0.2]  # higher = less member-like
    pairs = [(h > f) + 0.5 * (h == f) for f in forget for h in holdout]
    assert auc(forget, holdout) == pytest.approx(sum(pairs) / len(pairs))
    assert privleak(0.7, 0.7) == 0.0
    a, r = 0.9, 0.55
    muse_auc, muse_ref = 1 - a, 1 - r  # MUSE's convention
    assert privleak(a, r) == pytest.approx((muse_auc - muse_ref) / muse_ref * 100)
    assert privleak(0.99, 0.5) < 0  # forget still looks like training data: under-unlearning


def test_min_k_plus_plus_on_a_distribution_computed_here():
    torch.manual_seed(0)
    head = torch.nn.Linear(4, 7, bias=False)
    hidden = torch.randn(1, 4, 4)
    labels = torch.tensor([[-100, 3, 5, 1]])
    g = gather_label_logprobs(hidden, head, labels, stats=True)
    logits = head(hidden[0, :3]).double()
    logp = torch.log_softmax(logits, -1)
    targets = torch.tensor([3, 5, 1])
    picked = logp[torch.arange(3), targets]
    p = logp.exp()
    mu = (p * logp).sum(-1)
    sigma = ((p * logp**2).sum(-1) - mu**2).sqrt()
    torch.testing.assert_close(g.logps.double(), picked, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g.minkpp_z.double(), (picked - mu) / sigma, rtol=1e-4, atol=1e-5)
    assert g.is_argmax.tolist() == (logits.argmax(-1) == targets).tolist()
    z = torch.tensor([0.5, -2.0, 1.0, -1.0, 3.0])
    assert min_k_score(z, 0.4) == pytest.approx(1.5)  # mean of the 2 smallest, negated
    assert min_k_score(z[:2], 0.4) == pytest.approx(2.0)  # at least one token


def test_next_token_logprobs_match_sequence_scores(chat_tokenizer, tiny_model):
    prompt = chat_tokenizer("The capital of France is")["input_ids"]
    cands = chat_tokenizer(" Paris Lyon", add_special_tokens=False)["input_ids"]
    nt = next_token_logprobs(tiny_model, [prompt, prompt[:3]], cands, pad_token_id=chat_tokenizer.pad_token_id)
    for j, c in enumerate(cands):
        s = score_sequences(
            tiny_model,
            [{"input_ids": [*prompt, c], "labels": [-100] * len(prompt) + [c]}],
            pad_token_id=chat_tokenizer.pad_token_id,
        )
        assert float(nt[0, j]) == pytest.approx(float(s.sum_logprob[0]), abs=1e-5)


def test_tofu_suite_values_reference_and_drops(chat_tokenizer, bench):
    model = make_tiny_llama(chat_tokenizer)
    splits = builtin_tofu_splits(bench, retain_size=10)
    splits["forget"] = [*splits["forget"], {**splits["forget"][0], "question": "Q? " * 300}]  # no room left
    res = evaluate_tofu(model, chat_tokenizer, **splits, max_length=256, max_new_tokens=8)
    assert res.meta["dropped_items"] == {"forget": [len(splits["forget"]) - 1]}
    assert res.meta["n_items"]["forget"] == len(splits["forget"]) - 1
    # forget_prob equals an independent per-item computation, keyed by dataset index.
    from hf_unlearn.data import encode_qa

    row = splits["forget"][1]
    ex = encode_qa(chat_tokenizer, row["question"], row["answer"])
    s = score_sequences(model, [ex.to_dict()], pad_token_id=chat_tokenizer.pad_token_id)
    assert res.per_item["forget_prob"][1] == pytest.approx(float(s.normalized_prob[0]), rel=1e-5)
    comps = res.details["model_utility"]["components"]
    assert set(comps) == {f"{s}_{m}" for s in ("retain", "world_facts") for m in ("prob", "rouge", "truth_ratio")}
    assert res.metrics["model_utility"] == pytest.approx(harmonic_mean(list(comps.values())))
    assert res.metrics["forget_quality"] is None and res.metrics["privleak"] is None
    assert 0 <= res.metrics["mia_min_k_auc"] <= 1
    # Against its own logs: Forget Quality 1, PrivLeak 0.
    again = evaluate_tofu(model, chat_tokenizer, **splits, max_length=256, generate=False, reference=res)
    assert again.metrics["forget_quality"] == 1.0 and again.metrics["privleak"] == pytest.approx(0.0)
    assert again.details["forget_quality"]["n"] == res.meta["n_items"]["forget"]
    # Logs computed with another prompt format are refused, with the reason.
    with pytest.raises(ReferenceMismatchError, match="prompt format differs"):
        evaluate_tofu(
            model,
            chat_tokenizer,
            **splits,
            max_length=256,
            generate=False,
            reference=res,
            system_prompt="Answer briefly.",
        )


def test_suites_run_in_bf16(chat_tokenizer, bench, tmp_path):
    model = make_tiny_llama(chat_tokenizer, dtype=torch.bfloat16)
    tofu = evaluate_tofu(model, chat_tokenizer, **builtin_tofu_splits(bench, retain_size=6), max_new_tokens=4)
    assert all(v is None or math.isfinite(v) for v in tofu.metrics.values())
    assert tofu.meta["dtype"] == "torch.bfloat16"
    path = tofu.save(tmp_path / "r.json")
    assert EvalResult.load(path).per_item["forget_prob"] == tofu.per_item["forget_prob"]
    muse = evaluate_muse(
        model, chat_tokenizer, **builtin_muse_splits(bench), verbmem_max_new_tokens=4, knowmem_max_new_tokens=4
    )
    assert {
        "verbmem_forget_rouge_f1",
        "knowmem_forget_rouge_f1",
        "knowmem_retain_rouge_f1",
        "privleak_min_k_auc",
    } <= set(muse.metrics)
    mia = evaluate_mia(
        model,
        chat_tokenizer,
        bench["forget"],
        bench["holdout"],
        attacks=("loss", "zlib", "min_k", "min_k_plus_plus", "gradnorm", "reference"),
        reference_model=make_tiny_llama(chat_tokenizer, seed=3, dtype=torch.bfloat16),
    )
    assert all(0 <= v <= 1 for v in mia.metrics.values())
    mcq = evaluate_mcq(model, chat_tokenizer, bench["general_knowledge_mcq"][:12])
    assert 0 <= mcq.metrics["mcq_accuracy"] <= 1


def test_mcq_single_forward_equals_per_option_scoring(chat_tokenizer, bench, monkeypatch):
    import hf_unlearn.evaluation.mcq as mcq

    model = make_tiny_llama(chat_tokenizer)
    rows = bench["forget_mcq"]
    fast = evaluate_mcq(model, chat_tokenizer, rows)
    monkeypatch.setattr(mcq, "_single_token_ids", lambda *a, **k: None)
    slow = evaluate_mcq(model, chat_tokenizer, rows)
    assert fast.meta["single_forward"] and not slow.meta["single_forward"]
    for i in range(len(rows)):
        assert fast.per_item["mcq_letter_logprobs"][i] == pytest.approx(
            slow.per_item["mcq_letter_logprobs"][i], abs=1e-4
        )
    preds = fast.per_item["mcq_prediction"]
    assert fast.metrics["mcq_accuracy"] == pytest.approx(np.mean([preds[i] == r["answer"] for i, r in enumerate(rows)]))


def test_mcq_cloze_ranks_the_options_as_answers(chat_tokenizer, bench):
    from hf_unlearn.data import IGNORE_INDEX
    from hf_unlearn.data.tokenization import encode_qa

    model = make_tiny_llama(chat_tokenizer, seed=3)
    rows = bench["forget_mcq"][:6]
    result = evaluate_mcq(model, chat_tokenizer, rows, scoring="cloze", name="forget_mcq_cloze")
    for i, row in enumerate(rows):  # independent: each choice as the answer, P(y|x)^(1/|y|), in the row's order
        expected = []
        for choice in row["choices"]:
            ex = encode_qa(chat_tokenizer, row["question"], choice)
            ids = torch.tensor([ex.input_ids])
            labels = torch.tensor([ex.labels])
            with torch.no_grad():
                logp = model(input_ids=ids).logits[:, :-1].float().log_softmax(-1)
            target = labels[:, 1:]
            m = target != IGNORE_INDEX
            picked = logp.gather(-1, target.clamp(min=0)[..., None]).squeeze(-1)[m]
            expected.append(math.exp(float(picked.mean())))
        assert result.per_item["forget_mcq_cloze_option_probs"][i] == pytest.approx(expected, rel=1e-4)
        assert result.per_item["forget_mcq_cloze_prediction"][i] == int(np.argmax(expected))
    preds = result.per_item["forget_mcq_cloze_prediction"]
    assert result.metrics["forget_mcq_cloze_accuracy"] == pytest.approx(
        np.mean([preds[i] == r["answer"] for i, r in enumerate(rows)])
    )
    with pytest.raises(ValueError, match="scoring must be"):
        evaluate_mcq(model, chat_tokenizer, rows, scoring="letter")


def test_gradnorm_keeps_existing_gradients(chat_tokenizer, bench):
    from hf_unlearn.data import tokenize_rows
    from hf_unlearn.evaluation.mia import gradnorm_scores

    model = make_tiny_llama(chat_tokenizer)
    marker = torch.full_like(model.lm_head.weight, 7.0)
    model.lm_head.weight.grad = marker.clone()
    scores = gradnorm_scores(model, tokenize_rows(bench["forget"][:2], chat_tokenizer))
    assert len(scores) == 2 and all(s > 0 for s in scores)
    assert torch.equal(model.lm_head.weight.grad, marker)


def test_eval_callback_logs_through_the_trainer(chat_tokenizer, bench, tmp_path):
    from hf_unlearn import EvalCallback, NPOConfig, NPOTrainer

    cb = EvalCallback(
        chat_tokenizer,
        forget=bench["forget"][:4],
        retain=bench["retain"][:4],
        general_knowledge=bench["general_knowledge"][:6],
        every_n_steps=2,
    )
    args = NPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        max_steps=4,
        report_to=[],
        save_strategy="no",
        learning_rate=1e-2,
        warmup_steps=0,
    )
    trainer = NPOTrainer(
        make_tiny_llama(chat_tokenizer),
        args=args,
        forget_dataset=bench["forget"],
        retain_dataset=bench["retain"],
        processing_class=chat_tokenizer,
        callbacks=[cb],
    )
    assert cb.trainer is trainer
    trainer.train()
    logged = [h for h in trainer.state.log_history if "eval/forget_prob" in h]
    assert [h["step"] for h in logged] == [0, 2, 4]
    assert logged[-1]["eval/forget_prob"] < logged[0]["eval/forget_prob"]  # NPO lowers the forget probability
    assert {"eval/retain_prob", "eval/general_knowledge_accuracy"} <= set(logged[0])


def test_cli_eval_writes_a_reusable_result(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "target"
    args = [
        "eval",
        "--model_name_or_path",
        str(tiny_model_dir),
        "--suite",
        "tofu",
        "--num_authors",
        "10",
        "--qa_per_author",
        "2",
        "--no_generate",
        "--retain_size",
        "5",
    ]
    assert main([*args, "--output_dir", str(out)]) == 0
    assert "forget_truth_ratio" in capsys.readouterr().out
    assert main([*args, "--reference_logs", str(out / "results.json")]) == 0
    out_text = capsys.readouterr().out
    assert re.search(r"forget_quality\s+1\n", out_text) and re.search(r"privleak\s+0\n", out_text)


def test_cli_eval_keeps_hf_unlearn_0_1_spellings_for_one_release(tiny_model_dir, tmp_path, capsys):
    old = ["eval", "--model", str(tiny_model_dir), "--suite", "mcq", "--num-authors", "10", "--qa-per-author", "2"]
    old += ["--mcq-scoring", "cloze", "--batch-size", "4", "--dataset", "builtin", "--seed", "0"]
    with pytest.warns(FutureWarning) as seen:
        assert main([*old, "--output", str(tmp_path / "old.json")]) == 0
    said = " ".join(str(w.message) for w in seen)
    for text in (
        "--model is deprecated: use --model_name_or_path",
        "--output is deprecated: use --output_dir DIR",
        "--batch-size is deprecated: use --per_device_eval_batch_size",
        "--dataset is deprecated: use --dataset_name",
        "--seed is deprecated: use --benchmark_seed",
    ):
        assert text in said
    new = ["eval", "--model_name_or_path", str(tiny_model_dir), "--suite", "mcq", "--num_authors", "10"]
    new += ["--qa_per_author", "2", "--mcq_scoring", "cloze", "--per_device_eval_batch_size", "4"]
    assert main([*new, "--output_dir", str(tmp_path / "new")]) == 0
    assert EvalResult.load(tmp_path / "old.json").metrics == EvalResult.load(tmp_path / "new" / "results.json").metrics


def test_cli_mcq_suite_reports_letters_and_cloze(tiny_model_dir, tmp_path, capsys):
    args = ["eval", "--model_name_or_path", str(tiny_model_dir), "--suite", "mcq", "--num_authors", "10"]
    args += ["--qa_per_author", "2"]
    assert main([*args, "--output_dir", str(tmp_path / "both")]) == 0
    metrics = EvalResult.load(tmp_path / "both" / "results.json").metrics
    assert {"forget_mcq_accuracy", "forget_mcq_cloze_accuracy"} <= set(metrics)
    assert "scoring" in capsys.readouterr().err  # progress is announced before each set (hf_unlearn's logger)
    assert main([*args, "--mcq_scoring", "cloze", "--output_dir", str(tmp_path / "c")]) == 0
    only = EvalResult.load(tmp_path / "c" / "results.json").metrics
    assert (
        "forget_mcq_accuracy" not in only and only["forget_mcq_cloze_accuracy"] == metrics["forget_mcq_cloze_accuracy"]
    )


def test_forget_vs_utility_plot_uses_a_legend_for_many_models_and_log_scale(tmp_path):
    import matplotlib.image

    from hf_unlearn.evaluation import plot_forget_vs_utility

    few = plot_forget_vs_utility({"target": (0.5, 0.9), "unlearned": (0.45, 0.6)}, tmp_path / "few.png")
    many = plot_forget_vs_utility(
        {f"method_{i}": (0.4 + i / 100, 10.0**-i) for i in range(9)}, tmp_path / "many.png", log_y=True
    )
    # The legend beside the axes makes the many-model figure wider than the annotated one.
    assert matplotlib.image.imread(many).shape[1] > matplotlib.image.imread(few).shape[1]


def test_raw_text_last_token_parity_and_undefined_privleak(chat_tokenizer, bench):
    from hf_unlearn.data import encode_completion
    from hf_unlearn.evaluation import metrics as M
    from hf_unlearn.evaluation.scoring import score_sequences

    model = make_tiny_llama(chat_tokenizer)
    texts = [{"prompt": "", "text": b["prompt"] + b["text"]} for b in bench["forget_bio"]]
    holdout = [{"prompt": "", "text": b["prompt"] + b["text"]} for b in bench["holdout_bio"]]
    ours = evaluate_mia(model, chat_tokenizer, texts, holdout, attacks=("min_k", "zlib"))
    parity = evaluate_mia(model, chat_tokenizer, texts, holdout, attacks=("min_k", "zlib"), drop_last_token=True)
    enc = encode_completion(chat_tokenizer, "", texts[0]["text"]).to_dict()
    tl = score_sequences(model, [enc], pad_token_id=chat_tokenizer.pad_token_id, token_stats=True).token_logps[0]
    assert ours.per_item["mia_min_k_members"][0] == pytest.approx(M.min_k_score(tl, 0.4), abs=1e-6)  # every token
    assert parity.per_item["mia_min_k_members"][0] == pytest.approx(M.min_k_score(tl[:-1], 0.4), abs=1e-6)
    nll = float(-tl.mean())
    assert ours.per_item["mia_zlib_members"][0] == pytest.approx(M.zlib_score(nll, texts[0]["text"]), rel=1e-5)
    splits = {"privleak_forget": texts, "privleak_holdout": holdout}
    ref = evaluate_muse(model, chat_tokenizer, **splits)
    ref.metrics["privleak_min_k_auc"] = 1.0  # a reference that separates perfectly: PrivLeak is undefined
    with pytest.warns(UserWarning, match="PrivLeak not computed"):
        res = evaluate_muse(model, chat_tokenizer, **splits, reference=ref)
    assert res.metrics["privleak"] is None and "division by 1 - r = 0" in res.details["privleak"]["skipped"]
    assert M.privleak_or_reason(0.5, 0.6) == (pytest.approx(25.0), None)
