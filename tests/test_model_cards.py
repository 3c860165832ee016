"""The committed cards in model_cards/ are exactly what the generator makes from the committed benchmark results,
carry every aggregate metric, and contain no forget-set text."""

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from benchmarks.model_cards import CARDS, RESULTS, render_cards
from hf_unlearn import build_fictitious_authors
from hf_unlearn.hub.cards import TEMPLATE, is_reported_metric


@pytest.mark.slow  # regenerates every committed card (about a minute): make test-all
def test_committed_cards_match_the_committed_results():
    cards = render_cards()
    committed = {p.name for p in CARDS.glob("*.md") if p.name != "README.md"}
    assert committed == set(cards), "model_cards/ is out of date: run benchmarks/model_cards.py"
    for name, text in cards.items():
        on_disk = (CARDS / name).read_text()
        assert on_disk.rstrip("\n") == text.rstrip("\n"), f"{name} drifted: run benchmarks/model_cards.py"
    assert (CARDS / "TEMPLATE.md").read_text() == TEMPLATE.read_text()


def test_cards_carry_the_metrics_and_no_forget_text():
    bench = build_fictitious_authors(num_authors=40)
    forget_text = [r[f] for r in bench["forget"] for f in ("question", "answer")]
    for path in sorted(RESULTS.glob("*.json")):
        if path.stem in ("retain", "target"):
            continue
        card = ModelCard.load(CARDS / f"{path.stem}.md")
        metrics = json.loads(path.read_text())["metrics"]
        values = {r.metric_type: r.metric_value for r in card.data.eval_results}
        assert values == {k: v for k, v in metrics.items() if is_reported_metric(k, v)}
        assert any(k.endswith("_chance") for k in metrics) and not any(k.endswith("_chance") for k in values)
        for r in card.data.eval_results:  # every field the Hub's evaluation widget reads
            assert r.metric_name and r.task_type and r.task_name and r.dataset_name and r.dataset_type
        assert "](https://github.com/hf-unlearn/hf_unlearn#evaluation)" in card.text
        assert card.data.unlearning["forget_set"]["size"] == len(bench["forget"])
        text = Path(CARDS / f"{path.stem}.md").read_text()
        assert not any(t in text for t in forget_text)
