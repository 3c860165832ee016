"""Fault injection on the bundled-model cache: two processes converting into an empty cache at once, then damaged
files (bit flips, truncation, a missing file) that must be detected and repaired, never loaded."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hf_unlearn.models import _CACHE_MARKER, _cache_problem, bundled_model_path

pytestmark = pytest.mark.faults  # fault injection: concurrent conversion, damaged caches (subprocesses)

LOAD = textwrap.dedent(
    """
    import sys
    from hf_unlearn.models import bundled_model_path, load_model
    path = bundled_model_path(cache_dir=sys.argv[1])
    model, tok = load_model(str(path))
    print("LOADED", sum(p.numel() for p in model.parameters()))
    """
)


def test_concurrent_first_use_then_damage_is_detected_and_repaired(tmp_path, caplog):
    cache = tmp_path / "cache" / "SmolLM2"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LOAD, str(cache)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert "LOADED 134515008" in out
    assert sorted(p.name for p in cache.parent.iterdir()) == [".SmolLM2.lock", "SmolLM2"]  # no leftovers
    record = json.loads((cache / _CACHE_MARKER).read_text())
    source = record["source"]
    assert _cache_problem(cache, source, full=True) is None

    weights = cache / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as fh:  # a bit flip in the middle of the weights: same size, new mtime
        fh.seek(size // 2)
        byte = fh.read(1)
        fh.seek(size // 2)
        fh.write(bytes([byte[0] ^ 0x40]))
    assert _cache_problem(cache, source) == "model.safetensors does not match its recorded SHA-256"
    with caplog.at_level("WARNING"):
        assert bundled_model_path(cache_dir=cache) == cache  # converted again
    assert "cannot be used (model.safetensors does not match" in caplog.text
    assert _cache_problem(cache, source, full=True) is None

    (cache / "tokenizer.json").write_text((cache / "tokenizer.json").read_text()[:1000])  # truncated
    assert "tokenizer.json has 1000 bytes instead of" in _cache_problem(cache, source)
    (cache / "config.json").unlink()
    assert _cache_problem(cache, source) in (
        "config.json is missing",
        f"tokenizer.json has 1000 bytes instead of {record['files']['tokenizer.json']['size']}",
    )
    (cache / _CACHE_MARKER).write_text("{not json")
    assert _cache_problem(cache, source) == "its conversion record is unreadable"
    assert _cache_problem(tmp_path / "nothing", source) == "not converted yet"


@pytest.mark.parametrize("damage", ["marker", "stale"])
def test_unusable_records_are_named(tmp_path, damage):
    target = tmp_path / "m"
    target.mkdir()
    (target / "config.json").write_text("{}")
    source = {"gguf": "x.gguf", "gguf_size": 1, "format": 2}
    if damage == "stale":
        (target / _CACHE_MARKER).write_text(json.dumps({"source": {**source, "format": 1}, "files": {}}))
        assert _cache_problem(target, source) == "it was converted from another version of the bundled model"
    else:
        assert _cache_problem(target, source) == "no conversion record"
    assert Path(target / "config.json").is_file()  # detection never deletes anything
