"""The run report (``hf_unlearn.report``, ``hf-unlearn report``): the ROC it draws agrees with the evaluation's AUC,
every section renders from real results (a tiny recipe run and the committed benchmark rows), text is escaped, other
runs compare as columns, and the page opens in a headless browser with every section and figure drawn."""

import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hf_unlearn.cli import main as cli
from hf_unlearn.evaluation import EvalResult
from hf_unlearn.evaluation import metrics as M
from hf_unlearn.report import guide, load_run, write_report
from hf_unlearn.report.figures import roc_curve

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SECTIONS = ("headline", "curves", "mia", "items", "robustness", "search", "reading")


def _row(name: str) -> dict:
    return json.loads((RESULTS / "quality" / f"{name}.json").read_text())


def test_roc_area_is_the_evaluations_auc():
    rng = random.Random(0)
    forget = [round(rng.gauss(0.3, 0.2), 2) for _ in range(40)]
    holdout = [round(rng.gauss(0.6, 0.3), 2) for _ in range(35)] + forget[:5]  # ties count half
    fpr, tpr, area = roc_curve(forget, holdout)
    assert area == pytest.approx(M.auc(forget, holdout))
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert fpr == sorted(fpr) and tpr == sorted(tpr)
    assert roc_curve([1, 2], [1, 2])[2] == pytest.approx(0.5)  # indistinguishable sets: the diagonal


def test_guide_says_which_way_is_better():
    assert guide("forget_quality").arrow == "↑"
    assert (guide("privleak").arrow, guide("privleak").level) == ("→", "0")
    assert (guide("mia_min_k_auc").arrow, guide("mia_min_k_auc").level) == ("→", "0.5")
    assert (guide("forget_rouge").arrow, guide("forget_rouge").level) == ("→", "retain")  # the retain model, not 0
    assert guide("retain_rouge").arrow == "↑" and guide("world_facts_accuracy").arrow == "↑"
    assert guide("relearn_10/leak_rate").arrow == "↓"


def _sections(page: str) -> set[str]:
    return {s for s in SECTIONS if f'<section id="{s}">' in page}


def test_report_from_the_committed_benchmark_rows(tmp_path):
    npo = _row("npo_calibrated")
    robustness = json.loads((RESULTS / "robustness" / "npo.json").read_text())
    retain_robustness = json.loads((RESULTS / "robustness" / "retain.json").read_text())
    path = write_report(
        tmp_path,
        results={"target": _row("target")["metrics"], "retain": _row("retain")["metrics"], "unlearned": npo["metrics"]},
        log_history=npo["log_history"],
        calibration=npo["calibration"],
        robustness={"retain": retain_robustness, "unlearned": robustness},
        title="NPO, calibrated",
    )
    page = path.read_text()
    assert _sections(page) == {"headline", "curves", "robustness", "reading"}  # no per-item data in these rows
    assert page.count("<svg") == 2  # training curves, robustness bars
    assert f'<td class="num">{npo["metrics"]["model_utility"]:.3f}</td>' in page
    assert "Training ended at step 20" in page  # the calibration stopped NPO at step 20 of 25
    assert {p.name for p in tmp_path.glob("*.png")} == {"report_training.png", "report_robustness.png"}
    assert "<script" not in page and not re.search(r"(src|href)=\"https?:|url\((?!#)|@import", page)  # self-contained


def _run_folder(path: Path, *, generation: str, prob: float, steps: int = 4) -> Path:
    path.mkdir(parents=True)
    result = EvalResult(
        "tofu",
        metrics={"forget_prob": prob, "model_utility": 0.5, "mia_min_k_auc": 0.7},
        per_item={
            "forget_prob": {0: prob, 1: prob / 2},
            "forget_generation": {0: generation, 1: "I don't know."},
            "mia_min_k_forget": {0: 0.1, 1: 0.2},
            "mia_min_k_holdout": {0: 0.3, 1: 0.15},
        },
    )
    result.save(path / "results.json")
    history = [{"step": s, "loss": 1.0 / s, "learning_rate": 1e-4} for s in range(1, steps + 1)]
    state = {"global_step": steps, "max_steps": 10, "log_history": history}
    (path / "trainer_state.json").write_text(json.dumps(state))
    return path


def test_report_escapes_text_and_classes_answers(tmp_path):
    run = _run_folder(tmp_path / "run", generation='<script>alert("x")</script> Lyon', prob=0.8)
    rows = [
        {"question": "Where does <b>Ann</b> live?", "answer": "In Lyon.", "fact": "Lyon", "fact_type": "city"},
        {"question": "What did Ann write?", "answer": "A book.", "fact": "A book", "fact_type": "debut_book"},
    ]
    page = write_report(run, forget_rows=rows).read_text()
    assert "<script" not in page and "&lt;script&gt;" in page and "&lt;b&gt;Ann&lt;/b&gt;" in page
    assert _sections(page) == {"headline", "curves", "mia", "items", "reading"}
    assert '<span class="kind kind-leak">leak</span>' in page  # the generation states "Lyon"
    assert '<span class="kind kind-refusal">refusal</span>' in page
    assert "Training ended at step 4 of 10" in page


def test_cli_report_compares_runs_and_refuses_an_empty_folder(tmp_path, capsys):
    one = _run_folder(tmp_path / "npo", generation="Paris", prob=0.8)
    two = _run_folder(tmp_path / "simnpo", generation="Rome", prob=0.2)
    assert cli(["report", str(one), "--compare", str(two), "--title", "two runs"]) == 0
    page = (one / "report.html").read_text()
    assert '<th class="num">unlearned</th>' in page and '<th class="num">simnpo</th>' in page
    assert "<title>two runs · hf_unlearn report</title>" in page
    assert "local only" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        cli(["report", str(tmp_path / "empty")])
    assert "nothing to report" in capsys.readouterr().err
    assert load_run(one).state["global_step"] == 4


def _browser() -> str | None:
    return next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


def _render(browser: str, page: Path, shot: Path) -> str:
    """Screenshot ``page`` in headless Chromium; return the DOM it rendered."""
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,2400"]
    url = page.resolve().as_uri()
    subprocess.run([*flags, f"--screenshot={shot}", url], check=True, capture_output=True, timeout=120)
    return subprocess.run([*flags, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120).stdout


@pytest.mark.slow
def test_report_of_a_recipe_run_renders_in_a_headless_browser(tmp_path, tiny_model_dir):
    browser = _browser()
    if browser is None:
        pytest.skip("Chromium is not installed (make test-all installs Debian's chromium package where apt-get works)")
    from PIL import Image

    from .test_recipe import _config

    cfg = _config(tmp_path, tiny_model_dir, max_steps=3, eval_robustness=True)
    assert cli(["train", "--config", str(cfg), "--search_trials", "0"]) == 0
    run = tmp_path / "run"
    committed = tmp_path / "committed"
    npo = _row("npo")
    write_report(committed, results={"unlearned": npo["metrics"]}, log_history=npo["log_history"])
    for page, expected in ((run / "report.html", set(SECTIONS) - {"search"}), (committed / "report.html", None)):
        dom = _render(browser, page, tmp_path / "shot.png")
        found = _sections(dom)
        assert expected is None or found == expected, found
        assert dom.count("<svg") == (3 if expected else 1)  # training curves, MIA, robustness; curves
        assert "<img" not in dom  # every figure is inline: nothing can fail to load
        image = Image.open(tmp_path / "shot.png").convert("RGB")
        assert image.size == (1280, 2400)
        assert len(image.getcolors(maxcolors=1 << 20) or []) > 50  # drawn figures and text, not a blank page
