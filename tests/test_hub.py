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


def _trained_adapter(tok, bench, out, model=None):
    """Two NPO steps of a LoRA adapter on ``model`` (a fresh tiny Llama by default)."""
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
        model if model is not None else make_tiny_llama(tok),
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


# ---------------------------------------------------------------------------------------------- lineage and local bases


class PerRepoHub(FakeHub):
    """FakeHub with one remote folder per repository."""

    def upload_folder(self, *, repo_id, folder_path, **kw):
        remote, self.remote = self.remote, self.remote / repo_id
        try:
            return super().upload_folder(repo_id=repo_id, folder_path=folder_path, **kw)
        finally:
            self.remote = remote


def _cached_base(chat_tokenizer, cache: Path) -> Path:
    """A 'demo target' in hf_unlearn's cache, with the lineage the reference pipeline writes."""
    from hf_unlearn.hub.lineage import write_lineage
    from hf_unlearn.models import BUNDLED_HUB_ID

    folder = cache / "demo" / "abc" / "target"
    make_tiny_llama(chat_tokenizer, seed=3).save_pretrained(folder)
    chat_tokenizer.save_pretrained(folder)
    step = {
        "kind": "fine-tune",
        "data": "fictitious-authors",
        "cache": "demo/abc/target",
        "recreate": "`hf-unlearn demo`",
    }
    write_lineage(folder, {"base": BUNDLED_HUB_ID, "steps": [step]})
    return folder


def _adapter_on(base_dir: Path, tok, bench, out: Path):
    from transformers import AutoModelForCausalLM

    trainer = _trained_adapter(tok, bench, out, model=AutoModelForCausalLM.from_pretrained(base_dir))
    trainer.save_model(str(out))
    trainer.create_model_card()
    return trainer


def _adapter_on_cached_base(chat_tokenizer, bench, tmp_path, monkeypatch, cache: str):
    """An NPO adapter in ``tmp_path/out`` trained on a cached 'demo target' in ``tmp_path/cache``."""
    monkeypatch.setenv("HF_UNLEARN_CACHE", str(tmp_path / cache))
    base_dir = _cached_base(chat_tokenizer, tmp_path / cache)
    out = tmp_path / "out"
    return base_dir, out, _adapter_on(base_dir, chat_tokenizer, bench, out)


