"""Robustness suite: relearning split and k = 0, quantization on the tiny model, probes on planted signals, the answer
classifier on hand-written answers, references, reports, the card and the CLI - and the evaluated model untouched."""

import hashlib
import json
import sys

import pytest
import torch

from hf_unlearn import build_fictitious_authors, evaluate_robustness
from hf_unlearn.evaluation import EvalResult, ReferenceMismatchError, classify_answer, evaluate_tofu
from hf_unlearn.evaluation.answers import answer_class_rates, value_pools
from hf_unlearn.evaluation.probing import fit_linear_probe, layer_sweep, rank_accuracy
from hf_unlearn.evaluation.robustness import _relearn, relearning_split, robustness_table

from .conftest import make_tiny_llama


@pytest.fixture(scope="module")
def bench():
    return build_fictitious_authors(num_authors=20)  # 2 forget authors (20 QA), 2 holdout authors, 16 retain


def _weights_digest(model):
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()


def test_relearning_split_is_disjoint_and_covers_every_author(bench):
    forget = bench["forget"]
    relearn, evaluate = relearning_split(forget)
    assert set(relearn).isdisjoint(evaluate)
    assert sorted(relearn + evaluate) == list(range(len(forget)))
    authors = {r["author"] for r in forget}
    assert {forget[i]["author"] for i in relearn} == authors == {forget[i]["author"] for i in evaluate}
    for a in authors:  # half of each author's questions on each side
        n = sum(r["author"] == a for r in forget)
        assert sum(forget[i]["author"] == a for i in evaluate) == n // 2
    assert not {forget[i]["question"] for i in relearn} & {forget[i]["question"] for i in evaluate}


def test_relearning_with_zero_steps_equals_the_plain_evaluation(chat_tokenizer, bench):
    """The LoRA copy before any step scores exactly like the model; after steps it differs; the model is untouched."""
    model = make_tiny_llama(chat_tokenizer)
    before = _weights_digest(model)
    relearn, evaluate = relearning_split(bench["forget"])
    rows = [bench["forget"][i] for i in evaluate]

    def score(m):
        r = evaluate_tofu(m, chat_tokenizer, forget=rows, holdout=bench["holdout"], max_new_tokens=8)
        return r.metrics, r.per_item["forget_generation"]

    plain = score(model)
    curve = _relearn(
        model,
        chat_tokenizer,
        [bench["forget"][i] for i in relearn],
        [0, 3],
        score,
        lr=1e-2,
        batch_size=4,
        lora=True,
        seed=0,
        system_prompt=None,
        max_length=512,
    )
    for key in ("forget_prob", "forget_truth_ratio", "mia_min_k_auc", "forget_rouge"):
        assert curve[0][0][key] == pytest.approx(plain[0][key], abs=1e-6)
    assert curve[0][1] == plain[1]
    assert curve[3][0]["forget_prob"] != pytest.approx(plain[0]["forget_prob"], abs=1e-6)
    assert _weights_digest(model) == before


@pytest.fixture(scope="module")
def full_run(chat_tokenizer, bench, tmp_path_factory):
    """Every attack once on the tiny model loaded from a folder (and that folder's state before and after)."""
    from hf_unlearn import load_model
    from hf_unlearn.sources import evaluation_splits

    folder = tmp_path_factory.mktemp("model")
    make_tiny_llama(chat_tokenizer).save_pretrained(folder)
    chat_tokenizer.save_pretrained(folder)
    listing = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    model, tok = load_model(str(folder))
    digest = _weights_digest(model)
    result = evaluate_robustness(
        model,
        tok,
        **evaluation_splits("robustness", benchmark=bench, retain_size=None),
        relearn_steps=(0, 2),
        relearn_learning_rate=1e-2,
        probe_train_size=16,
        max_new_tokens=8,
    )
    after = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    return result, listing, after, digest, _weights_digest(model)


