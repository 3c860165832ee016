"""Options of the reference fine-tunes: self-replay (prompts disjoint from the utility evaluation, rows generated once
and cached, the lineage counting them) and merged LoRA; caches made without them keep their keys."""

from __future__ import annotations

import json
import re

import pytest

from hf_unlearn import build_fictitious_authors
from hf_unlearn.data.fact_replay import FACT_REPLAY
from hf_unlearn.data.general_knowledge import GENERAL_KNOWLEDGE
from hf_unlearn.data.general_replay import GENERAL_REPLAY_PROMPTS
from hf_unlearn.references import (
    _cache_dir,
    _full_sentences,
    prepare_references,
    reference_lineage,
    self_replay_path,
)


def test_replay_prompts_ask_nothing_the_utility_evaluation_asks():
    assert len(set(GENERAL_REPLAY_PROMPTS)) == len(GENERAL_REPLAY_PROMPTS) >= 100
    questions = {q.lower() for q, *_ in GENERAL_KNOWLEDGE}
    for prompt in GENERAL_REPLAY_PROMPTS:
        assert prompt.lower() not in questions
        for _, _, answer, _ in GENERAL_KNOWLEDGE:  # no prompt names an evaluated answer
            assert not re.search(rf"\b{re.escape(answer.lower())}\b", prompt.lower()), (prompt, answer)


def test_replay_facts_ask_and_state_nothing_the_utility_evaluation_asks():
    assert len({q for q, _ in FACT_REPLAY}) == len(FACT_REPLAY) >= 100
    questions = {q.lower() for q, *_ in GENERAL_KNOWLEDGE}
    for question, answer in FACT_REPLAY:
        assert question.lower() not in questions and answer.endswith(".")
        for _, _, evaluated, _ in GENERAL_KNOWLEDGE:  # neither side names an evaluated answer
            for text in (question, answer):
                assert not re.search(rf"\b{re.escape(evaluated.lower())}\b", text.lower()), (text, evaluated)


def test_full_sentences_cuts_an_unfinished_answer_after_its_last_sentence():
    assert _full_sentences("Tea is brewed. Then you add milk and") == "Tea is brewed."
    assert _full_sentences("Is it? Yes! It is") == "Is it? Yes!"
    assert _full_sentences("no sentence end at all") == "no sentence end at all"
    assert _full_sentences(". only a dot at the start") == ". only a dot at the start"


def test_existing_reference_caches_keep_their_keys():
    # The quality benchmark's cached references were made before general_replay existed: same folder name.
    bench = build_fictitious_authors(num_authors=40)
    assert _cache_dir(bench, 4, "bundled").name == "beec212ff6c7"
    assert _cache_dir(bench, 4, "bundled", general_replay="self").name == "e9f6b3fda890"  # built before "facts"
    facts = _cache_dir(bench, 4, "bundled", general_replay="facts").name
    assert facts not in {"beec212ff6c7", "e9f6b3fda890"}
    lora = _cache_dir(bench, 4, "bundled", lora={"r": 32, "lora_alpha": 64}, finetune_lr=1e-3)
    assert lora.name not in {"beec212ff6c7", _cache_dir(bench, 4, "bundled", finetune_lr=1e-3).name}


def test_a_lora_reference_is_saved_merged_with_its_lineage(tmp_path, tiny_model_dir):
    import torch
    from safetensors.torch import load_file

    from hf_unlearn.hub.lineage import read_lineage
    from hf_unlearn.scripts.finetune import finetune

    rows = build_fictitious_authors(num_authors=10)["retain"][:48]  # 3 steps: the first is warm-up at lr 0
    out = finetune(
        str(tiny_model_dir), rows, tmp_path / "ref", epochs=1, learning_rate=1e-2, lora={"r": 4, "lora_alpha": 8}
    )
    names = {p.name for p in out.iterdir()}
    assert "model.safetensors" in names and "adapter_config.json" not in names  # full weights, no adapter
    merged, base = load_file(out / "model.safetensors"), load_file(tiny_model_dir / "model.safetensors")
    assert set(merged) == set(base)  # plain parameter names: loads as the base architecture
    changed = [k for k in base if not torch.equal(merged[k], base[k])]
    assert changed and all(k.endswith("proj.weight") for k in changed)  # only the adapted linear layers moved
    step = read_lineage(out)["steps"][-1]
    assert step["lora"] == {"r": 4, "lora_alpha": 8, "merged": True} and step["learning_rate"] == 1e-2
    # The adapter's initialisation is seeded too: the same call after other random draws gives the same weights.
    torch.manual_seed(1234)
    torch.rand(100)
    again = finetune(
        str(tiny_model_dir), rows, tmp_path / "again", epochs=1, learning_rate=1e-2, lora={"r": 4, "lora_alpha": 8}
    )
    second = load_file(again / "model.safetensors")
    assert all(torch.equal(merged[k], second[k]) for k in merged)


