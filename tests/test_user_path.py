"""The path real users take: their documents or Q&A pairs in any TRL format and file type -> training (documents split
into blocks, never cut) -> the ``documents`` evaluation -> a card that names their data -> a private push."""

import csv
import json
import warnings
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

from hf_unlearn import build_fictitious_authors, evaluate_documents
from hf_unlearn.cli import main as cli
from hf_unlearn.data import chunk_documents, detect_schema, load_rows, tokenize_rows
from hf_unlearn.scripts.unlearn import main as recipe
from hf_unlearn.trainers import NPOConfig, NPOTrainer

from .conftest import make_tiny_llama
from .hub_fake import RecordingHub
from .test_recipe import _config as recipe_config

ROOT = Path(__file__).resolve().parents[1]
BENCH = build_fictitious_authors(num_authors=20, qa_per_author=2, seed=3)
DOCS = [b["prompt"] + b["text"] for b in BENCH["forget_bio"]]
UNSEEN = [b["prompt"] + b["text"] for b in BENCH["holdout_bio"]]


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _train_config(tmp_path, model_dir, **over) -> Path:
    """The recipe tests' config (2 steps of NPO on the tiny model) for the user's own data: no retain term, short
    blocks, a small evaluation."""
    own_data = {"retain_loss_type": "none", "max_length": 64, "eval_max_blocks": 4}
    return recipe_config(tmp_path, model_dir, **{**own_data, **over})


def test_jsonl_documents_train_evaluate_card_and_push(tmp_path, tiny_model_dir, chat_tokenizer, capsys):
    docs = _jsonl(tmp_path / "my_documents.jsonl", [{"text": t} for t in DOCS])
    unseen = _jsonl(tmp_path / "unseen.jsonl", [{"text": t} for t in UNSEEN])
    cfg = _train_config(tmp_path, tiny_model_dir, dataset_name=str(docs), holdout_path=str(unseen))
    hub = RecordingHub(tmp_path / "remote")
    with hub.installed():
        assert cli(["train", "--config", str(cfg), "--push_to_hub", "true", "--hub_model_id", "me/unlearned"]) == 0
    out = capsys.readouterr().err  # hf_unlearn's logger, on stderr
    n_blocks = len(chunk_documents([{"text": t} for t in DOCS], chat_tokenizer, max_length=64).rows)
    assert f"forget: {len(DOCS)} documents → {n_blocks} blocks of ≤ 64 tokens" in out
    run = tmp_path / "run"
    result = json.loads((run / "results.json").read_text())
    assert result["suite"] == "documents" and result["meta"]["counts"]["forget"]["blocks"] == n_blocks
    metrics = result["metrics"]
    for key in ("forget_verbmem_rouge_l_f1", "holdout_verbmem_rouge_l_f1", "mia_min_k_auc", "forget_nll"):
        assert metrics[key] is not None, key
    assert 0 <= metrics["general_knowledge_accuracy"] <= 1 and metrics["privleak"] is None  # no reference given
    card = ModelCard.load(run / "README.md")
    assert {r.dataset_name for r in card.data.eval_results} == {"my_documents.jsonl"}  # the real data, no path
    assert str(tmp_path) not in card.text and not card.data.datasets  # a local file is never a Hub dataset
    assert card.data.unlearning["forget_set"] == {
        "name": "my_documents.jsonl",
        "size": n_blocks,
        "documents": len(DOCS),
    }
    assert f"{len(DOCS)} documents in {n_blocks} blocks" in card.text
    # Published privately; no file that went up holds a sentence of the documents.
    assert hub.names() == ["create_repo", "upload_folder"] and hub.calls[0][1]["private"] is True
    for text in hub.texts().values():
        for doc in DOCS:
            for sentence in doc.split(". "):
                assert len(sentence) < 20 or sentence not in text


