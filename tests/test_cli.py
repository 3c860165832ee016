import json

import pytest

from hf_unlearn.cli import COMMANDS, main


def test_data_export_writes_one_file_per_split(tmp_path, capsys):
    out = tmp_path / "fa"
    assert main(["data", "export", str(out), "--num-authors", "10", "--qa-per-author", "3"]) == 0
    assert "Wrote fictitious-authors" in capsys.readouterr().out
    for split in ("forget", "retain", "holdout", "general_knowledge", "general_knowledge_mcq", "retain_bio"):
        assert (out / f"{split}.jsonl").is_file()
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["config"]["num_authors"] == 10 and meta["num_rows"]["forget"] == 3


def test_export_refuses_a_non_empty_folder_with_one_clear_line(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["data", "export", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hf-unlearn data: error:") and "overwrite" in err and "\n" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_bad_knob_is_a_clear_error(tmp_path, capsys):
    assert main(["data", "export", str(tmp_path / "x"), "--qa-per-author", "40"]) == 2
    assert "qa_per_author must be between 1 and 12" in capsys.readouterr().err


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in COMMANDS) and "hf-unlearn data export" in text
    with pytest.raises(SystemExit) as err:
        main(["trian"])
    assert err.value.code == 2 and "invalid choice: 'trian'" in capsys.readouterr().err


def test_export_overwrite_replaces_only_an_earlier_export(tmp_path, capsys, monkeypatch):
    notes = tmp_path / "thesis"
    notes.mkdir()
    (notes / "chapter1.tex").write_text("years of work")
    assert main(["data", "export", str(notes), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not an earlier export" in err and "\n" not in err
    assert (notes / "chapter1.tex").read_text() == "years of work"
    out = tmp_path / "fa"
    assert main(["data", "export", str(out), "--num-authors", "10"]) == 0
    assert main(["data", "export", str(out), "--num-authors", "12", "--overwrite"]) == 0  # an earlier export: replaced
    assert json.loads((out / "metadata.json").read_text())["config"]["num_authors"] == 12
    (out / "my_notes.md").write_text("keep")  # an export the user added a file to is no longer ours to replace
    assert main(["data", "export", str(out), "--overwrite"]) == 2
    assert "my_notes.md" in capsys.readouterr().err and (out / "my_notes.md").is_file()
    monkeypatch.chdir(notes)
    assert main(["data", "export", ".", "--overwrite"]) == 2  # the working folder is never replaced
    assert "its own folder" in capsys.readouterr().err and (notes / "chapter1.tex").is_file()
    assert main(["data", "export", str(tmp_path), "--overwrite"]) == 2  # nor a parent of it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fa", "thesis"]
