"""The quality benchmark's trainer set-up for every method and variant, one step each on a tiny model.

The benchmark itself is measured, not tested; this keeps its code path (settings, callbacks, LoRA placement) working
as the library changes.
"""

import pytest

from benchmarks import quality
from hf_unlearn import build_fictitious_authors

from .conftest import make_tiny_llama

pytestmark = pytest.mark.benchmarks  # every benchmark row's set-up trains

RUNS = [
    m
    for m in (*quality.METHODS, *quality.VARIANTS)
    if quality.VARIANTS.get(m, {}).get("method", m) not in quality.WEIGHT_SPACE
]


@pytest.fixture(scope="module")
def bench():
    return build_fictitious_authors(num_authors=10)


@pytest.mark.parametrize("name", RUNS)
def test_quality_benchmark_trains_every_method_and_variant(name, bench, chat_tokenizer, tmp_path, monkeypatch):
    monkeypatch.setattr(quality, "OUTPUT_LEVEL", {**quality.OUTPUT_LEVEL, "max_steps": 1})
    monkeypatch.setattr(quality, "RMU", {**quality.RMU, "max_steps": 1})
    variant = quality.VARIANTS.get(name, {})
    model = make_tiny_llama(chat_tokenizer, layers=20)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer, settings = quality._run_trainer(name, model, chat_tokenizer, bench, str(tmp_path))
    for key, value in (variant.get("args") or {}).items():
        assert settings[key] == value and getattr(trainer.args, key) == value
    calibration = [cb for cb in trainer.callback_handler.callbacks if type(cb).__name__ == "ForgetTargetCallback"]
    assert len(calibration) == ("calibrate" in variant)  # calibrated variants watch unseen authors
    if calibration:
        assert settings["calibration"]["nonmembers"] == len(calibration[0]._nonmember) > 0
    trainer.train()
    assert trainer.state.global_step == 1
    changed = {n for n, p in trainer.model.named_parameters() if n in before and not p.detach().equal(before[n])}
    trained = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    restored = bool(calibration) and calibration[0].restored_step == 0  # already at the non-member level
    if name.startswith(("rmu", "adaptive_rmu")):  # full fine-tuning of down_proj of layers 5-7 only
        assert (changed or restored) and all(
            ".mlp.down_proj." in n and int(n.split(".")[2]) in (5, 6, 7) for n in changed
        )
    else:  # LoRA: only adapter weights train (on q/k of layers 10-19 for Attention Shifting)
        assert trained and all("lora_" in n for n in trained)
        if name.startswith("attention_shifting"):
            assert all(("q_proj" in n or "k_proj" in n) and 10 <= int(n.split(".")[4]) <= 19 for n in trained)


@pytest.mark.parametrize("name", list(quality.WEIGHT_SPACE))
def test_quality_benchmark_weight_space_rows(name, chat_tokenizer, tmp_path, monkeypatch):
    bench = build_fictitious_authors(num_authors=10, qa_per_author=4)
    target = tmp_path / "target"
    make_tiny_llama(chat_tokenizer).save_pretrained(target)
    chat_tokenizer.save_pretrained(target)
    monkeypatch.setattr(quality, "REINFORCE", {"epochs": 3, "learning_rate": 1e-2, "batch_size": 4})
    monkeypatch.setitem(quality.WEIGHT_SPACE, name, {**quality.WEIGHT_SPACE[name], "scales": [0.5, 1], "tolerance": 1})
    model, _, settings = quality._weight_space(name, target, bench, tmp_path)
    assert settings["scale"] == 1 and [s for s, _ in settings["sweep"]] == [0.5, 1]
    assert (0 < settings["nonzero_fraction"] <= 0.11) if name == "sta" else settings["nonzero_fraction"] > 0.2
    before = make_tiny_llama(chat_tokenizer)
    assert any(not p.equal(q) for p, q in zip(model.parameters(), before.parameters(), strict=True))