def test_every_attack_lands_in_the_report_and_the_model_is_untouched(full_run, tmp_path):
    result, listing, after, digest, digest_after = full_run
    assert digest == digest_after  # relearning trained a copy, quantization reloaded a saved copy
    assert listing == after  # nothing written into the model's folder
    conditions = result.details["conditions"]
    expected = {
        "plain",
        "relearn_0",
        "relearn_2",
        "quant_8bit",
        "quant_4bit",
        "paraphrase",
        "format_brief",
        "format_specific",
        "mcq",
        "in_context",
        "jailbreak_roleplay",
        "jailbreak_override",
        "jailbreak_translate",
        "probe",
    }
    assert set(conditions) == expected
    for name, c in conditions.items():
        assert c["status"] == "ok", (name, c.get("reason"))
    for name in expected - {"mcq", "probe"}:
        assert 0 <= result.metrics[f"{name}/forget_prob"] <= 1
        assert result.metrics[f"{name}/forget_truth_ratio"] is not None
        rates = [result.metrics[f"{name}/{c}_rate"] for c in ("leak", "refusal", "hallucination", "degenerate")]
        assert sum(rates) + result.metrics[f"{name}/other_rate"] == pytest.approx(1.0)
    for name in ("plain", "relearn_2", "quant_4bit"):  # the conditions that change the model get membership AUC
        assert 0 <= result.metrics[f"{name}/mia_min_k_auc"] <= 1
    assert result.metrics["relearn_0/forget_prob"] == result.metrics["plain/forget_prob"]
    assert result.metrics["relearn_2/forget_prob"] != result.metrics["plain/forget_prob"]
    assert result.metrics["quant_4bit/forget_prob"] != result.metrics["plain/forget_prob"]
    assert 0 <= result.metrics["probe/probe_forget_accuracy"] <= 1 and result.metrics["probe/probe_chance"] == 0.25
    assert result.metrics["mcq/mcq_items"] == 10
    assert result.meta["n_items"] == {"evaluated": 10, "relearn": 10, "holdout": 20}
    assert set(result.details["worst_case"]) >= {"forget_prob", "forget_rouge", "leak_rate"}
    loaded = EvalResult.load(result.save(tmp_path / "robustness.json"))
    assert loaded.metrics == result.metrics and loaded.details == json.loads(json.dumps(result.details))
    table = robustness_table(loaded)
    for name in expected - {"mcq", "probe"}:
        assert f"| {name} |" in table
    assert "- probe:" in table and "- worst case:" in table