def test_csv_prompt_completion_rows_and_the_own_data_evaluation_cli(tmp_path, tiny_model_dir, capsys):
    rows = [(r["question"], r["answer"]) for r in BENCH["forget"]]
    path = tmp_path / "pairs.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["prompt", "completion"])
        writer.writerows(rows)
    holdout = tmp_path / "holdout.csv"
    with open(holdout, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["prompt", "completion"])
        writer.writerows((r["question"], r["answer"]) for r in BENCH["holdout"])
    assert detect_schema(load_rows(path)[0]).value == "completion"  # TRL's string prompt/completion: raw text
    cfg = _train_config(tmp_path, tiny_model_dir, dataset_name=str(path), holdout_path=str(holdout), max_length=128)
    assert cli(["train", "--config", str(cfg)]) == 0
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    assert result["meta"]["counts"]["forget"] == {"rows": len(rows), "blocks": len(rows), "evaluated": 4}
    # The same evaluation from the command line, with the trained model as its own PrivLeak reference (0 exactly).
    out = tmp_path / "eval"
    args = ["eval", "--model_name_or_path", str(tmp_path / "run"), "--suite", "documents", "--forget_path", str(path)]
    args += ["--holdout_path", str(holdout), "--reference_model", str(tmp_path / "run"), "--output_dir", str(out)]
    assert cli([*args, "--max_length", "128"]) == 0
    assert json.loads((out / "results.json").read_text())["metrics"]["privleak"] == pytest.approx(0.0)
    wrong = ["eval", "--model_name_or_path", str(tiny_model_dir), "--suite", "tofu", "--forget_path", str(path)]
    assert cli(wrong) == 2
    assert "add --suite documents" in capsys.readouterr().err
    # the same data as a "Hub or local" dataset_name with splits, as hf-unlearn train takes it
    split = ["eval", "--model_name_or_path", str(tmp_path / "run"), "--suite", "documents", "--max_length", "128"]
    split += ["--dataset_name", str(path), "--forget_split", "train", "--holdout_path", str(holdout)]
    assert cli([*split, "--reference_model", str(tmp_path / "run"), "--output_dir", str(tmp_path / "e2")]) == 0
    again = json.loads((tmp_path / "e2" / "results.json").read_text())["metrics"]
    assert again == json.loads((out / "results.json").read_text())["metrics"]


ACCEPTED = {
    "language modelling (text)": {"text": "Elena Varenko was born in Lisbon. She writes novels."},
    "prompt/completion strings": {"prompt": "Where was Elena Varenko born?", "completion": " In Lisbon."},
    "prompt/completion messages": {
        "prompt": [{"role": "user", "content": "Where was Elena Varenko born?"}],
        "completion": [{"role": "assistant", "content": "In Lisbon."}],
    },
    "conversational (messages)": {
        "messages": [
            {"role": "user", "content": "Where was Elena Varenko born?"},
            {"role": "assistant", "content": "In Lisbon."},
        ]
    },
    "QA": {"question": "Where was Elena Varenko born?", "answer": "In Lisbon."},
    "completion (prompt, text)": {"prompt": "Elena Varenko was born in", "text": " Lisbon."},
}


@pytest.mark.parametrize("name", ACCEPTED)
def test_every_trl_format_trains(name, chat_tokenizer, tmp_path):
    rows = [ACCEPTED[name]] * 4
    args = NPOConfig(
        output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=2, report_to=[], retain_loss_type="none"
    )
    trainer = NPOTrainer(
        make_tiny_llama(chat_tokenizer), args=args, forget_dataset=rows, processing_class=chat_tokenizer
    )
    table = trainer.forget_dataset
    assert len(table) == 4 and all(any(t != -100 for t in labels) for labels in table["labels"])
    assert trainer.train().global_step == 1


@pytest.mark.parametrize(
    "row,message",
    [
        ({"title": "A", "body": "B"}, r"columns \['body', 'title'\].*language modelling \(text\), prompt/completion"),
        ({"text": None}, r"'text' must be a string in a raw-text row, got NoneType"),
        ({"prompt": "P", "completion": 3}, r"'completion' must be a string"),
    ],
)
def test_refused_rows_name_their_columns_and_the_accepted_formats(row, message, chat_tokenizer):
    with pytest.raises(ValueError, match=message):
        tokenize_rows([row], chat_tokenizer)