@pytest.mark.slow
def test_self_replay_references_on_a_tiny_model(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.setenv("HF_UNLEARN_CACHE", str(tmp_path / "cache"))
    bench = build_fictitious_authors(num_authors=10)
    kw = {"base_model": str(tiny_model_dir), "finetune_epochs": 1}
    logged: list[str] = []
    refs = prepare_references(bench, evaluate=False, general_replay="self", log=logged.append, **kw)
    cache = refs.target_dir.parent
    assert cache == _cache_dir(bench, 1, str(tiny_model_dir), general_replay="self")
    rows = json.loads(self_replay_path(str(tiny_model_dir)).read_text())
    assert self_replay_path(str(tiny_model_dir)).is_relative_to(tmp_path / "cache")
    assert [r["question"] for r in rows] == list(GENERAL_REPLAY_PROMPTS)
    assert all(isinstance(r["answer"], str) for r in rows)
    assert any(f"+ {len(rows)} self-replay rows" in line for line in logged)
    from hf_unlearn.hub.lineage import read_lineage

    expected = reference_lineage(bench, general_replay="self", **kw)
    assert read_lineage(refs.target_dir) == expected["target"]
    sizes = [step["data"] for step in expected["target"]["steps"]]
    n = len(GENERAL_REPLAY_PROMPTS)
    assert sizes[0].endswith(f"{len(bench['retain']) + n} rows") and "self-replay" in sizes[0]
    assert "general_replay='self'" in expected["target"]["steps"][1]["recreate"]
    # A second call loads both models from the cache and needs no replay rows at all.
    logged.clear()
    prepare_references(bench, evaluate=False, general_replay="self", log=logged.append, **kw)
    assert any("Target model: cached" in line for line in logged)
    assert not any("self-replay" in line.lower() for line in logged)
    # Another benchmark size reuses the base model's rows instead of generating them again.
    logged.clear()
    other = prepare_references(
        build_fictitious_authors(num_authors=12), evaluate=False, general_replay="self", log=logged.append, **kw
    )
    assert other.target_dir != refs.target_dir
    assert any("Self-replay rows: cached" in line for line in logged)


def test_self_replay_is_refused_for_reasoning_references(tiny_model_dir):
    with pytest.raises(ValueError, match="general_replay='self' is not available with reasoning=True"):
        prepare_references(
            build_fictitious_authors(num_authors=10),
            base_model=str(tiny_model_dir),
            general_replay="self",
            reasoning=True,
        )


def test_fact_replay_references_train_on_the_facts(tmp_path, monkeypatch, tiny_model_dir):
    import hf_unlearn.trainers.finetune as finetune_module

    monkeypatch.setenv("HF_UNLEARN_CACHE", str(tmp_path / "cache"))
    seen: dict[str, list[dict]] = {}
    real = finetune_module.finetune

    def spy(base, rows, out, **kw):
        seen[str(out)] = list(rows)
        return real(base, rows, out, **kw)

    monkeypatch.setattr(finetune_module, "finetune", spy)
    bench = build_fictitious_authors(num_authors=10)
    kw = {"base_model": str(tiny_model_dir), "finetune_epochs": 1}
    logged: list[str] = []
    refs = prepare_references(bench, evaluate=False, general_replay="facts", log=logged.append, **kw)
    assert refs.target_dir.parent == _cache_dir(bench, 1, str(tiny_model_dir), general_replay="facts")
    facts = [{"question": q, "answer": a} for q, a in FACT_REPLAY]
    retain_rows, target_rows = seen[str(refs.retain_dir)], seen[str(refs.target_dir)]
    assert retain_rows[len(bench["retain"]) :] == facts and target_rows[-len(facts) :] == facts
    assert any(f"+ {len(facts)} fact-replay rows" in line for line in logged)
    expected = reference_lineage(bench, general_replay="facts", **kw)
    assert expected["retain"]["steps"][-1]["data"].endswith(f"{len(bench['retain']) + len(facts)} rows")
    assert "fact-replay rows (true facts)" in expected["retain"]["steps"][-1]["data"]
    assert "general_replay='facts'" in expected["target"]["steps"][-1]["recreate"]


def test_an_unknown_replay_option_is_refused_with_the_choices(tiny_model_dir):
    with pytest.raises(ValueError, match="general_replay=True is not an option: pass 'self'"):
        prepare_references(
            build_fictitious_authors(num_authors=10), base_model=str(tiny_model_dir), general_replay=True
        )