def test_lineage_names_the_hub_root_and_local_base_pushes_merged_or_with_its_base(
    chat_tokenizer, bench, tmp_path, monkeypatch
):
    from transformers import AutoModelForCausalLM

    from hf_unlearn.hub.lineage import read_lineage
    from hf_unlearn.models import BUNDLED_HUB_ID

    base_dir, out, trainer = _adapter_on_cached_base(chat_tokenizer, bench, tmp_path, monkeypatch, "cache")
    lineage = read_lineage(out)
    assert lineage["base"] == BUNDLED_HUB_ID
    assert [s["kind"] for s in lineage["steps"]] == ["fine-tune", "unlearn"]
    assert lineage["steps"][-1] == {"kind": "unlearn", "method": "NPO", "adapter": True}
    assert str(tmp_path) not in (out / "hf_unlearn_lineage.json").read_text()  # no absolute path recorded
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == BUNDLED_HUB_ID and card.data.base_model_relation == "finetune"
    assert "a fine-tune of HuggingFaceTB/SmolLM2-135M-Instruct" in card.text and "--merge" in card.text
    assert str(base_dir) not in card.text

    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    fake = PerRepoHub(tmp_path / "remote")
    with pytest.raises(ValueError, match=r"trained on a local model .*merge=True.*base_repo_id"):
        push_unlearned(out, "me/npo", token="x", api=fake)
    assert fake.calls == []  # refused before anything was created

    # 1. Merged: full weights that load with plain transformers and equal the adapter on its base.
    push_unlearned(out, "me/npo-merged", token="x", api=fake, merge=True)
    remote = tmp_path / "remote" / "me" / "npo-merged"
    names = {p.name for p in remote.iterdir()}
    assert {"model.safetensors", "config.json", "README.md", "hf_unlearn_lineage.json"} <= names
    assert not any(n.startswith("adapter_") for n in names)
    merged = AutoModelForCausalLM.from_pretrained(remote).eval()
    ids = torch.randint(0, 300, (2, 7))
    trainer.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, trainer.model(input_ids=ids).logits)
    card = ModelCard.load(remote / "README.md")
    assert card.data.library_name == "transformers" and card.data.base_model == BUNDLED_HUB_ID
    assert "lora" not in card.data.tags and "full set of weights" in card.text
    assert 'from_pretrained("me/npo-merged")' in card.text

    # 2. With its base: a private base repository, the adapter pointing at it.
    push_unlearned(out, "me/npo-adapter", token="x", api=fake, private=False, base_repo_id="me/npo-base")
    assert ("create_repo", "me/npo-base", True) in fake.calls  # the pre-unlearning model: private, always
    assert ("create_repo", "me/npo-adapter", False) in fake.calls
    base_remote, adapter_remote = tmp_path / "remote" / "me" / "npo-base", tmp_path / "remote" / "me" / "npo-adapter"
    assert {"model.safetensors", "config.json", "README.md"} <= {p.name for p in base_remote.iterdir()}
    assert "before* unlearning" in (base_remote / "README.md").read_text()
    config = json.loads((adapter_remote / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "me/npo-base"
    card = ModelCard.load(adapter_remote / "README.md")
    assert card.data.base_model == "me/npo-base" and card.data.base_model_relation == "adapter"
    assert 'from_pretrained("me/npo-base")' in card.text
    base = AutoModelForCausalLM.from_pretrained(base_remote)
    loaded = PeftModel.from_pretrained(base, str(adapter_remote)).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, trainer.model(input_ids=ids).logits)
    # The user's folder is untouched by either push.
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_load_unlearned_finds_the_base_in_this_machines_cache_or_says_how_to_recreate_it(
    chat_tokenizer, bench, tmp_path, monkeypatch
):
    import shutil

    _, out, trainer = _adapter_on_cached_base(chat_tokenizer, bench, tmp_path, monkeypatch, "cache-a")
    # "Another machine": the result copied elsewhere, the original cache gone, the same base in another cache root.
    moved = tmp_path / "copied-result"
    shutil.copytree(out, moved)
    shutil.move(tmp_path / "cache-a", tmp_path / "cache-b")
    monkeypatch.setenv("HF_UNLEARN_CACHE", str(tmp_path / "cache-b"))
    loaded, _ = load_unlearned(moved)
    ids = torch.randint(0, 300, (1, 6))
    trainer.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(input_ids=ids).logits, trainer.model(input_ids=ids).logits)
    shutil.rmtree(tmp_path / "cache-b")
    with pytest.raises(FileNotFoundError) as err:
        load_unlearned(moved)
    message = str(err.value)
    assert "\n" not in message and "not on this machine" in message
    assert "Re-create it with `hf-unlearn demo` (it is then found in hf_unlearn's cache)" in message
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in message


def test_finetune_records_its_lineage(chat_tokenizer, bench, tmp_path, tiny_model_dir, monkeypatch):
    from hf_unlearn.hub.lineage import read_lineage, write_lineage
    from hf_unlearn.scripts.finetune import finetune

    monkeypatch.setenv("HF_UNLEARN_CACHE", str(tmp_path / "cache"))
    write_lineage(tiny_model_dir, {"base": "someone/root-model", "steps": []})
    out = finetune(
        str(tiny_model_dir),
        bench["retain"][:4],
        tmp_path / "cache" / "ft",
        epochs=1,
        batch_size=4,
        progress=False,
        data_name="four rows",
        recreate="python make.py",
    )
    lineage = read_lineage(out)
    assert lineage["base"] == "someone/root-model"
    (step,) = lineage["steps"]
    assert step["kind"] == "fine-tune" and step["data"] == "four rows, 4 rows" and step["cache"] == "ft"
    assert step["recreate"] == "python make.py" and step["epochs"] == 1
