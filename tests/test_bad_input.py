"""Bad input ends in one clear error that names the problem and the fix (issue list of the fault probe)."""

import json
import shutil

import pytest

from hf_unlearn import EvalResult, build_fictitious_authors, evaluate_tofu, load_model, tokenize_rows
from hf_unlearn.cli import main as cli
from hf_unlearn.evaluation import builtin_tofu_splits
from hf_unlearn.scripts.unlearn import main as recipe
from hf_unlearn.sources import training_data
from hf_unlearn.trainers import GradDiffConfig, GradDiffTrainer, NPOConfig

from .conftest import make_tiny_llama


@pytest.fixture(scope="module")
def bench():
    return build_fictitious_authors(num_authors=10, qa_per_author=3, seed=2)


def test_every_row_is_checked_not_only_the_first(chat_tokenizer):
    rows = [{"question": "Q?", "answer": "A."}, {"question": "Q2?"}]
    with pytest.raises(ValueError, match=r"Row 1: Cannot tell the schema of a row with columns \['question'\]"):
        tokenize_rows(rows, chat_tokenizer)
    with pytest.raises(ValueError, match=r"Row 1: 'answer' must be a string .* got NoneType"):
        tokenize_rows([{"question": "Q?", "answer": "A."}, {"question": "Q?", "answer": None}], chat_tokenizer)
    with pytest.raises(ValueError, match=r"Row 1 is a completion row but row 0 is a qa row"):
        tokenize_rows([{"question": "Q?", "answer": "A."}, {"prompt": "P", "text": "T"}], chat_tokenizer)
    with pytest.raises(ValueError, match=r"Row 0 is a str, not a mapping of columns"):
        tokenize_rows(["What is the capital of France?"], chat_tokenizer)


def test_trainer_inputs(chat_tokenizer, bench, tmp_path):
    with pytest.raises(ValueError, match=r"Got the path 'forget\.jsonl' where rows are expected"):
        GradDiffTrainer(
            make_tiny_llama(chat_tokenizer),
            args=GradDiffConfig(output_dir=str(tmp_path), report_to=[]),
            forget_dataset="forget.jsonl",
            retain_dataset=bench["retain"],
            processing_class=chat_tokenizer,
        )
    with pytest.raises(ValueError, match="per_device_train_batch_size must be >= 1, got 0"):
        NPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=0)
    with pytest.warns(UserWarning, match="3 of 3 forget rows also appear in the retain set"):
        GradDiffTrainer(
            make_tiny_llama(chat_tokenizer),
            args=GradDiffConfig(output_dir=str(tmp_path), report_to=[]),
            forget_dataset=bench["forget"],
            retain_dataset=[*bench["retain"], *bench["forget"]],
            processing_class=chat_tokenizer,
        )


def test_files_and_configs_are_named_in_errors(tmp_path, tiny_model_dir):
    bad = tmp_path / "forget.jsonl"
    bad.write_text('{"question": "Q?", "answer": "A."}\n{"question": "Q?", "answer": \n')
    with pytest.raises(ValueError, match=r"forget.jsonl, line 2: not valid JSON"):
        training_data("files", forget_path=str(bad))
    yml = tmp_path / "cfg.yaml"
    yml.write_text("method: npo\nlearning_rate: [1e-5\n")
    with pytest.raises(ValueError, match=r"cfg.yaml is not valid YAML"):
        recipe(["--config", str(yml)])
    log = tmp_path / "ref.json"
    log.write_text("{truncated")
    with pytest.raises(ValueError, match=r"ref.json is not valid JSON"):
        EvalResult.load(log)
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"truncated or not a safetensors file.*save or download the model again"):
        load_model(str(broken))


def test_eval_cli_checks_before_evaluating(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "existing"
    out.mkdir()
    common = ["eval", "--model_name_or_path", str(tiny_model_dir), "--suite", "tofu", "--num_authors", "10"]
    with pytest.warns(FutureWarning):  # hf_unlearn 0.1's --output FILE
        assert cli([*common, "--output", str(out)]) == 2
    assert "is a folder; give a file path" in capsys.readouterr().err
    assert list(out.iterdir()) == []  # nothing left behind
    (tmp_path / "file").write_text("x")
    assert cli([*common, "--output_dir", str(tmp_path / "file")]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err
    assert cli([*common, "--per_device_eval_batch_size", "0"]) == 2
    assert "--per_device_eval_batch_size must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(["eval", "--suite", "tofu"])
    assert "required: --model_name_or_path" in capsys.readouterr().err


def test_reference_problems_are_reported_up_front(chat_tokenizer, bench, tmp_path, monkeypatch):
    model = make_tiny_llama(chat_tokenizer)
    splits = builtin_tofu_splits(bench, retain_size=4)
    ref = evaluate_tofu(model, chat_tokenizer, **splits, generate=False)
    other = build_fictitious_authors(num_authors=10, qa_per_author=3, seed=3)
    import hf_unlearn.evaluation.tofu as tofu

    def no_scoring(*args, **kwargs):
        raise AssertionError("scored before the reference was checked")

    monkeypatch.setattr(tofu, "score_sequences", no_scoring)
    with pytest.raises(Exception, match="items differ"):
        evaluate_tofu(model, chat_tokenizer, **builtin_tofu_splits(other, retain_size=4), reference=ref, generate=False)
    monkeypatch.undo()
    sanitized = EvalResult(ref.suite, ref.metrics, ref.details, {}, ref.meta)  # e.g. the copy pushed to the Hub
    with pytest.warns(UserWarning, match="no per-item forget truth ratios"):
        result = evaluate_tofu(model, chat_tokenizer, **splits, reference=sanitized, generate=False)
    assert result.metrics["forget_quality"] is None and "skipped" in result.details["forget_quality"]


def test_result_save_leaves_no_temporary_file(tmp_path, monkeypatch):
    result = EvalResult("tofu", {"forget_prob": 0.5})

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dumps", full_disk)
    with pytest.raises(OSError, match="No space left"):
        result.save(tmp_path / "r.json")
    assert list(tmp_path.iterdir()) == []
