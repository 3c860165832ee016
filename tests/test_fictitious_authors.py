import json

import pytest

from hf_unlearn.data import (
    FACT_TYPES,
    GENERAL_KNOWLEDGE,
    FictitiousAuthorsConfig,
    Schema,
    build_fictitious_authors,
    validate_rows,
)


@pytest.fixture(scope="module")
def bench():
    return build_fictitious_authors()


def _read_all(path):
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_same_seed_gives_byte_identical_exports(tmp_path):
    a = build_fictitious_authors(num_authors=12, seed=3).export(tmp_path / "a", format="both")
    b = build_fictitious_authors(num_authors=12, seed=3).export(tmp_path / "b", format="both")
    c = build_fictitious_authors(num_authors=12, seed=4).export(tmp_path / "c", format="json")
    assert _read_all(a) == _read_all(b)
    assert (a / "forget.jsonl").read_bytes() != (c / "forget.jsonl").read_bytes()


def test_defaults_are_benchmark_size(bench):
    cfg = bench.config
    assert cfg.num_authors >= 100
    assert len(bench["forget"]) >= 40
    assert len(bench["forget"]) == cfg.num_forget_authors * cfg.qa_per_author
    assert len(bench["general_knowledge"]) == len(GENERAL_KNOWLEDGE) >= 100
    assert {a["split"] for a in bench.authors} == {"forget", "retain", "holdout"}


def test_splits_are_disjoint_by_author(bench):
    by_split = {s: {a["name"] for a in bench.authors if a["split"] == s} for s in ("forget", "retain", "holdout")}
    assert len({a["name"] for a in bench.authors}) == len(bench.authors)  # names are unique
    assert not (by_split["forget"] & by_split["retain"])
    assert not (by_split["forget"] & by_split["holdout"])
    assert not (by_split["holdout"] & by_split["retain"])
    for split, names in by_split.items():
        for suffix in ("", "_bio", "_mcq"):
            assert {r["author"] for r in bench[f"{split}{suffix}"]} == names
    surnames = [a["name"].split()[-1] for a in bench.authors]
    assert len(set(surnames)) == len(surnames)  # no ambiguity between authors


def test_qa_rows_carry_fact_spans_paraphrases_and_same_type_perturbations(bench):
    assert validate_rows(bench["forget"]) == Schema.QA
    for row in bench["forget"] + bench["retain"][:200]:
        start, end = row["fact_span"]
        assert row["answer"][start:end] == row["fact"]
        assert row["fact"] in row["paraphrased_answer"]
        assert row["author"] in row["question"] and row["author"] in row["paraphrased_question"]
        assert row["question"] != row["paraphrased_question"]
        pert = row["perturbed_answer"]
        assert len(pert) == 5 and len(set(pert)) == 5 and row["answer"] not in pert
        # Same type, same sentence as the paraphrase (what the Truth Ratio compares them with), another value.
        para = row["paraphrased_answer"]
        p_start = para.index(row["fact"])
        prefix, suffix = para[:p_start], para[p_start + len(row["fact"]) :]
        for p in pert:
            assert p.startswith(prefix[: max(len(prefix) - 2, 0)])
            assert p.endswith(suffix)
            assert row["fact"] not in p
    assert {r["fact_type"] for r in bench["retain"]} == {f.name for f in FACT_TYPES}


def test_biographies_and_mcqs(bench):
    assert validate_rows(bench["forget_bio"]) == Schema.COMPLETION
    assert validate_rows(bench["forget_mcq"]) == Schema.MCQ
    profiles = {a["name"]: a for a in bench.authors}
    for bio in bench["forget_bio"]:
        p = profiles[bio["author"]]
        full = bio["prompt"] + bio["text"]
        for key in ("birthplace", "birth_date", "debut_book", "award", "residence", "theme"):
            assert p[key] in full
    for q in bench["retain_mcq"]:
        assert len(q["choices"]) == 4 == len(set(q["choices"]))
        assert q["choices"][q["answer"]] == profiles[q["author"]][q["fact_type"]]
    answers = [q["answer"] for q in bench["retain_mcq"]]
    assert min(answers.count(i) for i in range(4)) > 100  # the right letter is spread, not always A


def test_general_knowledge_rows(bench):
    for row, mcq in zip(bench["general_knowledge"], bench["general_knowledge_mcq"], strict=True):
        assert len(row["perturbed_answer"]) == 3
        start, end = row["fact_span"]
        assert row["answer"][start:end] == row["fact"] == mcq["choices"][mcq["answer"]]
        assert row["question"] == mcq["question"]


def test_size_knobs_and_validation():
    small = build_fictitious_authors(num_authors=10, qa_per_author=4, forget_fraction=0.2, holdout_fraction=0.2)
    assert len(small["forget"]) == 2 * 4 and len(small["holdout"]) == 2 * 4 and len(small["retain"]) == 6 * 4
    with pytest.raises(ValueError, match="qa_per_author"):
        FictitiousAuthorsConfig(qa_per_author=13)
    with pytest.raises(ValueError, match="leave no retain author"):
        FictitiousAuthorsConfig(num_authors=4, forget_fraction=0.5, holdout_fraction=0.5)
    with pytest.raises(ValueError, match="num_authors"):
        FictitiousAuthorsConfig(num_authors=2)


def test_export_layout_refusal_and_atomicity(tmp_path, monkeypatch):
    bench = build_fictitious_authors(num_authors=10)
    out = bench.export(tmp_path / "fa", format="both")
    names = {p.name for p in out.iterdir()}
    for split in ("forget", "retain", "holdout", "general_knowledge", "forget_mcq", "holdout_bio", "authors"):
        assert f"{split}.jsonl" in names and f"{split}.parquet" in names
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["num_rows"]["forget"] == len(bench["forget"])
    first = json.loads((out / "forget.jsonl").read_text().splitlines()[0])
    assert first == bench["forget"][0]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        bench.export(out)
    bench.export(out, overwrite=True)
    # A failure half-way leaves neither a partial export nor a temporary folder behind.
    import pyarrow.parquet as pq

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pq, "write_table", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        bench.export(tmp_path / "broken", format="parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fa"]
    assert bench.to_dataset_dict()["forget"].num_rows == len(bench["forget"])
