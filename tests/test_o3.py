"""O3 continual unlearning (arXiv:2407.10223): the orthogonal term's formula, only the adapter trains, row-by-row
routing in one batch, detectors on planted features, save/load round trips and bad input."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from hf_unlearn import build_fictitious_authors
from hf_unlearn.continual import O3Model, RequestDetector, lora_A_snapshot, orthogonal_penalty
from hf_unlearn.evaluation import auc
from hf_unlearn.trainers import O3Config, O3Trainer

from .conftest import first_batch

L0, L1 = "model.layers.0.self_attn.q_proj", "model.layers.1.mlp.up_proj"


@pytest.fixture(scope="module")
def bench():
    return build_fictitious_authors(num_authors=12, qa_per_author=4, seed=3, forget_fraction=0.25)


def _args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "o3"), per_device_train_batch_size=4, max_steps=2, learning_rate=1e-2)
    return O3Config(**{**base, "report_to": [], "save_strategy": "no", "warmup_steps": 0, **kw})


def test_orthogonal_penalty_formula():
    g = torch.Generator().manual_seed(0)
    cur = {L0: torch.randn(4, 16, generator=g), L1: torch.randn(4, 16, generator=g)}
    prev = [{L0: torch.randn(4, 16, generator=g), L1: torch.randn(4, 16, generator=g)} for _ in range(2)]
    expected = sum(((p[n] @ cur[n].T) ** 2).sum() for p in prev for n in cur) / 2  # two layers
    torch.testing.assert_close(orthogonal_penalty(cur, prev), expected)
    assert orthogonal_penalty(cur, []) == 0  # the first request has no penalty
    orth = {L0: torch.eye(16)[:4], L1: torch.eye(16)[:4]}
    assert orthogonal_penalty({L0: torch.eye(16)[4:8], L1: torch.eye(16)[4:8]}, [orth]) == 0  # orthogonal rows
    with pytest.raises(ValueError, match="same LoRA target modules"):
        orthogonal_penalty(cur, [{L0: prev[0][L0]}])


def test_requests_train_only_the_adapter_and_the_second_adds_the_penalty(
    chat_tokenizer, bench, tiny_model_dir, tmp_path
):
    o3 = O3Model.from_base(AutoModelForCausalLM.from_pretrained(tiny_model_dir), chat_tokenizer)
    base_before = {n: p.detach().clone() for n, p in o3.model.named_parameters() if "lora_" not in n}
    lora_before = {n: p.detach().clone() for n, p in o3.model.named_parameters() if "lora_" in n}
    authors = sorted({r["author"] for r in bench["forget"]})
    first = [r for r in bench["forget"] if r["author"] == authors[0]]
    second = [r for r in bench["forget"] if r["author"] == authors[1]]
    generic = bench["general_knowledge"][:40]
    o3.unlearn(first, name="request-1", args=_args(tmp_path / "1"), generic=generic)
    after = dict(o3.model.named_parameters())
    assert all(torch.equal(after[n], p) for n, p in base_before.items())  # the base never moves
    assert any(not torch.equal(after[n], p) for n, p in lora_before.items())
    assert len(o3.snapshots) == 1 and o3.manifest[0]["name"] == "request-1"

    # Request 2: the loss is request 1's objective plus 0.1 * O_t against request 1's snapshot.
    with_penalty = O3Trainer(
        o3.model,
        args=_args(tmp_path / "2"),
        forget_dataset=second,
        processing_class=chat_tokenizer,
        previous_lora_A=o3.snapshots,
    )
    without = O3Trainer(o3.model, args=_args(tmp_path / "3"), forget_dataset=second, processing_class=chat_tokenizer)
    batch = first_batch(with_penalty)
    with torch.no_grad():
        for p in (p for n, p in o3.model.named_parameters() if "lora_A" in n):  # move away from the snapshot
            p.add_(0.05 * torch.randn_like(p))
        penalty = orthogonal_penalty(lora_A_snapshot(o3.model), o3.snapshots)
        diff = with_penalty.compute_loss(o3.model, batch) - without.compute_loss(o3.model, batch)
    assert penalty > 0
    torch.testing.assert_close(diff, 0.1 * penalty, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="has no rows"):
        o3.unlearn([], name="empty")
    with pytest.raises(ValueError, match="already unlearned"):
        o3.unlearn(first, name="request-1")


def test_a_batch_is_routed_row_by_row(chat_tokenizer, tiny_model_dir):
    from peft import LoraConfig

    cfg = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    o3 = O3Model.from_base(AutoModelForCausalLM.from_pretrained(tiny_model_dir), chat_tokenizer, cfg).eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 300, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # a shorter row, right-padded
    w = torch.tensor([0.0, 0.5, 1.0])
    with torch.no_grad(), o3.routed(w):
        together = o3.model(input_ids=ids, attention_mask=mask).logits
        for i in range(3):
            n = int(mask[i].sum())
            with o3.routed(w[i : i + 1]):
                alone = o3.model(input_ids=ids[i : i + 1, :n]).logits
            torch.testing.assert_close(together[i, :n], alone[0], rtol=1e-4, atol=1e-5)
        with o3.model.disable_adapter():
            base = o3.model(input_ids=ids[:1]).logits
    with torch.no_grad():
        full = o3.model(input_ids=ids[2:]).logits
    torch.testing.assert_close(together[0], base[0], rtol=1e-4, atol=1e-5)  # w = 0: the base model
    torch.testing.assert_close(together[2], full[0], rtol=1e-4, atol=1e-5)  # w = 1: the adapter fully on
    assert not torch.allclose(together[2], base[0])


class _FixedDetector:
    """Gives fixed weights and records the features it was asked about."""

    def __init__(self, weights):
        self.weights, self.seen = weights, []

    def weight(self, features):
        self.seen.append(features)
        return self.weights


def test_routed_generation_reuses_the_feature_pass_and_equals_the_plain_path(chat_tokenizer, tiny_model_dir):
    """The prompt pass that gives the detector features fills the cache of rows routed to 0; rows with a weight are
    encoded again: generation equals routing the whole batch first and generating from scratch (left padding)."""
    from peft import LoraConfig

    from hf_unlearn.data.collators import pad_sequences

    cfg = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    o3 = O3Model.from_base(AutoModelForCausalLM.from_pretrained(tiny_model_dir), chat_tokenizer, cfg).eval()
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(3, 300, (n,), generator=g).tolist() for n in (9, 6, 11, 4)]
    ids, mask = pad_sequences(prompts, chat_tokenizer.pad_token_id, padding_side="left")
    w = torch.tensor([0.0, 0.5, 1.0, 0.0])
    o3.detectors = [_FixedDetector(w)]
    kw = dict(max_new_tokens=6, do_sample=False, output_scores=True, return_dict_in_generate=True)
    kw["pad_token_id"] = chat_tokenizer.pad_token_id
    with torch.no_grad():
        fused = o3.generate(ids, attention_mask=mask, **kw)
        with o3.routed(w):
            plain = o3.model.generate(input_ids=ids, attention_mask=mask, **kw)
    assert torch.equal(fused.sequences, plain.sequences)
    for a, b in zip(fused.scores, plain.scores, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # The features the detector saw equal the plain feature pass (right padding, no cache).
    torch.testing.assert_close(o3.detectors[0].seen[0], o3.features(prompts), rtol=1e-4, atol=1e-5)
    with torch.no_grad(), o3.model.disable_adapter():  # a batch routed to 0 everywhere is the base model
        base = o3.model.generate(input_ids=ids, attention_mask=mask, **kw).sequences
    o3.detectors = [_FixedDetector(torch.zeros(4))]
    with torch.no_grad():
        assert torch.equal(o3.generate(ids, attention_mask=mask, **kw).sequences, base)
        with pytest.raises(ValueError, match="one sequence per prompt"):
            o3.generate(ids, attention_mask=mask, max_new_tokens=2, num_beams=2, pad_token_id=0)


def _planted(n, centre, g):
    return centre + 0.3 * torch.randn(2, n, 16, generator=g)


@pytest.mark.parametrize("store", [True, False])
def test_detector_separates_planted_requests_and_round_trips(tmp_path, store):
    g = torch.Generator().manual_seed(4)
    request = _planted(30, torch.ones(16), g)
    generic = _planted(60, -torch.ones(16), g)
    det = RequestDetector.fit(request, store_features=store)
    with pytest.raises(ValueError, match="not calibrated"):
        det.weight(request)
    det.calibrate(generic, false_positive_rate=0.05)
    new_request, new_generic = _planted(30, torch.ones(16), g), _planted(30, -torch.ones(16), g)
    # auc(a, b) = P(score(b) > score(a)) (the MIA convention): generic above request would be 1.
    assert auc(det.score(new_generic).tolist(), det.score(new_request).tolist()) >= 0.95
    assert det.weight(new_request).median() > 0.9 and det.weight(new_generic).mean() < 0.1
    assert det.separable and ("bank" in det.tensors) == store
    det.save(str(tmp_path / "det"))
    back = RequestDetector.load(str(tmp_path / "det"))
    torch.testing.assert_close(back.weight(new_request), det.weight(new_request))
    (tmp_path / "det.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="missing or corrupt"):
        RequestDetector.load(str(tmp_path / "det"))
    with pytest.raises(ValueError, match="at least 3"):
        RequestDetector.fit(request[:, :2])


def test_save_load_round_trip_and_bad_folders(chat_tokenizer, bench, tiny_model_dir, tmp_path):
    o3 = O3Model.from_base(AutoModelForCausalLM.from_pretrained(tiny_model_dir), chat_tokenizer)
    rows = [r for r in bench["forget"] if r["author"] == bench["forget"][0]["author"]]
    o3.unlearn(rows, name="request-1", args=_args(tmp_path / "1"), generic=bench["general_knowledge"][:40])
    out = o3.save_pretrained(tmp_path / "saved")
    back = O3Model.from_pretrained(out)
    ids = torch.randint(3, 300, (2, 8), generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(back.routing_weights(ids), o3.routing_weights(ids))
    with torch.no_grad():
        torch.testing.assert_close(back.eval()(ids).logits, o3.eval()(ids).logits)
    assert [m["name"] for m in back.manifest] == ["request-1"] and back.layers == o3.layers
    texts = [p.read_text(errors="ignore") for p in out.rglob("*") if p.suffix in (".json", ".md")]
    for row in rows:
        assert not any(row["question"] in t or row["answer"] in t for t in texts)  # names, sizes and dates only
    manifest = json.loads((out / "o3_manifest.json").read_text())
    assert manifest["requests"][0]["detector"] == "statistics only" and manifest["requests"][0]["rows"] == len(rows)
    (out / "o3" / "detector_000.safetensors").unlink()
    with pytest.raises(ValueError, match="lists 1 requests but 0 detectors"):
        O3Model.from_pretrained(out)
    with pytest.raises(FileNotFoundError, match="not an O3Model folder"):
        O3Model.from_pretrained(tiny_model_dir)


def test_push_publishes_adapter_detectors_manifest_and_card_and_loads_routed(
    chat_tokenizer, bench, tiny_model_dir, tmp_path, monkeypatch
):
    from huggingface_hub import ModelCard
    from safetensors import safe_open

    import hf_unlearn.models
    from hf_unlearn import load_unlearned
    from hf_unlearn.hub import push_unlearned

    from .hub_fake import RecordingHub

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    base.name_or_path = base.config._name_or_path = "someone/tiny-base"  # as if loaded from the Hub
    o3 = O3Model.from_base(base, chat_tokenizer)
    authors = sorted({r["author"] for r in bench["forget"]})
    requests = [[r for r in bench["forget"] if r["author"] == a] for a in authors[:2]]
    o3.unlearn(requests[0], name="request-1", args=_args(tmp_path / "0"), generic=bench["general_knowledge"][:40])
    assert "bank" not in o3.detectors[0].tensors  # statistics only by default
    hub = RecordingHub(tmp_path / "remote")

    # 1. Statistics-only detectors go up as they are, and load back from the Hub routing as before.
    with hub.installed():
        o3.push_to_hub("me/o3-stats")
        assert hub.calls[0][1]["private"] is True
        uploaded = set(hub.uploaded("me/o3-stats"))
        assert {"o3_manifest.json", "o3/detector_000.safetensors", "o3/detector_000.json"} <= uploaded
        assert {"o3/lora_A_000.safetensors", "adapter_model.safetensors", "README.md"} <= uploaded
        with safe_open(str(hub.remote("me/o3-stats") / "o3" / "detector_000.safetensors"), framework="pt") as fh:
            assert "bank" not in fh.keys()  # noqa: SIM118
        card = ModelCard.load(hub.remote("me/o3-stats") / "README.md")
        assert "What this model reveals about the forgotten topics" in card.text
        assert "No detector here stores per-question features" in card.text
        # The base is "someone/tiny-base" on the Hub: resolved to the local copy as a Hub cache would.
        resolve = hf_unlearn.models.resolve_model_path
        monkeypatch.setattr(
            hf_unlearn.models,
            "resolve_model_path",
            lambda name: str(tiny_model_dir) if str(name) == "someone/tiny-base" else resolve(name),
        )
        hub.calls.clear()
        loaded, tok = load_unlearned("me/o3-stats")
        assert hub.names() == ["snapshot_download"]
    assert isinstance(loaded, O3Model) and tok.chat_template == chat_tokenizer.chat_template
    ids = torch.randint(3, 300, (3, 8), generator=torch.Generator().manual_seed(6))
    prompts = o3._question_prompts(requests[0][:2])
    from hf_unlearn.data.collators import pad_sequences

    q_ids, q_mask = pad_sequences(prompts, chat_tokenizer.pad_token_id)
    torch.testing.assert_close(loaded.routing_weights(ids), o3.routing_weights(ids))
    torch.testing.assert_close(loaded.routing_weights(q_ids, q_mask), o3.routing_weights(q_ids, q_mask))
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(ids).logits, o3.eval()(ids).logits)

    # 2. A detector that stores per-question features is refused unless asked for in so many words.
    o3.unlearn(
        requests[1],
        name="request-2",
        args=_args(tmp_path / "1"),
        generic=bench["general_knowledge"][:40],
        store_features=True,
    )
    out = o3.save_pretrained(tmp_path / "saved", repo_id="me/o3")
    with pytest.raises(ValueError, match="cannot be merged"):
        push_unlearned(out, "me/o3", token="x", merge=True)
    hub.calls.clear()
    with hub.installed():
        with pytest.raises(ValueError, match=r"request-2 store per-example features.*allow_forget_features=True"):
            push_unlearned(out, "me/o3")
        assert hub.calls == []  # refused before the Hub was touched
        from hf_unlearn.cli import main as cli

        assert cli(["push", str(out), "me/o3"]) == 2 and hub.calls == []  # the CLI refuses too (its message: above)
        assert cli(["push", str(out), "me/o3", "--allow_forget_features"]) == 0
    with safe_open(str(hub.remote("me/o3") / "o3" / "detector_001.safetensors"), framework="pt") as fh:
        assert "bank" in fh.keys()  # noqa: SIM118
    card = ModelCard.load(hub.remote("me/o3") / "README.md")
    assert card.data.unlearning["method"] == "O3" and "## Unlearning requests" in card.text
    assert "| 1 | request-1 |" in card.text and "statistics only" in card.text and "per-example features" in card.text
    assert "The detectors of request-2 also store the hidden states" in card.text
    for name, text in hub.texts().items():
        for rows in requests:
            for row in rows:
                assert row["question"] not in text and row["answer"] not in text, name
    loaded, _ = load_unlearned(out)
    assert len(loaded.detectors) == 2
    torch.testing.assert_close(loaded.routing_weights(ids), o3.routing_weights(ids))
