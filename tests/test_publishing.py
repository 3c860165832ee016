"""Publishing is private by construction, whatever the entry point: the recipe's ``--push_to_hub``, a trainer built
with ``push_to_hub=True`` (transformers' own Hub hooks), ``trainer.save_model()``, ``hf-unlearn push`` and
``load_unlearned``, all against a recording fake of ``huggingface_hub`` (every call and its arguments)."""

import fnmatch
import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from peft import LoraConfig

from hf_unlearn import build_fictitious_authors, load_unlearned
from hf_unlearn.cli import main as cli
from hf_unlearn.hub import ALLOWED_FILES, HubLoginRequiredError, HubPushError
from hf_unlearn.hub.cards import base_license, build_model_card
from hf_unlearn.scripts.unlearn import main as recipe
from hf_unlearn.trainers import NPOConfig, NPOTrainer

from .conftest import make_tiny_llama
from .hub_fake import RecordingHub
from .test_recipe import _config as recipe_config

BENCH = {"num_authors": 10, "qa_per_author": 2, "seed": 0}


@pytest.fixture
def hub(tmp_path):
    return RecordingHub(tmp_path / "remote")


def _forget_texts() -> list[str]:
    bench = build_fictitious_authors(**BENCH)
    return [row[k] for row in bench["forget"] for k in ("question", "answer")]


def _assert_no_forget_text(hub: RecordingHub, texts) -> None:
    uploaded = hub.texts()
    assert uploaded
    for text in texts:
        for name, content in uploaded.items():
            assert text not in content, f"forget text {text!r} reached {name}"


def _allowed_top_level(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_file() and any(fnmatch.fnmatch(p.name, a) for a in ALLOWED_FILES)}


def _recipe_config(tmp_path, model_dir, **over) -> Path:
    """The recipe tests' config (10 authors, 2 steps) with checkpoints every step and a push to the Hub."""
    push = {"save_strategy": "steps", "save_steps": 1, "push_to_hub": True, "hub_model_id": "someone/tiny-npo"}
    return recipe_config(tmp_path, model_dir, **{**push, **over})


def test_recipe_push_to_hub_is_one_private_allow_listed_upload_at_the_end(tmp_path, tiny_model_dir, hub):
    with hub.installed():
        assert cli(["train", "--config", str(_recipe_config(tmp_path, tiny_model_dir))]) == 0
    out = tmp_path / "run"
    assert (out / "checkpoint-1").is_dir() and (out / "checkpoint-2").is_dir()  # save_steps checkpoints stay local
    assert hub.names() == ["create_repo", "upload_folder"]  # nothing at start-up, nothing during training
    assert hub.calls[0][1]["private"] is True and hub.calls[0][1]["repo_id"] == "someone/tiny-npo"
    uploaded = set(hub.uploaded("someone/tiny-npo"))
    assert uploaded == _allowed_top_level(out)  # exactly the allow-list, top level only
    assert {"model.safetensors", "config.json", "README.md", "results.json", "hf_unlearn_lineage.json"} <= uploaded
    assert "training_args.bin" not in uploaded and (out / "training_args.bin").is_file()
    assert "per_item" in json.loads((out / "results.json").read_text())  # the local file keeps its per-item data
    assert "per_item" not in json.loads((hub.remote("someone/tiny-npo") / "results.json").read_text())
    # the run's report holds forget text locally (questions, answers, generations); only its figures go up
    report = (out / "report.html").read_text()
    assert any(text in report for text in _forget_texts())
    assert "report.html" not in uploaded and "report_training.png" in uploaded
    _assert_no_forget_text(hub, _forget_texts())
    card = ModelCard.load(hub.remote("someone/tiny-npo") / "README.md")
    assert "](report_training.png" in card.text  # the card shows the uploaded training curves
    assert card.data.pipeline_tag == "text-generation" and not card.data.datasets  # built-in data: no Hub id
    assert all(r.metric_config is None for r in card.data.eval_results)