def test_refused_files_and_sources(tmp_path):
    sheet = tmp_path / "docs.xlsx"
    sheet.write_bytes(b"PK")
    with pytest.raises(ValueError, match=r"Cannot read docs.xlsx: hf_unlearn reads .jsonl, .json, .csv, .parquet"):
        load_rows(sheet)
    bad = tmp_path / "docs.jsonl"
    bad.write_text('{"text": "a"}\n{"text": \n')
    with pytest.raises(ValueError, match=r"docs.jsonl, line 2: not valid JSON"):
        load_rows(bad)
    with pytest.raises(FileNotFoundError, match=r"missing.jsonl does not exist"):
        load_rows(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match=r"one file, so it has one split \(train\), not 'holdout'"):
        load_rows(_jsonl(tmp_path / "ok.jsonl", [{"text": "a"}]), split="holdout")


def test_long_documents_become_blocks_and_nothing_is_dropped(chat_tokenizer, tmp_path):
    text = " ".join(["alpha beta gamma delta river stone house light table green"] * 800)
    offsets = chat_tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    text = text[: offsets[3000][0]].rstrip()  # exactly 3,000 tokens
    assert len(chat_tokenizer(text, add_special_tokens=False)["input_ids"]) == 3000
    blocks = chunk_documents([{"text": text, "id": 7}], chat_tokenizer, max_length=256)
    assert blocks.describe("forget") == "forget: 1 documents → 12 blocks of ≤ 256 tokens"
    assert "".join(r["text"] for r in blocks.rows) == text  # the blocks, put together, are the document
    assert [r["block"] for r in blocks.rows] == list(range(12)) and all(r["id"] == 7 for r in blocks.rows)
    sizes = [len(chat_tokenizer(r["text"])["input_ids"]) for r in blocks.rows]
    assert max(sizes) <= 256 and sum(sizes) == 3000
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no truncation warning: every block fits
        assert len(tokenize_rows(blocks.rows, chat_tokenizer, max_length=256)) == 12
    # A stride repeats context at the start of each later block, unscored.
    strided = chunk_documents([{"text": text}], chat_tokenizer, max_length=256, stride=32)
    assert all(r["prompt"] for r in strided.rows[1:]) and "".join(r["text"] for r in strided.rows) == text
    enc = tokenize_rows(strided.rows, chat_tokenizer, max_length=256)
    assert sum(sum(t != -100 for t in e["labels"]) for e in enc) == 3000 - 1  # all but the very first token
    # The trainer splits documents the same way (its max_length), and the card counts documents and blocks.
    args = NPOConfig(output_dir=str(tmp_path), max_length=256, retain_loss_type="none", report_to=[], max_steps=1)
    trainer = NPOTrainer(
        make_tiny_llama(chat_tokenizer), args=args, forget_dataset=[{"text": text}], processing_class=chat_tokenizer
    )
    assert len(trainer.forget_dataset) == 12
    assert trainer.data_summary["forget"] == {"documents": 1, "blocks": 12, "max_length": 256, "mode": "per_document"}
    # Without chunking the cut is counted aloud, and a chat answer too long to fit is counted the same way.
    with pytest.warns(UserWarning, match=r"1 rows were longer than max_length=256: 2744 of their target tokens"):
        tokenize_rows([{"text": text}], chat_tokenizer, max_length=256)
    with pytest.warns(UserWarning, match=r"target tokens were cut.*a chat answer cannot be split into blocks"):
        tokenize_rows([{"question": "Q?", "answer": text}], chat_tokenizer, max_length=256)
    # open-unlearning's MUSE parity: every document joined, then cut.
    joined = chunk_documents(
        [{"text": text}, {"text": "A short one."}], chat_tokenizer, max_length=256, mode="concatenate"
    )
    assert joined.blocks == 12 and joined.describe().endswith("(open-unlearning concatenation)")


def test_parquet_file_and_local_folder_through_load_dataset(tmp_path, tiny_model_dir):
    from datasets import Dataset

    parquet = tmp_path / "docs.parquet"
    Dataset.from_list([{"text": t} for t in DOCS]).to_parquet(str(parquet))
    assert [r["text"] for r in load_rows(parquet)] == DOCS
    folder = tmp_path / "exported"
    folder.mkdir()
    _jsonl(folder / "forget.jsonl", [{"text": t} for t in DOCS])
    _jsonl(folder / "holdout.jsonl", [{"text": t} for t in UNSEEN])
    assert [r["text"] for r in load_rows(folder, split="holdout")] == UNSEEN
    cfg = _train_config(
        tmp_path, tiny_model_dir, dataset_name=str(folder), forget_split="forget", holdout_split="holdout"
    )
    assert recipe(["--config", str(cfg)]) == 0
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    assert result["meta"]["holdout_kind"] == "unseen" and result["metrics"]["mia_loss_auc"] is not None
    # A folder of plain-text files: each file one document.
    texts = tmp_path / "texts"
    texts.mkdir()
    for i, t in enumerate(DOCS):
        (texts / f"doc{i}.txt").write_text(t)
    assert sorted(r["text"] for r in load_rows(texts)) == sorted(DOCS)


