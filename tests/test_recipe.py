"""The unlearning recipe: YAML + CLI overrides, outputs, bad input, and a real 2-rank CPU run (torchrun, gloo)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import ModelCard

from hf_unlearn.cli import main as cli
from hf_unlearn.recipes import config_names, resolve_config
from hf_unlearn.scripts.unlearn import main

ROOT = Path(__file__).resolve().parents[1]


def _config(tmp_path, model_dir, **over):
    cfg = {
        "method": "npo",
        "dataset_name": "fictitious-authors",
        "num_authors": 10,
        "qa_per_author": 2,
        "model_name_or_path": str(model_dir),
        "output_dir": str(tmp_path / "run"),
        "per_device_train_batch_size": 2,
        "max_steps": 2,
        "learning_rate": 1.0e-3,
        "warmup_steps": 0,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "max_new_tokens": 4,
        **over,
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_recipe_writes_model_results_and_card_and_cli_overrides_yaml(tmp_path, tiny_model_dir):
    cfg = _config(tmp_path, tiny_model_dir)
    assert cli(["train", "--config", str(cfg), "--learning_rate", "0.002"]) == 0
    out = tmp_path / "run"
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    results = json.loads((out / "results.json").read_text())
    assert results["metrics"]["forget_prob"] is not None
    card = ModelCard.load(out / "README.md")
    assert card.data.unlearning["method"] == "NPO"
    assert card.data.unlearning["hyperparameters"]["learning_rate"] == 0.002  # the CLI flag won over the YAML
    assert {r.metric_type for r in card.data.eval_results} >= {"forget_prob", "model_utility"}
    with pytest.raises(FileExistsError, match="already holds a run"):
        main(["--config", str(cfg)])


@pytest.mark.parametrize(
    "method,name,expected",
    [
        ("undial", "UNDIAL", {"beta": 10.0, "teacher_top_k": 256, "retain_loss_type": "none"}),
        ("ceu", "CE-U", {"ignore_first_n_answer_tokens": 1, "retain_loss_type": "none"}),
        ("pdu", "PDU", {"primal_dual": True, "dual_warmup_epochs": 5}),
    ],
)
def test_recipe_runs_open_unlearning_methods(tmp_path, tiny_model_dir, method, name, expected):
    cfg = _config(tmp_path, tiny_model_dir, method=method, evaluate=False)
    assert cli(["train", "--config", str(cfg)]) == 0
    card = ModelCard.load(tmp_path / "run" / "README.md")
    assert card.data.unlearning["method"] == name
    hyper = card.data.unlearning["hyperparameters"]
    assert {k: hyper[k] for k in expected} == expected
    if method == "pdu":  # the constraint level measured before training is on the card
        assert hyper["retain_loss_eps"] > 0 and "final_dual_variable" in hyper
    else:  # no retain term: no retain set was loaded and none is described
        assert "retain_coeff" not in hyper


def test_recipe_bad_input(tmp_path, tiny_model_dir):
    from hf_unlearn.registry import METHODS

    with pytest.raises(ValueError, match="Unknown method 'npx'") as err:
        main(["--config", str(_config(tmp_path, tiny_model_dir)), "--method", "npx"])
    assert all(name in str(err.value) for name in METHODS)  # the message lists every registered method
    assert not (tmp_path / "run").exists()  # refused before anything was written
    bad = _config(tmp_path, tiny_model_dir, learnig_rate=0.1)  # a typo in the YAML
    with pytest.raises(ValueError, match="learnig_rate"):
        main(["--config", str(bad)])
    with pytest.raises(ValueError, match="Unknown callbacks"):
        main(["--config", str(_config(tmp_path, tiny_model_dir)), "--callbacks", "rmx"])


@pytest.mark.slow
def test_module_entry_point_runs_the_recipe():
    """`python -m hf_unlearn.scripts.unlearn` must reach the parser, not import and exit silently."""
    proc = subprocess.run(
        [sys.executable, "-m", "hf_unlearn.scripts.unlearn", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--forget_path" in proc.stdout and "--learning_rate" in proc.stdout


TASK_VECTOR_CONFIGS = ("sta_tofu", "task_vector_tofu")
TRAINER_CONFIGS = [n for n in config_names() if n not in TASK_VECTOR_CONFIGS]


@pytest.mark.filterwarnings("error::FutureWarning")  # shipped configs use today's names
@pytest.mark.parametrize("name", TASK_VECTOR_CONFIGS)
def test_shipped_task_vector_configs_parse(name):
    from hf_unlearn.scripts.task_vector import make_parser

    (args,) = make_parser().parse_args_and_config(["--config", name])  # an unknown key would raise
    assert args.model_name_or_path and args.reinforced_model_name_or_path and args.sweep
    assert args.output_dir.startswith("outputs/") and args.dataset_name == "tofu"


@pytest.mark.filterwarnings("error::FutureWarning")
@pytest.mark.parametrize("name", TRAINER_CONFIGS)
def test_shipped_configs_parse(name):
    from hf_unlearn.registry import get_method
    from hf_unlearn.scripts.unlearn import _first_pass, make_parser

    argv = ["--config", name]
    script_args, training_args, model_args = make_parser(_first_pass(argv).method).parse_args_and_config(argv)
    assert isinstance(training_args, get_method(script_args.method).config_class)
    assert model_args.model_name_or_path and training_args.output_dir.startswith("outputs/")
    text = resolve_config(name).read_text()
    assert "spec " not in text and "recipes/configs" not in text  # users have neither the spec nor the repository


def test_recipe_resumes_an_interrupted_run_and_refuses_to_clobber_it(tmp_path, tiny_model_dir, capsys):
    from safetensors.torch import load_file

    cfg = _config(tmp_path, tiny_model_dir, save_strategy="steps", save_steps=1, evaluate=False)
    main(["--config", str(cfg)])
    out = tmp_path / "run"
    final = load_file(out / "model.safetensors")
    for item in out.iterdir():  # a run killed after its first checkpoint: only checkpoint-1 is left
        if item.name != "checkpoint-1":
            shutil.rmtree(item) if item.is_dir() else item.unlink()
    with pytest.raises(FileExistsError, match=r"interrupted run \(checkpoint-1\).*--resume_from_checkpoint true"):
        main(["--config", str(cfg)])
    assert [p.name for p in out.iterdir()] == ["checkpoint-1"]  # untouched
    main(["--config", str(cfg), "--resume_from_checkpoint", "true"])
    assert "resuming from" in capsys.readouterr().err  # hf_unlearn's logger, on stderr
    resumed = load_file(out / "model.safetensors")
    for name, tensor in final.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0, msg=name)  # equals the uninterrupted run
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        main(
            [
                "--config",
                str(_config(tmp_path, tiny_model_dir, output_dir=str(tmp_path / "new"))),
                "--resume_from_checkpoint",
                "true",
            ]
        )


def test_overwrite_removes_only_what_the_library_wrote(tmp_path, tiny_model_dir):
    cfg = _config(tmp_path, tiny_model_dir, evaluate=True)
    main(["--config", str(cfg)])  # full fine-tuning: model.safetensors, config.json, results.json, README.md
    out = tmp_path / "run"
    (out / "notes.txt").write_text("mine")
    main(
        [
            "--config",
            str(cfg),
            "--overwrite",
            "true",
            "--use_peft",
            "true",
            "--lora_target_modules",
            "all-linear",
            "--evaluate",
            "false",
        ]
    )
    names = {p.name for p in out.iterdir()}
    assert "adapter_model.safetensors" in names and "notes.txt" in names
    assert not names & {"model.safetensors", "results.json"}  # no stale full model or results beside the adapter


def test_recipe_calibrated_stopping_is_on_the_card(tmp_path, tiny_model_dir, monkeypatch):
    import warnings

    import hf_unlearn

    made = []

    class Recorded(hf_unlearn.ForgetTargetCallback):
        def __init__(self, *args, **kwargs):
            made.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(hf_unlearn, "ForgetTargetCallback", Recorded)
    cfg = _config(tmp_path, tiny_model_dir, evaluate=False, max_steps=4, calibrate=True, calibration_every=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 2 forget rows: the AUC-spread warning is expected
        args = ["--calibration_metric", "prob", "--calibration_tolerance", "5", "--no_calibration_refine"]
        assert cli(["train", "--config", str(cfg), *args]) == 0
    hyper = ModelCard.load(tmp_path / "run" / "README.md").data.unlearning["hyperparameters"]
    # a tolerance of 5 probability points is met at once: training stops at step 0, before any update
    assert hyper["calibrated_stopping"].startswith("stop when |d| <= 5.0 or d < -5.0 with d = forget_prob")
    assert "reached, best step 0" in hyper["calibrated_stopping"]
    assert made[0]["refine_overshoot"] is False and made[0]["every_n_steps"] == 2  # on unless turned off
    forget = tmp_path / "f.jsonl"
    forget.write_text(json.dumps({"question": "Q?", "answer": "A."}) + "\n")
    bad = _config(tmp_path, tiny_model_dir, dataset_name=None, forget_path=str(forget), calibrate=True)
    with pytest.raises(ValueError, match="needs non-member rows: pass nonmember_path"):
        main(["--config", str(bad), "--overwrite", "true"])
    # hf_unlearn 0.1's spelling of the same (dataset: files) still works, saying what to write instead
    old = _config(tmp_path, tiny_model_dir, dataset_name=None, dataset="files", forget_path=str(forget), calibrate=True)
    with (
        pytest.warns(FutureWarning, match="dataset: is deprecated: use dataset_name:"),
        pytest.raises(ValueError, match="needs non-member rows: pass nonmember_path"),
    ):
        main(["--config", str(old), "--overwrite", "true"])
    both = _config(tmp_path, tiny_model_dir, forget_path=str(forget))  # a built-in name and a file: which one?
    with pytest.raises(ValueError, match="--forget_path are your own data, but --dataset_name fictitious-authors"):
        main(["--config", str(both), "--overwrite", "true"])


def test_recipe_settings_search_saves_the_best_trial_and_its_record(tmp_path, tiny_model_dir):
    import warnings

    pytest.importorskip("optuna")
    lora = {"use_peft": True, "lora_r": 4, "lora_alpha": 8, "lora_target_modules": ["q_proj", "v_proj"]}
    cfg = _config(tmp_path, tiny_model_dir, evaluate=False, max_steps=2, search_trials=2, search_every=1, **lora)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 2 forget rows: the AUC-spread warning is expected
        assert cli(["train", "--config", str(cfg), "--calibration_metric", "prob"]) == 0
    out = tmp_path / "run"
    search = json.loads((out / "search.json").read_text())
    assert [t["state"] for t in search["trials"]] == ["complete", "complete"]  # pruning waits for two trials
    assert set(search["best_params"]) == {"learning_rate", "beta", "retain_coeff"}
    hyper = ModelCard.load(out / "README.md").data.unlearning["hyperparameters"]
    assert hyper["learning_rate"] == pytest.approx(search["best_params"]["learning_rate"])
    assert f"best trial {search['best_trial']}" in hyper["settings_search"]
    assert (out / "adapter_model.safetensors").is_file() and not list(out.glob("trial-*"))
    with pytest.raises(ValueError, match="cannot resume a checkpoint"):
        main(["--config", str(cfg), "--overwrite", "true", "--resume_from_checkpoint", "true"])


@pytest.mark.slow
def test_recipe_eval_robustness_writes_its_report_and_card_section(tmp_path, tiny_model_dir):
    cfg = _config(tmp_path, tiny_model_dir, eval_robustness=True, qa_per_author=4)
    assert cli(["train", "--config", str(cfg)]) == 0
    out = tmp_path / "run"
    report = json.loads((out / "robustness.json").read_text())
    assert report["suite"] == "robustness" and report["details"]["conditions"]["relearn_25"]["status"] == "ok"
    text = (out / "README.md").read_text()
    assert "## Robustness" in text and "| quant_4bit |" in text
    from hf_unlearn.hub import ALLOWED_FILES

    assert "robustness.json" not in ALLOWED_FILES  # it holds forget questions and generations: never uploaded
    bad = _config(tmp_path, tiny_model_dir, dataset_name="files", forget_path=str(tmp_path / "f.jsonl"))
    (tmp_path / "f.jsonl").write_text(json.dumps({"question": "Q?", "answer": "A."}) + "\n")
    with pytest.raises(ValueError, match="--eval_robustness needs QA evaluation sets with holdout rows"):
        main(["--config", str(bad), "--overwrite", "true", "--eval_robustness", "true"])


def test_recipe_runs_o3_on_lora_and_reasoned_idk_in_the_think_format(tmp_path, tiny_model_dir):
    lora = {"use_peft": True, "lora_r": 4, "lora_alpha": 8, "lora_target_modules": ["q_proj", "v_proj"]}
    (tmp_path / "o3").mkdir()
    (tmp_path / "ri").mkdir()
    cfg = _config(tmp_path / "o3", tiny_model_dir, method="o3", evaluate=False, **lora)
    assert cli(["train", "--config", str(cfg)]) == 0
    out = tmp_path / "o3" / "run"
    card = ModelCard.load(out / "README.md")
    assert card.data.unlearning["method"] == "O3" and card.data.library_name == "peft"
    assert card.data.unlearning["hyperparameters"]["retain_loss_type"] == "none"  # O3 uses no retain data
    cfg = _config(tmp_path / "ri", tiny_model_dir, method="reasoned_idk", evaluate=False, loss_type="nll")
    assert cli(["train", "--config", str(cfg)]) == 0
    hyper = ModelCard.load(tmp_path / "ri" / "run" / "README.md").data.unlearning["hyperparameters"]
    assert hyper["forget_target"] == "both" and hyper["idk_variant"] == "reasoned"
