"""One vocabulary with TRL: every command's parser, the shipped recipes, launching through accelerate, the inherited
fields that do nothing, quantization options, transformers' save_steps habit, eval results to trackers."""

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import hf_unlearn
from hf_unlearn.cli import COMMANDS, main
from hf_unlearn.recipes import accelerate_config_names, config_names, resolve_accelerate_config, resolve_config

from .conftest import first_batch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    return hf_unlearn.build_fictitious_authors(num_authors=10, qa_per_author=2)


# The names TRL and transformers use, which every command that has the notion must spell the same way.
SHARED = {
    "train": ["--model_name_or_path", "--output_dir", "--dataset_name", "--dataset_config", "--forget_split", "--seed"],
    "eval": ["--model_name_or_path", "--output_dir", "--dataset_name", "--dataset_config", "--forget_split"],
    "finetune": ["--model_name_or_path", "--output_dir", "--num_train_epochs", "--learning_rate", "--seed"],
    "task-vector": ["--model_name_or_path", "--output_dir", "--dataset_name", "--forget_path"],
    "push": ["--output_dir", "--hub_model_id", "--hub_private_repo", "--hub_token"],
    "data": ["--output_dir", "--benchmark_seed", "--num_authors"],
    "demo": ["--output_dir", "--num_authors"],
}
OLD = ["--model ", "--output ", "--batch-size", "--tofu-forget", "--muse-corpus", "--target ", "--reinforced "]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_helps_with_the_shared_names_and_hides_the_old_ones(command, capsys):
    argv = [command, "export", "--help"] if command == "data" else [command, "--help"]
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    text = capsys.readouterr().out
    for name in SHARED.get(command, []):
        assert name in text, (command, name)
    assert not any(old in text for old in OLD), command
    if command == "eval":
        assert "--per_device_eval_batch_size" in text and "--max_new_tokens" in text
    if command == "train":  # the method's, TrainingArguments' and ModelConfig's fields, grouped as TRL's scripts do
        assert "--beta" in text and "--learning_rate" in text and "--load_in_4bit" in text and "--report_to" in text


