"""Every slow phase names itself: labelled progress bars for the evaluations and the reference precompute, and an
announced conversion of the bundled model."""

import pytest

from hf_unlearn import build_fictitious_authors, evaluate_tofu
from hf_unlearn.evaluation import builtin_tofu_splits, evaluate_mcq, evaluate_muse
from hf_unlearn.evaluation.muse import builtin_muse_splits
from hf_unlearn.trainers import NPOConfig, NPOTrainer

from .conftest import make_tiny_llama


@pytest.fixture(scope="module")
def bench():
    return build_fictitious_authors(num_authors=10, qa_per_author=3, seed=5)


def test_evaluation_bars_carry_the_label_they_are_given(chat_tokenizer, bench, capsys):
    model = make_tiny_llama(chat_tokenizer)
    evaluate_tofu(
        model, chat_tokenizer, **builtin_tofu_splits(bench, retain_size=4), max_new_tokens=3, progress="retain model"
    )
    err = capsys.readouterr().err
    assert "retain model: scoring" in err and "retain model: generating" in err
    evaluate_mcq(model, chat_tokenizer, bench["forget_mcq"], scoring="cloze", progress="forget_mcq questions")
    evaluate_mcq(model, chat_tokenizer, bench["forget_mcq"], progress="forget_mcq questions")
    err = capsys.readouterr().err
    assert err.count("forget_mcq questions") >= 2
    evaluate_tofu(model, chat_tokenizer, **builtin_tofu_splits(bench, retain_size=4), max_new_tokens=3)
    assert capsys.readouterr().err == ""  # quiet unless asked
    sets = builtin_muse_splits(bench)
    evaluate_muse(model, chat_tokenizer, **sets, verbmem_max_new_tokens=3, knowmem_max_new_tokens=3, progress=True)
    err = capsys.readouterr().err
    for label in ("VerbMem: generating", "KnowMem forget: generating", "PrivLeak holdout: scoring"):
        assert label in err


def test_reference_precompute_shows_a_labelled_bar(chat_tokenizer, bench, tmp_path, capsys):
    args = NPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=2, max_steps=1, report_to=[], save_strategy="no"
    )
    NPOTrainer(
        make_tiny_llama(chat_tokenizer),
        args=args,
        forget_dataset=bench["forget"],
        retain_dataset=bench["retain"],
        processing_class=chat_tokenizer,
    )
    assert "Reference log-probs (once, before training)" in capsys.readouterr().err
