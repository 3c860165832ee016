"""Hub publishing with a patched client (no network): private repo, uploaded files, card metadata that parses back
with the right values, no forget-set text anywhere in what is uploaded, loading back."""

import json
from pathlib import Path
from unittest import mock

import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from peft import LoraConfig, PeftModel

from hf_unlearn import build_fictitious_authors, evaluate_tofu, load_unlearned
from hf_unlearn.cli import main
from hf_unlearn.evaluation import builtin_tofu_splits
from hf_unlearn.hub import HubLoginRequiredError, push_unlearned
from hf_unlearn.trainers import NPOConfig, NPOTrainer

from .conftest import make_tiny_llama


class FakeHub:
    """Records create_repo and copies what upload_folder would upload into a local 'remote' folder."""

    def __init__(self, remote: Path):
        self.remote, self.calls = remote, []

    def create_repo(self, repo_id, *, private=None, exist_ok=False, token=None, **kw):
        self.calls.append(("create_repo", repo_id, private))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, allow_patterns=None, token=None, **kw):
        from huggingface_hub.utils import filter_repo_objects

        files = [p for p in Path(folder_path).rglob("*") if p.is_file()]
        rel = [str(p.relative_to(folder_path)) for p in files]
        kept = sorted(filter_repo_objects(rel, allow_patterns=allow_patterns))
        for name in kept:
            (self.remote / name).parent.mkdir(parents=True, exist_ok=True)
            (self.remote / name).write_bytes((Path(folder_path) / name).read_bytes())
        self.calls.append(("upload_folder", repo_id, kept))
        return "commit"


@pytest.fixture(scope="module")
def bench():
    return build_fictitious_authors(num_authors=10, qa_per_author=3, seed=7)


def _trained_adapter(tok, bench, out):
    args = NPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=2,
        max_steps=2,
        report_to=[],
        save_strategy="no",
        learning_rate=1e-2,
        warmup_steps=0,
        hub_model_id="me/tiny-npo",
    )
    trainer = NPOTrainer(
        make_tiny_llama(tok),
        args=args,
        forget_dataset=bench["forget"],
        retain_dataset=bench["retain"],
        processing_class=tok,
        peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"]),
    )
    trainer.train()
    return trainer


def test_trainer_push_is_private_with_card_and_no_forget_text(chat_tokenizer, bench, tmp_path):
    trainer = _trained_adapter(chat_tokenizer, bench, tmp_path / "out")
    result = evaluate_tofu(trainer.model, chat_tokenizer, **builtin_tofu_splits(bench, retain_size=5), max_new_tokens=6)
    result.save(tmp_path / "out" / "results.json")  # full result, with per-item generations of forget questions
    (tmp_path / "out" / "forget.jsonl").write_text(json.dumps(bench["forget"][0]))  # must never be uploaded
    stale = tmp_path / "out" / "checkpoint-1"  # an intermediate, less unlearned checkpoint: never published
    stale.mkdir()
    (stale / "adapter_model.safetensors").write_bytes(b"old weights")
    (stale / "adapter_config.json").write_text("{}")
    local_results = (tmp_path / "out" / "results.json").read_text()
    fake = FakeHub(tmp_path / "remote")
    with (
        mock.patch.object(HfApi, "create_repo", fake.create_repo),
        mock.patch.object(HfApi, "upload_folder", fake.upload_folder),
        mock.patch("huggingface_hub.get_token", return_value="hf_fake"),
    ):
        trainer.push_to_hub(metrics={k: v for k, v in result.metrics.items() if v is not None})
    assert fake.calls[0] == ("create_repo", "me/tiny-npo", True)
    uploaded = fake.calls[1][2]
    assert {"README.md", "adapter_config.json", "adapter_model.safetensors", "results.json"} <= set(uploaded)
    assert not any(n.endswith((".bin", ".jsonl", ".pt")) for n in uploaded)
    assert all("/" not in n for n in uploaded)  # top-level files only: no checkpoint-*/ weights
    assert (tmp_path / "out" / "results.json").read_text() == local_results  # the user's file keeps per_item
    assert "per_item" in json.loads(local_results)
    assert "per_item" not in json.loads((tmp_path / "remote" / "results.json").read_text())
    card = ModelCard.load(tmp_path / "remote" / "README.md")
    assert card.data.library_name == "peft" and card.data.unlearning["method"] == "NPO"
    assert card.data.unlearning["forget_set"]["size"] == len(bench["forget"])
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert values["forget_truth_ratio"] == pytest.approx(result.metrics["forget_truth_ratio"])
    texts = [p.read_text(errors="ignore") for p in (tmp_path / "remote").rglob("*") if p.is_file()]
    for row in bench["forget"]:
        for field in ("question", "answer"):
            assert not any(row[field] in t for t in texts), f"forget {field} leaked: {row[field]!r}"
    # Loading back, both ways.
    base = make_tiny_llama(chat_tokenizer)
    loaded = PeftModel.from_pretrained(base, str(tmp_path / "remote"))
    ids = torch.randint(0, 300, (1, 6))
    with torch.no_grad():
        trainer.model.eval()
        torch.testing.assert_close(loaded(input_ids=ids).logits, trainer.model(input_ids=ids).logits)


def test_push_without_token_says_how_to_log_in(tmp_path, tiny_model_dir, capsys):
    with mock.patch("huggingface_hub.get_token", return_value=None):
        with pytest.raises(HubLoginRequiredError, match="hf auth login"):
            push_unlearned(tiny_model_dir, "me/model")
        assert main(["push", str(tiny_model_dir), "me/model"]) == 2
    assert "hf auth login" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match=r"neither adapter_config\.json nor config\.json"):
        push_unlearned(tmp_path, "me/model", token="x")


def test_load_unlearned_resolves_the_base_from_the_adapter(chat_tokenizer, bench, tmp_path, tiny_model_dir):
    from peft import get_peft_model

    model = get_peft_model(
        make_tiny_llama(chat_tokenizer), LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False)
    )
    model.peft_config["default"].base_model_name_or_path = str(tiny_model_dir)
    model.save_pretrained(tmp_path / "adapter")
    loaded, tok = load_unlearned(tmp_path / "adapter")
    assert isinstance(loaded, PeftModel)
    assert loaded.base_model.model.config._name_or_path == str(tiny_model_dir)  # the base the adapter names
    ids = torch.randint(0, 300, (1, 7))
    model.eval()
    loaded.eval()
    with torch.no_grad():  # the trained (non-zero) adapter is applied, on the saved base weights
        torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
    text = "Where was Elena Varenko born?"
    assert tok(text).input_ids == chat_tokenizer(text).input_ids and tok.chat_template == chat_tokenizer.chat_template
    ids = torch.randint(0, 300, (1, 5))
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits)


def test_load_unlearned_names_a_missing_local_base(chat_tokenizer, tmp_path, tiny_model_dir):
    from peft import get_peft_model

    model = get_peft_model(make_tiny_llama(chat_tokenizer), LoraConfig(r=4, target_modules=["q_proj"]))
    gone = tmp_path / "cache" / "demo" / "target"  # e.g. a demo target whose cache was cleared
    model.peft_config["default"].base_model_name_or_path = str(gone)
    model.save_pretrained(tmp_path / "adapter")
    with pytest.raises(FileNotFoundError, match=r"trained on a local model, .*target, which is not on this machine"):
        load_unlearned(tmp_path / "adapter")