def test_robustness_benchmark_rows_are_quality_rows_and_the_table_renders():
    from benchmarks import robustness

    assert robustness.ROWS[0] == "retain"  # every other row's Forget Quality reference runs first
    assert set(robustness.ROWS) <= {*quality.REFERENCES, *quality.METHODS, *quality.VARIANTS}
    row = {"method": "npo", "metrics": {"plain/forget_quality": 0.05, "relearn_10/leak_rate": 0.25}}
    line = robustness._table([row]).splitlines()[-1]
    assert line.startswith("| npo | 0.05 | - |") and "| 0.25 |" in line


def test_continual_benchmark_runs_every_system_on_a_tiny_target(chat_tokenizer, tiny_model_dir, monkeypatch):
    from benchmarks import continual

    monkeypatch.setattr(continual, "GENERAL_KNOWLEDGE_EVAL", 6)
    monkeypatch.setattr(continual, "RETAIN_EVAL", 6)

    bench = build_fictitious_authors(num_authors=12, qa_per_author=3, forget_fraction=0.25, seed=4)
    requests = continual.requests_of(bench)[:2]
    assert len(requests) == 2 and not {r["author"] for r in requests[0]} & {r["author"] for r in requests[1]}
    train = {**continual.TRAIN, "max_steps": 1, "per_device_train_batch_size": 2}
    lora = {"r": 4, "lora_alpha": 8, "target_modules": "all-linear"}
    rows = []
    for system in continual.SYSTEMS:
        row = continual.run(system, str(tiny_model_dir), bench, requests, lora=lora, train=train)
        rows.append(row)
        assert [len(s["requests"]) for s in row["steps"]] == [1, 2]  # every request so far, after each request
        for step in row["steps"]:
            assert 0 <= step["general_knowledge_accuracy"] <= 1 and 0 < step["retain_prob"] < 1
            assert all(0 < q["forget_prob"] < 1 and 0 < q["forget_prob_paraphrased"] < 1 for q in step["requests"])
        if system == "o3":
            assert len(row["steps"][-1]["detector_auroc"]) == 2
            cost = row["routed_generation"]
            assert cost["ratio"] > 0 and cost["ratio_plain"] > 0 and 0 <= cost["routed_rows"] <= cost["queries"]
            assert [m["name"] for m in row["manifest"]] == ["request-1", "request-2"]
    table = continual.table(rows).splitlines()
    assert len(table) == 2 + 1 + 2 * len(continual.SYSTEMS)  # header, the target, each system after each request
    assert table[3].startswith("| o3 | 1 |") and table[-1].startswith("| npo_sequential | 2 |")