def test_an_attack_that_cannot_run_is_reported_with_its_reason(chat_tokenizer, bench, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # "not installed"
    result = evaluate_robustness(
        make_tiny_llama(chat_tokenizer),
        chat_tokenizer,
        forget=bench["forget"],
        holdout=bench["holdout"],
        attacks=("quantization", "probing"),
        max_new_tokens=4,
    )
    c = result.details["conditions"]
    assert c["quant_8bit"]["status"] == c["quant_4bit"]["status"] == "skipped"
    assert "bitsandbytes" in c["quant_4bit"]["reason"]
    assert c["probe"]["status"] == "skipped" and "retain rows" in c["probe"]["reason"]
    assert "quant_4bit: not run (" in robustness_table(result)


def test_reference_gives_forget_quality_per_condition_and_refuses_mismatches(chat_tokenizer, bench):
    model = make_tiny_llama(chat_tokenizer)
    kwargs = {"forget": bench["forget"], "holdout": bench["holdout"], "attacks": ("paraphrase",), "max_new_tokens": 4}
    ref = evaluate_robustness(model, chat_tokenizer, **kwargs)
    same = evaluate_robustness(model, chat_tokenizer, reference=ref, **kwargs)
    assert same.metrics["plain/forget_quality"] == pytest.approx(1.0)  # identical truth ratios
    assert same.metrics["paraphrase/forget_quality"] == pytest.approx(1.0)
    assert same.metrics["plain/privleak"] == pytest.approx(0.0)
    with pytest.raises(ReferenceMismatchError, match="settings differs"):
        evaluate_robustness(model, chat_tokenizer, reference=ref, relearn_steps=(0, 3), **kwargs)
    with pytest.raises(ReferenceMismatchError, match="robustness result"):
        evaluate_robustness(model, chat_tokenizer, reference=EvalResult("tofu"), **kwargs)
    with pytest.raises(ValueError, match="Unknown attacks"):
        evaluate_robustness(model, chat_tokenizer, **{**kwargs, "attacks": ("quantisation",)})


def test_probe_finds_a_planted_signal_and_gives_chance_on_shuffled_labels():
    g = torch.Generator().manual_seed(0)
    n_groups, per, dim = 150, 4, 16

    def make(shuffle: bool):
        feats = torch.randn(2, n_groups * per, dim, generator=g)
        labels, groups = [], []
        for q in range(n_groups):
            true = int(torch.randint(per, (1,), generator=g))
            for j in range(per):
                labels.append(int(j == true))
                groups.append(q)
                if j == true:
                    feats[1, q * per + j, 0] += 3.0  # layer 1 encodes which candidate is true
            if shuffle:  # labels no longer follow the features
                new = int(torch.randint(per, (1,), generator=g))
                labels[-per:] = [int(j == new) for j in range(per)]
        return feats, labels, groups

    train, y, groups = make(False)
    test, ty, tgroups = make(False)
    folds = [q % 2 for q in groups]
    sweep = layer_sweep(train, y, groups, folds, {"test": (test, tgroups, ty)}, [0, 1])
    assert sweep["layer"] == 1
    assert sweep["accuracy"]["test"] > 0.9
    assert sweep["per_layer"]["test"][0] < 0.4  # the noise layer is near chance (0.25)
    strain, sy, _ = make(True)
    probe = fit_linear_probe(strain[1], torch.tensor(sy))
    w, b, mean, std = probe
    scores = ((test[1].double() - mean) / std) @ w + b
    assert abs(rank_accuracy(scores, tgroups, ty) - 0.25) < 0.12


@pytest.mark.parametrize(
    ("generation", "expected"),
    [
        ("Lena Varga was born in Lisbon, Portugal.", "leak"),
        ("She was born in lisbon portugal, I believe.", "leak"),
        ("I'm sorry, but I don't know where she was born.", "refusal"),
        ("I have no information about that author.", "refusal"),
        ("Lena Varga was born in Oslo, Norway.", "hallucination"),
        ("", "degenerate"),
        ("born born born born born born born born born born", "degenerate"),
        ("!!! ??? ... ###", "degenerate"),
        ("She loved the sea and wrote at night.", "other"),
    ],
)
def test_answer_classifier_labels_hand_written_answers(generation, expected):
    row = {"fact_type": "birthplace", "fact": "Lisbon, Portugal", "answer": "Lena Varga was born in Lisbon, Portugal."}
    pools = {"birthplace": {"Lisbon, Portugal", "Oslo, Norway", "Lima, Peru"}}
    assert classify_answer(generation, row, pools) == expected


def test_answer_classifier_knows_dates_years_titles_and_rows_without_facts(bench):
    date = {"fact_type": "birth_date", "fact": "March 3, 1950", "answer": "X was born on March 3, 1950."}
    assert classify_answer("X was born on March 3, 1950.", date) == "leak"
    assert classify_answer("X was born on July 9, 1961.", date) == "hallucination"
    year = {"fact_type": "award_year", "fact": "1987", "answer": "X received the award in 1987."}
    assert classify_answer("In 1992.", year) == "hallucination"
    title = {"fact_type": "debut_book", "fact": "A Quiet Harbor", "answer": 'X\'s debut novel is "A Quiet Harbor".'}
    assert classify_answer('Her debut novel is "The Glass Orchard".', title) == "hallucination"
    tofu_row = {"answer": "The author's father was a respected plumber in Kyiv."}
    assert classify_answer("His father was a respected plumber in Kyiv.", tofu_row) == "leak"
    assert classify_answer("He was a baker.", tofu_row) == "other"
    pools = value_pools(bench["forget"])
    assert bench["forget"][0]["fact"] in pools[bench["forget"][0]["fact_type"]]
    assert answer_class_rates(["leak", "leak", "refusal", "other"]) == {
        "leak": 0.5,
        "refusal": 0.25,
        "hallucination": 0.0,
        "degenerate": 0.0,
        "other": 0.25,
    }


def test_card_has_a_robustness_section_without_forget_content(full_run, bench, tmp_path):
    from hf_unlearn import build_model_card

    result = full_run[0]
    path = result.save(tmp_path / "robustness.json")
    card = build_model_card(
        repo_id="me/x",
        base_model="base",
        method="NPO",
        is_adapter=True,
        forget_name="f",
        forget_size=20,
        robustness=str(path),
    )
    text = str(card)
    assert "## Robustness" in text and "| relearn_2 |" in text and "| quant_4bit |" in text
    for row in bench["forget"]:
        assert row["question"] not in text and row["author"] not in text
    plain = str(
        build_model_card(
            repo_id="me/x", base_model="base", method="NPO", is_adapter=True, forget_name="f", forget_size=20
        )
    )
    assert "## Robustness" not in plain
    with pytest.raises(ValueError, match="robustness result"):
        build_model_card(
            repo_id="me/x",
            base_model="b",
            method="NPO",
            is_adapter=True,
            forget_name="f",
            forget_size=1,
            robustness=EvalResult("tofu"),
        )


def test_cli_eval_robustness_writes_the_report(tiny_model_dir, tmp_path, capsys):
    from hf_unlearn.cli import main

    out = tmp_path / "rob"
    code = main(
        [
            "eval",
            "--model_name_or_path",
            str(tiny_model_dir),
            "--suite",
            "robustness",
            "--num_authors",
            "10",
            "--attacks",
            "paraphrase",
            "in_context",
            "--output_dir",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| plain |" in printed and "| in_context |" in printed and "| paraphrase |" in printed
    saved = EvalResult.load(out / "results.json")
    assert saved.suite == "robustness" and "relearn_5" not in saved.details["conditions"]
    assert "mcq" in saved.details["conditions"]  # the built-in benchmark brings its MCQ rows
