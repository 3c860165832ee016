"""Loader mapping from small fixtures in the public file layouts (TOFU JSON lines, Hub-converted parquet shards)."""

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hf_unlearn.data import (
    HubDatasetUnavailableError,
    Schema,
    load_muse,
    load_tofu,
    load_wmdp,
    map_tofu_row,
    validate_rows,
)

FIXTURES = Path(__file__).parent / "fixtures"


def _shard(path: Path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_tofu_mapping_from_fixture_files():
    ds = load_tofu("forget01_perturbed", data_dir=FIXTURES / "tofu")
    assert ds.num_rows == 2
    assert set(ds.column_names) == {
        "question",
        "answer",
        "paraphrased_question",
        "paraphrased_answer",
        "perturbed_answer",
    }
    assert len(ds[0]["perturbed_answer"]) == 5
    assert validate_rows(ds) == Schema.QA
    plain = load_tofu("forget01", data_dir=FIXTURES / "tofu")
    assert plain.column_names == ["question", "answer"]
    wf = load_tofu("world_facts_perturbed", data_dir=FIXTURES / "tofu")
    assert "option1" not in wf.column_names
    assert wf[1]["perturbed_answer"] == ["Australia", "Brazil", "India"]
    assert map_tofu_row({"question": "q", "answer": "a", "perturbed_answer": "b"})["perturbed_answer"] == ["b"]
    with pytest.raises(ValueError, match="Unknown TOFU config"):
        load_tofu("forget20")
    with pytest.raises(FileNotFoundError, match="retain90"):
        load_tofu("retain90", data_dir=FIXTURES / "tofu")


def test_muse_mapping_from_parquet_shards(tmp_path):
    _shard(tmp_path / "verbmem" / "forget-00000-of-00001.parquet", [{"prompt": "Once upon", "gt": " a time."}])
    _shard(
        tmp_path / "knowmem" / "retain_qa-00000-of-00001.parquet",
        [{"question": "Who won?", "answer": "The home team."}],
    )
    _shard(tmp_path / "privleak" / "holdout-00000-of-00001.parquet", [{"text": "An unseen article."}])
    verb = load_muse("news", "verbmem", "forget", data_dir=tmp_path)
    assert verb[0] == {"prompt": "Once upon", "text": " a time."}
    know = load_muse("news", "knowmem", "retain_qa", data_dir=tmp_path)
    assert validate_rows(know) == Schema.QA
    priv = load_muse("MUSE-News", "privleak", "holdout", data_dir=tmp_path)
    assert priv[0] == {"prompt": "", "text": "An unseen article."}
    with pytest.raises(ValueError, match="News only"):
        load_muse("books", "sust", "forget_1")
    with pytest.raises(ValueError, match="has splits"):
        load_muse("news", "verbmem", "retain")


def test_wmdp_mapping_and_release_check(tmp_path):
    rows = [{"question": f"Q{i}?", "choices": ["a", "b", "c", "d"], "answer": i % 4} for i in range(5)]
    _shard(tmp_path / "wmdp-cyber" / "test-00000-of-00001.parquet", rows)
    with pytest.warns(UserWarning, match="matching no known WMDP release"):
        ds = load_wmdp("cyber", data_dir=tmp_path)
    assert ds[2] == {"question": "Q2?", "choices": ["a", "b", "c", "d"], "answer": 2, "subject": "cyber"}
    assert validate_rows(ds) == Schema.MCQ
    bad = [{"question": "Q?", "choices": ["a", "b"], "answer": 3}]
    _shard(tmp_path / "wmdp-bio" / "test-00000-of-00001.parquet", bad)
    with pytest.raises(ValueError, match="answer index 3"):
        load_wmdp("bio", data_dir=tmp_path)


def test_offline_fails_fast_and_points_to_builtin_benchmark():
    start = time.perf_counter()
    with pytest.raises(HubDatasetUnavailableError, match="build_fictitious_authors"):
        load_tofu("forget10_perturbed")
    with pytest.raises(HubDatasetUnavailableError, match="fictitious-authors"):
        load_wmdp("bio")
    assert time.perf_counter() - start < 10


def test_rtofu_mapping_from_its_repository_layout():
    from hf_unlearn.data import load_rtofu, reasoning_rows

    forget = load_rtofu("forget01", data_dir=FIXTURES / "rtofu")
    assert forget.num_rows == 2
    assert set(forget.column_names) == {"question", "answer", "cot", "task_id", "idk_cot"}
    assert forget[0]["idk_cot"].startswith("Let me think.") and "Ghent" not in forget[0]["idk_cot"]
    assert validate_rows(forget) == Schema.QA
    # Reasoned IDK runs on it directly; the traces file does not fit the retain split, so no idk_cot there.
    assert reasoning_rows(list(forget), idk="reasoned")[1]["answer"].startswith("<think>\nHmm, I would need")
    retain = load_rtofu("retain99", data_dir=FIXTURES / "rtofu" / "data" / "tofu")
    assert "idk_cot" not in retain.column_names and retain[0]["cot"].startswith("The Tidewater cycle")
    with pytest.raises(ValueError, match=r"clone https://github\.com/AI-ISL/R-TOFU"):
        load_rtofu("forget01")
    with pytest.raises(ValueError, match="non-empty cot"):
        from hf_unlearn.data import map_rtofu_row

        map_rtofu_row({"question": "q", "answer": "a"})