def test_holdout_carved_from_the_forget_data_is_said_and_never_read_as_privleak(tmp_path, tiny_model_dir, capsys):
    docs = _jsonl(tmp_path / "docs.jsonl", [{"text": t} for t in DOCS + UNSEEN])
    cfg = _train_config(tmp_path, tiny_model_dir, dataset_name=str(docs), holdout_from_forget=0.25)
    recipe(["--config", str(cfg)])
    assert "holdout: 1 of 4 forget rows held back from unlearning" in capsys.readouterr().err
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    assert (
        result["meta"]["holdout_kind"] == "carved" and "not privacy leakage" in result["details"]["privleak"]["skipped"]
    )


def test_without_a_holdout_the_evaluation_says_what_it_skips(tmp_path, tiny_model_dir, capsys):
    docs = _jsonl(tmp_path / "docs.jsonl", [{"text": t} for t in DOCS])
    recipe(["--config", str(_train_config(tmp_path, tiny_model_dir, dataset_name=str(docs)))])
    out = capsys.readouterr().err
    assert "documents evaluation without a holdout: no membership inference or PrivLeak" in out
    metrics = json.loads((tmp_path / "run" / "results.json").read_text())["metrics"]
    assert metrics["forget_verbmem_rouge_l_f1"] is not None and "mia_min_k_auc" not in metrics


def test_quickstart_config_runs_with_the_model_and_4_bit_overridden(tmp_path, tiny_model_dir):
    from hf_unlearn.recipes import resolve_config

    config = resolve_config("qlora_own_documents")
    shipped = yaml.safe_load(config.read_text())
    assert shipped["load_in_4bit"] is True and shipped["use_peft"] is True
    docs = _jsonl(tmp_path / "my_documents.jsonl", [{"text": t} for t in DOCS])
    unseen = _jsonl(tmp_path / "my_holdout.jsonl", [{"text": t} for t in UNSEEN])
    retain = _jsonl(tmp_path / "my_retain.jsonl", [{"text": r["answer"]} for r in BENCH["retain"][:6]])
    args = ["--config", str(config), "--model_name_or_path", str(tiny_model_dir), "--load_in_4bit", "false"]
    args += ["--dataset_name", str(docs), "--holdout_path", str(unseen), "--retain_path", str(retain)]
    args += ["--output_dir", str(tmp_path / "run"), "--max_steps", "1", "--max_length", "48"]
    args += [
        "--lora_target_modules",
        "q_proj",
        "v_proj",
        "--eval_max_blocks",
        "2",
        "--activation_checkpointing",
        "false",
    ]
    recipe(args)
    card = ModelCard.load(tmp_path / "run" / "README.md")
    assert card.data.library_name == "peft" and card.data.unlearning["forget_set"]["name"] == "my_documents.jsonl"
    assert json.loads((tmp_path / "run" / "results.json").read_text())["suite"] == "documents"


def test_evaluate_documents_api_on_qa_rows(chat_tokenizer):
    model = make_tiny_llama(chat_tokenizer)
    result = evaluate_documents(
        model,
        chat_tokenizer,
        forget=BENCH["forget"],
        holdout=BENCH["holdout"],
        reference_model=model,
        answer_max_new_tokens=4,
        general_knowledge=False,
        max_blocks=None,
    )
    m = result.metrics
    assert 0 < m["forget_answer_prob"] < 1 and 0 <= m["forget_answer_rouge_l_recall"] <= 1
    assert m["privleak"] == pytest.approx(0.0) and "forget_verbmem_rouge_l_f1" not in m
    assert result.meta["counts"]["forget"] == {"rows": 4, "blocks": 4, "evaluated": 4}