def test_recipe_push_public_only_when_asked_and_a_failed_push_keeps_the_output(tmp_path, tiny_model_dir, hub):
    cfg = _recipe_config(tmp_path, tiny_model_dir, hub_private_repo=False, save_strategy="no", evaluate=False)
    hub.fail_on = "upload_folder"
    with hub.installed(), pytest.raises(HubPushError) as err:
        recipe(["--config", str(cfg)])
    out = tmp_path / "run"
    assert hub.names()[0] == "create_repo" and hub.calls[0][1]["private"] is False
    message = str(err.value)
    assert "connection reset" in message and "local folder is complete and unchanged" in message
    retry = f"hf-unlearn push --output_dir {out} --hub_model_id someone/tiny-npo --hub_private_repo false"
    assert f"retry with `{retry}`" in message
    assert {"model.safetensors", "config.json", "README.md", "hf_unlearn_lineage.json"} <= {
        p.name for p in out.iterdir()
    }
    # The retry the message names works and publishes the same folder.
    hub.fail_on = None
    with hub.installed():
        assert cli(["push", str(out), "someone/tiny-npo", "--hub_private_repo", "false"]) == 0
    assert "model.safetensors" in hub.uploaded("someone/tiny-npo")


def test_recipe_without_a_login_or_with_an_unpublishable_adapter_fails_before_training(tmp_path, tiny_model_dir, hub):
    with hub.installed(token=None), pytest.raises(HubLoginRequiredError, match="hf auth login"):
        recipe(["--config", str(_recipe_config(tmp_path, tiny_model_dir))])
    lora = {"use_peft": True, "lora_r": 4, "lora_target_modules": ["q_proj"]}
    with hub.installed(), pytest.raises(ValueError, match=r"local folder.*--merge"):
        recipe(["--config", str(_recipe_config(tmp_path, tiny_model_dir, **lora))])
    assert hub.calls == [] and not (tmp_path / "run").exists()


@pytest.mark.parametrize("strategy", ["every_save", "checkpoint", "all_checkpoints"])
def test_hub_strategies_that_upload_checkpoints_are_refused(tmp_path, strategy):
    with pytest.raises(ValueError, match=rf"hub_strategy='{strategy}' uploads checkpoints.*leave hub_strategy unset"):
        NPOConfig(output_dir=str(tmp_path), hub_strategy=strategy)
    assert NPOConfig(output_dir=str(tmp_path)).hub_strategy == "end"


def _lora_trainer(tok, out: Path, **args) -> NPOTrainer:
    bench = build_fictitious_authors(**BENCH)
    model = make_tiny_llama(tok)
    model.config._name_or_path = model.name_or_path = "someone/tiny-base"  # as if loaded from the Hub
    config = NPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=2,
        max_steps=3,
        report_to=[],
        learning_rate=1e-2,
        warmup_steps=0,
        **args,
    )
    return NPOTrainer(
        model,
        args=config,
        forget_dataset=bench["forget"],
        retain_dataset=bench["retain"],
        processing_class=tok,
        peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"]),
    )


