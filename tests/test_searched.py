"""The searched benchmark rows (benchmarks/quality.py --searched): the search reads only what a user has - never the
retain model, its evaluation, Forget Quality, PrivLeak or the holdout authors - and an interrupted search resumes from
its storage on disk."""

import json
import sys
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")  # installed by `make install` (the `search` extra)

import hf_unlearn as hu  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import quality as Q  # noqa: E402


def _questions(rows):
    return {r["question"] for r in rows}


def test_search_inputs_hold_no_evaluation_data():
    bench = hu.build_fictitious_authors(**Q.BENCH)
    inputs = Q.search_inputs(bench)
    assert set(inputs) == {"forget", "retain", "nonmember", "general"}
    # the holdout authors are PrivLeak's non-members; the general-knowledge rows are the utility evaluation's
    held_out = _questions(bench["holdout"]) | _questions(bench["general_knowledge"])
    for name, rows in inputs.items():
        assert rows, name
        assert not _questions(rows) & held_out, name
    evaluated = {r["author"] for split in ("forget", "retain", "holdout") for r in bench[split]}
    assert not {r["author"] for r in inputs["nonmember"]} & evaluated


def test_every_space_names_real_settings():
    from hf_unlearn import callbacks
    from hf_unlearn.registry import METHODS

    for method, space in Q.SEARCH_SPACES.items():
        owner = Q.CALLBACK_CLASS.get(method)
        for key in space:
            if owner and key in Q.CALLBACK_KEYS:
                assert key in getattr(callbacks, owner)().__dict__, (method, key)
            else:
                config = METHODS[method].config_class if method in METHODS else hu.GradDiffConfig
                assert key in {f.name for f in config.__dataclass_fields__.values()}, (method, key)


class _Tripwire:
    """prepare_references' result where only the target's weights may be read."""

    def __init__(self, target_dir):
        self.target_dir = target_dir

    def __getattr__(self, name):
        raise AssertionError(f"the search read references.{name}")


@pytest.mark.slow
def test_search_child_reads_no_reference_and_resumes(monkeypatch, tmp_path, tiny_model_dir):
    import hf_unlearn.references

    monkeypatch.setattr(Q, "BENCH", {"num_authors": 10})
    monkeypatch.setattr(Q, "OUTPUT_LEVEL", {"per_device_train_batch_size": 4})
    monkeypatch.setitem(
        Q.SEARCH_SPACES, "grad_ascent", {"learning_rate": ("float", 1e-4, 1e-3), "max_steps": ("int", 2, 3, 1)}
    )
    monkeypatch.setenv("HF_UNLEARN_SEARCH_DIR", str(tmp_path / "storage"))
    monkeypatch.setattr(hf_unlearn.references, "prepare_references", lambda bench, **kw: _Tripwire(tiny_model_dir))
    seen = []
    search = hu.search_settings

    def recording(trainer, **kwargs):
        seen.append({**kwargs, "forget": trainer.init_inputs["forget_rows"]})
        return search(trainer, **kwargs)

    monkeypatch.setattr(hu, "search_settings", recording)
    monkeypatch.setattr(Q, "SEARCH_TRIALS", 2)
    first = Q.search_child("grad_ascent")
    bench = hu.build_fictitious_authors(num_authors=10)
    inputs = Q.search_inputs(bench)
    assert seen[0]["nonmember_dataset"] == inputs["nonmember"]
    assert seen[0]["general_dataset"] == inputs["general"]
    assert seen[0]["retain_dataset"] == inputs["retain"]
    assert _questions(seen[0]["forget"]) == _questions(bench["forget"])
    text = json.dumps(first)
    assert "forget_quality" not in text and "privleak" not in text
    assert first["summary"]["finished"] == 2 and [t["trial"] for t in first["trials"]] == [0, 1]
    assert (
        first["best_params"]
        == min((t for t in first["trials"] if t["state"] == "complete"), key=lambda t: t["value"])["params"]
    )

    # Resumed with a larger budget: the two recorded trials stay, one more runs; at the budget nothing runs.
    monkeypatch.setattr(Q, "SEARCH_TRIALS", 3)
    again = Q.search_child("grad_ascent")
    assert [t["trial"] for t in again["trials"]] == [0, 1, 2] and again["trials"][:2] == first["trials"]
    assert len(seen) == 2 and seen[1]["n_trials"] == 1
    assert Q.search_child("grad_ascent")["trials"] == again["trials"] and len(seen) == 2

    variant = Q._searched_variant("grad_ascent", again)
    assert variant["args"] == again["best_params"] and variant["calibrate"] == {}


def test_searched_config_parses_as_a_recipe(tmp_path, monkeypatch):
    from hf_unlearn.scripts.unlearn import make_parser

    monkeypatch.setattr(Q, "CONFIGS", tmp_path)
    record = {
        "best_params": {"learning_rate": 3.1e-4, "num_train_epochs": 6, "beta": 0.05, "retain_coeff": 2.5},
        "fixed": Q._trainer_defaults("npo"),
        "summary": {"finished": 12},
    }
    path = Q.write_searched_config("npo", record)
    text = path.read_text()
    assert text.startswith("# NPO with the settings chosen by the settings search") and "bundled" in text
    args = make_parser("npo").parse_args_and_config(["--config", str(path)])
    training = next(a for a in args if hasattr(a, "learning_rate"))
    assert (training.learning_rate, training.num_train_epochs, training.beta) == (3.1e-4, 6, 0.05)
    assert training.retain_coeff == 2.5 and training.per_device_train_batch_size == 8
    assert Q.write_searched_config("rmu", {**record, "best_params": {"alpha": 1.0}}) is None  # callbacks: not written