def _command_lines() -> list[tuple[str, str]]:
    r"""``(file, line)`` for every ``hf-unlearn ...`` command line of README.md and the docs' code blocks (``\``
    continuations joined)."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        if path.name == "changelog.md":
            continue
        lines = path.read_text().splitlines()
        i = 0
        while i < len(lines):
            line = lines[i].strip()
            while line.endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line[:-1] + " " + lines[i].strip()
            if line.startswith("hf-unlearn "):
                found.append((path.name, line.split(" #")[0]))
            i += 1
    return found


def test_readme_and_docs_command_lines_parse(tmp_path, monkeypatch):
    """Every ``hf-unlearn ...`` line of README.md and the docs parses with today's parser, in today's spelling."""
    import shlex
    import warnings

    from hf_unlearn.scripts.launch import pop_accelerate_config, unknown_to_accelerate
    from hf_unlearn.scripts.unlearn import _first_pass
    from hf_unlearn.scripts.unlearn import make_parser as train_parser

    monkeypatch.chdir(tmp_path)  # the quick start's own copy of the config, as its previous line writes it
    (tmp_path / "my.yaml").write_text(resolve_config("qlora_own_documents").read_text())
    lines = _command_lines()
    assert sum(name == "README.md" for name, _ in lines) >= 5 and len(lines) >= 20
    for name, line in lines:
        argv = shlex.split(line)[1:]
        command, rest = argv[0], argv[1:]
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            if command == "train":
                accelerate_config, rest = pop_accelerate_config(rest)
                assert accelerate_config is None or resolve_accelerate_config(accelerate_config)
                *_, leftover = train_parser(_first_pass(rest).method).parse_args_and_config(
                    rest, return_remaining_strings=True
                )
                assert unknown_to_accelerate(leftover) == [], (name, line)
            elif command == "recipes":
                continue
            else:
                module = __import__(f"hf_unlearn.scripts.{COMMANDS[command][0]}", fromlist=["make_parser"])
                if command == "data":
                    rest = rest[1:]
                if hasattr(module, "make_parser"):
                    module.make_parser().parse_args_and_config(rest)


# ------------------------------------------------------------------------------------------------- recipes


def test_recipes_resolve_by_name_by_file_and_by_the_old_repository_path(tmp_path):
    assert {"npo_tofu", "npo_tofu_lora", "demo", "qlora_own_documents", "rmu_wmdp"} <= set(config_names())
    assert set(accelerate_config_names()) == {"single_gpu", "multi_gpu", "fsdp2", "zero3", "multi_cpu"}
    packaged = Path(hf_unlearn.__file__).parent / "recipes" / "configs" / "npo_tofu.yaml"
    assert resolve_config("npo_tofu") == packaged == resolve_config("npo_tofu.yaml")
    mine = tmp_path / "npo_tofu"  # a file of the same name wins: the user's path is what they meant
    mine.write_text("method: npo\n")
    assert resolve_config(str(mine)) == mine
    with pytest.warns(FutureWarning, match="use --config npo_tofu"):
        assert resolve_config("recipes/configs/tofu/npo.yaml") == packaged
    with pytest.raises(FileNotFoundError, match=r"neither a file nor a config shipped.*npo_tofu_lora"):
        resolve_config("npo_tofo")
    assert resolve_accelerate_config("zero3").name == "zero3.yaml"
    with pytest.raises(FileNotFoundError, match="multi_cpu"):
        resolve_accelerate_config("zero4")


def test_recipes_command_lists_prints_and_copies(tmp_path, capsys):
    assert main(["recipes"]) == 0
    listing = capsys.readouterr().out
    assert "npo_tofu_lora" in listing and "zero3" in listing
    assert main(["recipes", "npo_tofu"]) == 0
    assert "method: npo" in capsys.readouterr().out
    target = tmp_path / "my.yaml"
    assert main(["recipes", "qlora_own_documents", "--copy_to", str(target)]) == 0
    assert yaml.safe_load(target.read_text())["load_in_4bit"] is True
    assert main(["recipes", "qlora_own_documents", "--copy_to", str(target)]) == 2  # never overwrites
    assert "exists" in capsys.readouterr().err


def test_config_equals_form_and_flags_override_the_yaml():
    from hf_unlearn.scripts.unlearn import _first_pass, make_parser

    argv = ["--config=npo_tofu_lora", "--learning_rate", "3e-4", "--method=npo"]
    script_args, training_args, model_args = make_parser(_first_pass(argv).method).parse_args_and_config(argv)
    assert model_args.use_peft and training_args.learning_rate == 3e-4 and script_args.dataset_name == "tofu"
    argv = ["--config", "demo", "--method", "simnpo"]  # --method is an ordinary field: the flag beats the YAML
    assert _first_pass(argv).method == "simnpo"
    assert type(make_parser("simnpo").parse_args_and_config(argv)[1]).__name__ == "SimNPOConfig"


# ------------------------------------------------------------------------------------------------- launching


def _recorded_launch(monkeypatch):
    import accelerate.commands.launch as launch_module

    seen = []
    monkeypatch.setattr(launch_module, "launch_command", lambda args: seen.append(args))
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("HF_UNLEARN_LAUNCHED", raising=False)
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    return seen


def test_accelerate_config_and_launcher_options_go_to_accelerate_launch(monkeypatch, tmp_path):
    seen = _recorded_launch(monkeypatch)
    argv = ["train", "--config", "demo", "--accelerate_config", "multi_cpu", "--num_processes", "2"]
    argv += ["--learning_rate", "1e-4", "--main_process_port", "29555", "--output_dir", str(tmp_path / "o")]
    assert main(argv) == 0
    (args,) = seen
    assert args.config_file == str(resolve_accelerate_config("multi_cpu"))
    assert args.num_processes == 2 and args.main_process_port == 29555
    assert args.module and args.training_script == "hf_unlearn.scripts.unlearn"
    # the recipe's own options (and nothing of the launcher's) reach every process
    assert args.training_script_args == [
        "--config",
        "demo",
        "--learning_rate",
        "1e-4",
        "--output_dir",
        str(tmp_path / "o"),
    ]
    assert not (tmp_path / "o").exists()  # the launcher's processes do the work, not this one
    yaml_file = tmp_path / "with_launcher.yaml"  # launcher options may live in the YAML too (as in TRL's configs)
    yaml_file.write_text("method: npo\nnum_processes: 3\nlearning_rate: 2.0e-4\n")
    assert main(["train", "--config", str(yaml_file), "--accelerate_config", "multi_cpu", "--seed", "4"]) == 0
    assert seen[-1].num_processes == 3 and seen[-1].training_script_args == ["--config", str(yaml_file), "--seed", "4"]


def test_no_relaunch_under_a_launcher_and_unknown_options_are_named(monkeypatch, tmp_path, capsys):
    seen = _recorded_launch(monkeypatch)
    ran = []
    import hf_unlearn.scripts.unlearn as recipe

    monkeypatch.setattr(recipe, "run", lambda *a: ran.append(a))
    monkeypatch.setenv("HF_UNLEARN_LAUNCHED", "1")  # as this module starts its processes
    assert main(["train", "--config", "demo", "--accelerate_config", "multi_cpu"]) == 0
    assert not seen and len(ran) == 1 and "already running under a launcher" in capsys.readouterr().err
    assert main(["train", "--config", "demo", "--learnig_rate", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown options learnig_rate" in err and "accelerate launch" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: npo\nnum_processes: 2\nsave_stpes: 3\n")  # accelerate options may live in the YAML too
    assert main(["train", "--config", str(bad)]) == 2
    assert "the --config file: unknown options save_stpes" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- configs show what acts


@pytest.mark.parametrize(
    ("method", "field", "value", "names"),
    [
        ("npo", "desirable_weight", 2.0, "forget_coeff and retain_coeff"),
        ("grad_ascent", "beta", 0.5, "has no beta"),
        ("grad_diff", "sync_ref_model", True, "reference stays the starting model"),
        ("idk_dpo", "label_smoothing", 0.1, "own loss"),
        ("reasoned_idk", "padding_free", True, "pads each batch"),
        ("npo", "dataset_num_proc", 4, "tokenised once"),
    ],
)
def test_inherited_fields_that_do_nothing_are_hidden_and_refused(method, field, value, names, tmp_path):
    from hf_unlearn.registry import get_method
    from hf_unlearn.scripts.unlearn import make_parser

    config = get_method(method).config_class
    hidden = [a for a in make_parser(method)._actions if f"--{field}" in a.option_strings]
    assert hidden and hidden[0].help is argparse.SUPPRESS  # accepted by the parser, absent from --help
    with pytest.raises(ValueError, match=f"does not use {field} .*{names}"):
        config(output_dir=str(tmp_path), **{field: value})
    config(output_dir=str(tmp_path))  # the default is fine


def test_a_method_that_uses_an_inherited_field_shows_and_accepts_it(tmp_path):
    from hf_unlearn.scripts.unlearn import make_parser
    from hf_unlearn.trainers import NPOConfig

    beta = next(a for a in make_parser("npo")._actions if "--beta" in a.option_strings)
    assert beta.help is not argparse.SUPPRESS
    assert NPOConfig(output_dir=str(tmp_path), beta=0.3).beta == 0.3
    assert NPOConfig(output_dir=str(tmp_path), pad_to_multiple_of=8).pad_to_multiple_of == 8


def test_pad_to_multiple_of_reaches_the_collator(tiny_model, chat_tokenizer, bench, tmp_path):
    from hf_unlearn.trainers import GradAscentConfig, GradAscentTrainer

    args = GradAscentConfig(output_dir=str(tmp_path), pad_to_multiple_of=16, report_to=[], retain_loss_type="none")
    trainer = GradAscentTrainer(tiny_model, args=args, forget_dataset=bench["forget"], processing_class=chat_tokenizer)
    batch = first_batch(trainer)
    lengths = [v.shape[-1] for k, v in batch.items() if k.endswith("input_ids")]
    assert lengths and all(n % 16 == 0 for n in lengths)


def test_save_steps_alone_turns_checkpoints_on_as_in_transformers(tmp_path, caplog):
    from hf_unlearn.trainers import NPOConfig

    assert NPOConfig(output_dir=str(tmp_path)).save_strategy.value == "no"  # nothing asked: no checkpoints
    assert NPOConfig(output_dir=str(tmp_path), save_steps=5).save_strategy.value == "steps"
    with caplog.at_level("WARNING", logger="hf_unlearn"):
        assert NPOConfig(output_dir=str(tmp_path), save_steps=5, save_strategy="no").save_strategy.value == "no"
    assert "save_steps=5 saves nothing: save_strategy is 'no'" in caplog.text
    assert NPOConfig(output_dir=str(tmp_path), save_strategy="epoch").save_strategy.value == "epoch"
    copy = dataclasses.replace(NPOConfig(output_dir=str(tmp_path), save_steps=5), learning_rate=1e-4)
    assert copy.save_strategy.value == "steps"


# ------------------------------------------------------------------------------------------------- quantization


def test_quantization_options_follow_trl(tmp_path):
    from trl import ModelConfig

    from hf_unlearn.scripts.unlearn import _quantization_config

    q = _quantization_config(
        ModelConfig(load_in_4bit=True, use_peft=True, bnb_4bit_quant_type="fp4", use_bnb_nested_quant=True)
    )
    assert q.load_in_4bit and q.bnb_4bit_quant_type == "fp4" and q.bnb_4bit_use_double_quant
    assert _quantization_config(ModelConfig(load_in_8bit=True, use_peft=True)).load_in_8bit
    assert _quantization_config(ModelConfig()) is None
    with pytest.raises(ValueError, match=r"--load_in_4bit without --use_peft.*QLoRA"):
        _quantization_config(ModelConfig(load_in_4bit=True))


def _tiny_recipe(tmp_path, model_dir, **settings):
    """A recipe config for the tiny model: NPO on 10 authors of 2 QA, batch 2, plus ``settings``."""
    cfg = tmp_path / "cfg.yaml"
    base = {"method": "npo", "num_authors": 10, "qa_per_author": 2, "model_name_or_path": str(model_dir)}
    base.update(output_dir=str(tmp_path / "run"), per_device_train_batch_size=2)
    cfg.write_text(yaml.safe_dump({**base, **settings}))
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("flags", [["--load_in_8bit"], ["--load_in_4bit", "--bnb_4bit_quant_type", "fp4"]])
def test_recipe_trains_an_adapter_on_a_quantized_base(flags, tmp_path, tiny_model_dir):
    pytest.importorskip("bitsandbytes")
    from hf_unlearn.scripts.unlearn import main as recipe

    cfg = _tiny_recipe(
        tmp_path,
        tiny_model_dir,
        use_peft=True,
        lora_r=4,
        lora_target_modules=["q_proj", "v_proj"],
        max_steps=2,
        evaluate=False,
        report_to=[],
    )
    assert recipe(["--config", str(cfg), *flags]) == 0
    card = (tmp_path / "run" / "README.md").read_text()
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file() and "npo" in card.lower()


# ------------------------------------------------------------------------------------------------- trackers


def test_evaluation_results_reach_the_report_to_trackers(tmp_path, tiny_model_dir, monkeypatch):
    from transformers import TrainerCallback
    from transformers.integrations import integration_utils

    logged = []

    class Tracker(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            logged.append(dict(logs or {}))

    monkeypatch.setitem(integration_utils.INTEGRATION_TO_CALLBACK, "tensorboard", Tracker)
    from hf_unlearn.scripts.unlearn import main as recipe

    cfg = _tiny_recipe(tmp_path, tiny_model_dir, max_steps=1, max_new_tokens=2, report_to=["tensorboard"])
    assert recipe(["--config", str(cfg)]) == 0
    final = [entry for entry in logged if any(k.startswith("unlearn_eval/") for k in entry)]
    saved = json.loads((tmp_path / "run" / "results.json").read_text())["metrics"]
    assert len(final) == 1 and final[0]["unlearn_eval/forget_prob"] == pytest.approx(saved["forget_prob"])


# ------------------------------------------------------------------------------------------------- logging


def test_library_messages_go_through_one_logger_and_can_be_silenced(capsys):
    import logging

    from hf_unlearn import get_verbosity, set_verbosity

    log = logging.getLogger("hf_unlearn.test")
    before = get_verbosity()
    try:
        set_verbosity("info")
        log.info("a message")
        assert capsys.readouterr().err == "[hf_unlearn] a message\n"
        set_verbosity("error")
        log.warning("quiet now")
        assert capsys.readouterr().err == ""
    finally:
        set_verbosity(before)


@pytest.mark.slow
def test_only_the_main_process_speaks_and_no_third_party_noise():
    code = (
        "import os, logging, hf_unlearn\n"
        "hf_unlearn.set_verbosity('info')\n"
        "logging.getLogger('hf_unlearn.x').info('rank says hello')\n"
        "import bitsandbytes, transformers\n"
    )
    outputs = {}
    for rank in ("0", "1"):
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={"RANK": rank, "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
            timeout=120,
        )
        outputs[rank] = proc.stderr
    assert "rank says hello" in outputs["0"] and "rank says hello" not in outputs["1"]
    assert "kernels-community" not in outputs["0"] and "publisher trust" not in outputs["0"]
