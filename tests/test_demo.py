"""The demo pipeline end to end on a tiny model (the bundled-model run is measured for the README, not here)."""

import json

import pytest
from huggingface_hub import ModelCard

from hf_unlearn.scripts.demo import DEMO_MARKER, run_demo


@pytest.mark.slow
def test_demo_pipeline_writes_outputs_and_reuses_caches(tmp_path, tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setenv("HF_UNLEARN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    kw = dict(
        base_model=str(tiny_model_dir),
        num_authors=10,
        finetune_epochs=1,
        unlearn_epochs=1,
        max_new_tokens=4,
        eval_retain_size=6,
    )
    first = run_demo(out, **kw)
    names = {p.name for p in out.iterdir()}
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "results.json",
        "README.md",
        "forget_vs_utility.png",
        DEMO_MARKER,
    } <= names
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"target", "retain", "unlearned"}
    assert results["retain"]["metrics"]["forget_quality"] == 1.0 and results["retain"]["metrics"]["privleak"] == 0.0
    assert results["unlearned"]["metrics"]["forget_quality"] is not None  # computed against the retain model
    assert "per_item" not in results["unlearned"]  # no forget questions or generations in the published results
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "peft" and "forget_vs_utility.png" in card.text
    printed = capsys.readouterr().out
    assert "Forget Quality" in printed
    assert "cached" not in printed.lower().replace("saved to the cache", "")  # first run: nothing came from a cache
    cached = next(iter((tmp_path / "cache" / "demo").iterdir()))
    assert {"retain", "target"} <= {p.name for p in cached.iterdir()}
    evals = next(cached.glob("eval-*"))
    assert {"retain_eval.json", "target_eval.json"} <= {p.name for p in evals.iterdir()}
    # Lineage: the target's file is what reference_lineage predicts; the result adds its unlearning step.
    from hf_unlearn import build_fictitious_authors
    from hf_unlearn.hub.lineage import read_lineage
    from hf_unlearn.references import reference_lineage

    expected = reference_lineage(
        build_fictitious_authors(num_authors=10), base_model=str(tiny_model_dir), finetune_epochs=1
    )
    assert read_lineage(cached / "target") == expected["target"]
    steps = read_lineage(out)["steps"]
    assert steps[:2] == expected["target"]["steps"] and steps[2] == {
        "kind": "unlearn",
        "method": "NPO",
        "adapter": True,
    }
    assert steps[1]["cache"] == f"demo/{cached.name}/target"
    second = run_demo(out, **kw)  # caches reused; the previous demo output is replaced
    assert second["seconds"] < first["seconds"]
    printed = capsys.readouterr().out
    for what in ("Retain model: cached", "Target model: cached", "Evaluation of the retain model: cached"):
        assert what in printed
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_demo(other, **kw)
    assert (other / "notes.txt").read_text() == "keep me"