def test_continual_detector_comparison_on_a_tiny_target(chat_tokenizer, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from benchmarks import continual

    bench = build_fictitious_authors(num_authors=12, qa_per_author=3, forget_fraction=0.25, seed=4)
    out = continual.compare_detectors(AutoModelForCausalLM.from_pretrained(tiny_model_dir), chat_tokenizer, bench)
    assert set(out["kinds"]) == {"feature_bank", "statistics_only"} and out["requests"] == 3
    for kind, row in out["kinds"].items():
        for fit in ("both_wordings", "original_only"):
            assert all(0 <= v["min"] <= v["mean"] <= 1 for v in row[f"auroc_fit_{fit}"].values())
        for rate in continual.PASS_RATES:
            shares = row[f"pass_rate_{rate:g}"]
            assert set(shares) >= {"forget_original", "forget_unseen_paraphrase", "retain", "holdout", "general"}
            assert all(0 <= v["full"] <= v["routed"] <= 1 and 0 <= v["mean_weight"] <= 1 for v in shares.values())
        attacks = row["retrieval_attack"]["original"]
        assert ("max_cosine" in attacks) == (kind == "feature_bank")
        assert all(a["top_1"] in (0.0, 1.0) and 0 <= a["top_10"] <= 1 for a in attacks.values())
        assert 0 <= row["exact_wording_auroc"]["mean"] <= 1
    assert out["retrieval_chance"] == pytest.approx(1 / (1 + continual.DECOYS_PER_QUESTION))
    table = continual.detectors_table(out).splitlines()
    assert table[2].startswith("| feature bank |") and table[3].startswith("| statistics only |")


@pytest.mark.parametrize("name", ["grad_ascent_cot", "idk_sft_direct", "reasoned_idk_dpo", "npo_both"])
def test_reasoning_benchmark_trains_its_rows_and_renders_the_table(name, chat_tokenizer, tmp_path, monkeypatch):
    from benchmarks import reasoning

    bench = build_fictitious_authors(num_authors=10, qa_per_author=2)
    monkeypatch.setattr(reasoning.Q, "OUTPUT_LEVEL", {**reasoning.Q.OUTPUT_LEVEL, "max_steps": 1})
    monkeypatch.setattr(reasoning, "RETAIN_EVAL", 2)
    monkeypatch.setattr(reasoning, "MAX_NEW_TOKENS", 3)
    trainer, settings = reasoning.train(name, make_tiny_llama(chat_tokenizer), chat_tokenizer, bench, str(tmp_path))
    method, args = reasoning.ROWS[name]
    assert settings["method"] == method and all(getattr(trainer.args, k) in (v, [v]) for k, v in args.items())
    assert settings["retain_term"] == (method != "grad_ascent")
    trainer.train()
    assert trainer.state.global_step == 1
    metrics, details = reasoning.evaluate(
        trainer.model, chat_tokenizer, {"forget": bench["forget"][:2], "retain": bench["retain"]}
    )
    for key, _, _ in reasoning.COLUMNS:
        assert key in metrics, key
    assert 0 <= metrics["worst/forget_leak_rate"] <= 1 and "forget/zerothink/generation" in details
    line = reasoning.table([{"method": name, "metrics": metrics, "train_seconds": 1.0}]).splitlines()[-1]
    assert line.startswith(f"| {name} | ") and line.count("|") == len(reasoning.COLUMNS) + 4


def test_a_calibrated_row_reuses_the_uncalibrated_evaluation_only_for_the_same_run(tmp_path, monkeypatch):
    import json

    monkeypatch.setattr(quality, "PER_METHOD", tmp_path)
    log = [{"loss": 1.5, "grad_norm": 2.0, "step": 5}, {"train_runtime": 9.0, "step": 10}]
    (tmp_path / "npo.json").write_text(json.dumps({"method": "npo", "steps": 10, "log_history": log, "metrics": {}}))
    watched = {"stopped": "not reached", "restored_step": None}
    row = {"steps": 10, "log_history": [log[0], {"train_runtime": 7.0, "step": 10}], "calibration": watched}
    assert quality._same_run(row, "npo")["method"] == "npo"
    assert quality._same_run(row, "simnpo") is None  # no saved row
    for change in (
        {"calibration": {**watched, "stopped": "reached"}},
        {"calibration": {**watched, "restored_step": 0}},
        {"log_history": [{**log[0], "grad_norm": 2.0000001}]},
        {"steps": 9},
    ):
        assert quality._same_run({**row, **change}, "npo") is None, change


@pytest.mark.parametrize("row", ["npo", "rmu"])
def test_documents_benchmark_trains_its_rows_and_renders_the_table(row, chat_tokenizer, tmp_path, monkeypatch):
    from benchmarks import documents

    monkeypatch.setattr(documents, "RMU_LAYER", 1)
    monkeypatch.setattr(documents, "RMU", {**documents.RMU, "max_steps": 1})
    monkeypatch.setattr(documents, "NPO_EPOCHS", 1)
    monkeypatch.setattr(documents, "MAX_LENGTH", 64)
    docs = documents.documents(build_fictitious_authors(num_authors=10, forget_fraction=0.2, holdout_fraction=0.2))
    assert all(len(docs[s]) == 2 for s in ("forget", "holdout")) and all("text" in r for r in docs["forget"])
    model, settings = documents.train(row, make_tiny_llama(chat_tokenizer), chat_tokenizer, docs, str(tmp_path))
    assert settings["steps"] >= 1 and settings["train_seconds"] >= 0
    result, seconds = documents.evaluate(model.eval(), chat_tokenizer, docs)
    table = documents.table([{"row": row, "metrics": result.metrics, "eval_seconds": seconds}])
    assert table.splitlines()[2].startswith(f"| {row} |") and result.metrics["mia_min_k_auc"] is not None