def test_trainer_with_push_to_hub_uploads_nothing_during_training_and_pushes_privately(chat_tokenizer, tmp_path, hub):
    out = tmp_path / "out"
    with hub.installed():
        trainer = _lora_trainer(
            chat_tokenizer, out, push_to_hub=True, hub_model_id="tiny-npo", save_strategy="steps", save_steps=1
        )
        assert hub.calls == []  # transformers would create the repository here, with the account's visibility
        trainer.train()
        assert hub.calls == [] and (out / "checkpoint-3" / "optimizer.pt").is_file()
        trainer.push_to_hub()
        assert hub.names() == ["create_repo", "upload_folder"]
        assert hub.calls[0][1]["private"] is True
        assert hub.calls[1][1]["repo_id"] == "me/tiny-npo"  # the bare name resolved to the account's namespace
        uploaded = set(hub.uploaded("me/tiny-npo"))
        assert uploaded == _allowed_top_level(out)
        assert {"adapter_model.safetensors", "adapter_config.json", "README.md"} <= uploaded
        assert not any(n.startswith(("checkpoint", "last-checkpoint")) or n.endswith((".pt", ".bin")) for n in uploaded)
        # save_model() from user code pushes too (transformers' habit), through the same path and without recursion.
        trainer.save_model()
        assert hub.names() == ["create_repo", "upload_folder", "create_repo", "upload_folder"]
        assert hub.calls[3][1]["commit_message"] == "Model save"
    _assert_no_forget_text(hub, _forget_texts())

    # The card keeps what PEFT and the Hub put there, and parses.
    card = ModelCard.load(hub.remote("me/tiny-npo") / "README.md")
    data = card.data
    assert data.library_name == "peft" and data.pipeline_tag == "text-generation"
    assert data.base_model == "someone/tiny-base" and data.base_model_relation == "adapter"
    assert {"lora", "transformers", "base_model:adapter:someone/tiny-base"} <= set(data.tags)
    from importlib.metadata import version

    assert f"- PEFT {version('peft')}" in card.text and "### Framework versions" in card.text
    assert card.text.count("### Framework versions") == 1  # PEFT's own block was not added beside ours
    assert not data.datasets


def test_card_datasets_license_and_chance_levels(tmp_path):
    metrics = {"forget_prob": 0.4, "wmdp_bio_accuracy": 0.3, "wmdp_bio_chance": 0.25, "flag": True}
    card = build_model_card(
        repo_id="me/x",
        base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        method="NPO",
        is_adapter=False,
        forget_name="TOFU forget10",
        forget_size=400,
        metrics=metrics,
        datasets=["locuslab/TOFU"],
    )
    data = ModelCard(str(card)).data
    assert data.datasets == ["locuslab/TOFU"]
    assert data.license == "apache-2.0"  # the bundled model's GGUF records it
    assert {r.metric_type for r in data.eval_results} == {"forget_prob", "wmdp_bio_accuracy"}
    assert all(r.metric_config is None for r in data.eval_results)
    # A local base's card names its license; an unknown Hub model has none (no network call is made to look).
    base = tmp_path / "base"
    base.mkdir()
    (base / "README.md").write_text("---\nlicense: mit\n---\n# base\n")
    assert base_license(str(base)) == "mit"
    assert base_license("nobody/unknown-model") is None


def test_hub_cli_push_of_a_weight_space_output_and_loading_back(tmp_path, tiny_model_dir, hub, chat_tokenizer):
    from hf_unlearn.task_arithmetic import negate_checkpoint

    target, reinforced = tmp_path / "target", tmp_path / "reinforced"
    for seed, path in ((0, target), (1, reinforced)):
        make_tiny_llama(chat_tokenizer, seed=seed).save_pretrained(path)
        chat_tokenizer.save_pretrained(path)
    out = negate_checkpoint(target, reinforced, tmp_path / "tv", scale=1.0)
    (Path(out) / "training_args.bin").write_bytes(b"pickle")  # never uploaded
    with hub.installed():
        assert cli(["push", str(out), "me/tv"]) == 0
        assert hub.calls[0][1]["private"] is True
        assert set(hub.uploaded("me/tv")) == _allowed_top_level(Path(out))
        hub.calls.clear()
        model, _ = load_unlearned("me/tv")
        # One snapshot of the allow-listed files answers what the repository is: no extra request for a manifest.
        assert hub.names() == ["snapshot_download"]
        assert model.config._name_or_path == "me/tv"
        from transformers import AutoModelForCausalLM

        ids = torch.randint(0, 300, (1, 6))
        expected = AutoModelForCausalLM.from_pretrained(out).eval()
        with torch.no_grad():
            torch.testing.assert_close(model.eval()(input_ids=ids).logits, expected(input_ids=ids).logits)
        # Hub errors surface with their own message (not a confusing model-load error).
        from huggingface_hub.errors import RepositoryNotFoundError

        with pytest.raises(RepositoryNotFoundError, match="Repository Not Found"):
            load_unlearned("me/does-not-exist")
