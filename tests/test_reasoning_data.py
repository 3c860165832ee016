"""Reasoning data (R-TOFU, arXiv:2505.15214): the benchmark's traces, the think format and its extraction, the
training targets' labels under ChatML and Llama-3-style templates, and templates that drop think content."""

import copy
import hashlib
import json

import pytest

from hf_unlearn import build_fictitious_authors
from hf_unlearn.data import tokenize_rows
from hf_unlearn.data.idk import IDK_RESPONSES
from hf_unlearn.data.reasoning import (
    ReasoningParts,
    check_reasoning_template,
    format_reasoning,
    reasoning_rows,
    split_reasoning,
)
from hf_unlearn.evaluation.answers import value_pools

LLAMA3 = (
    "{{ '<|begin_of_text|>' }}{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
# Like reasoning-model templates that keep only the text after </think> of an assistant turn.
STRIPS_THINK = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' }}"
    "{% if m['role'] == 'assistant' %}{{ m['content'].split('</think>')[-1].strip() }}"
    "{% else %}{{ m['content'] }}{% endif %}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def bench():
    return build_fictitious_authors(num_authors=40)


def test_traces_derive_the_fact_and_reasoned_idk_never_states_one(bench):
    rows = [*bench["forget"], *bench["retain"], *bench["holdout"]]
    pools = value_pools(rows)
    for row in rows:
        assert row["fact"] in row["cot"] and row["cot"].rstrip(".").endswith(row["fact"].rstrip("."))
        assert row["author"] in row["cot"] and row["author"] in row["idk_cot"]
        values = pools.get(row["fact_type"], set()) | {row["fact"]}
        assert not any(v in row["idk_cot"] for v in values), (row["fact_type"], row["idk_cot"])
    # Varied phrasing, deterministic for a seed, and the seed changes it.
    assert len({r["cot"].split(".")[0].split(" ")[0] for r in rows}) >= 3
    assert len({r["idk_cot"].split(". ")[-1] for r in rows}) >= 3
    again = build_fictitious_authors(num_authors=40)
    assert [r["cot"] for r in again["forget"]] == [r["cot"] for r in bench["forget"]]


def test_traces_leave_every_other_field_of_the_benchmark_unchanged():
    """The traces draw on their own stream: the default benchmark's other fields are those of generator version 2
    (hash taken before the traces were added), so every committed result stays comparable."""
    splits = build_fictitious_authors().splits
    stripped = {
        k: [{f: v for f, v in r.items() if f not in ("cot", "idk_cot")} for r in rows] for k, rows in splits.items()
    }
    digest = hashlib.sha256(json.dumps(stripped, sort_keys=True).encode()).hexdigest()
    # Guards every committed benchmark result: a change to the generator's other fields would make them incomparable.
    assert digest == "c45b85b1c6b93c46dad3309930bb0fdb32ba4930863fbf094bcbe529ec7ced51"


def test_split_reasoning_handles_missing_tags():
    text = format_reasoning("Step one. Step two.", "The answer.")
    assert text == "<think>\nStep one. Step two.\n</think>\n\nThe answer."
    assert split_reasoning(text) == ReasoningParts("Step one. Step two.", "The answer.", True)
    # The template put <think> in the prompt: the generation starts inside the trace.
    assert split_reasoning("Step one.\n</think>\n\nAn answer") == ReasoningParts("Step one.", "An answer", True)
    # Never closed: all trace, no answer, and flagged (never scored as a forgotten answer).
    assert split_reasoning("<think>\nStep one, and on and on") == ReasoningParts("Step one, and on and on", "", False)
    # No reasoning block at all: all answer.
    assert split_reasoning("Just an answer.") == ReasoningParts(None, "Just an answer.", True)
    assert split_reasoning("<think>\n\n</think>\n\nDirect.") == ReasoningParts("", "Direct.", True)


def _labelled_text(tok, example) -> str:
    return tok.decode([t for t, label in zip(example["input_ids"], example["labels"], strict=True) if label != -100])


@pytest.mark.parametrize("template", ["chatml", "llama3"])
def test_labels_cover_what_each_target_trains(chat_tokenizer, bench, template):
    tok = copy.deepcopy(chat_tokenizer)
    if template == "llama3":
        tok.chat_template = LLAMA3
    row = bench["forget"][0]
    eot = tok.eos_token
    both, answer_only, cot_only = (
        tokenize_rows(reasoning_rows([row], target=t), tok)[0] for t in ("both", "answer", "cot")
    )
    assert both["input_ids"] == answer_only["input_ids"] == cot_only["input_ids"]  # same input, other labels
    text = _labelled_text(tok, both)
    assert text.startswith(row["cot"][:20]) and "</think>" in text and row["answer"] in text and text.endswith(eot)
    text = _labelled_text(tok, answer_only)
    assert text.strip() == row["answer"] + eot and row["cot"][:20] not in text  # the trace is context only
    text = _labelled_text(tok, cot_only)
    assert text.strip() == row["cot"] and "</think>" not in text  # no answer, no end of turn

    direct, idk_answer, reasoned = (reasoning_rows([row], idk=k, seed=1)[0] for k in ("direct", "answer", "reasoned"))
    assert direct["idk_answer"] in IDK_RESPONSES and direct["answer"] == format_reasoning(
        direct["idk_answer"], direct["idk_answer"]
    )
    assert idk_answer["answer"] == format_reasoning(row["cot"], idk_answer["idk_answer"])
    assert _labelled_text(tok, tokenize_rows([idk_answer], tok)[0]).strip() == idk_answer["idk_answer"] + eot
    assert reasoned["answer"] == format_reasoning(row["idk_cot"], reasoned["idk_answer"])
    assert row["fact"] not in _labelled_text(tok, tokenize_rows([reasoned], tok)[0])
    check_reasoning_template(tok)  # these templates keep think content


def test_labels_with_the_real_smollm2_tokenizer(bench):
    from hf_unlearn.models import load_tokenizer

    tok = load_tokenizer("bundled")
    row = bench["forget"][3]
    text = _labelled_text(tok, tokenize_rows(reasoning_rows([row]), tok)[0])
    # R-TOFU masks the prompt through "<think>\n": the trace, </think>, the answer and the end of turn are trained.
    assert text == format_reasoning(row["cot"], row["answer"]).removeprefix("<think>\n") + "<|im_end|>"


def test_bad_reasoning_input_is_refused_with_what_to_do(chat_tokenizer, bench):
    tok = copy.deepcopy(chat_tokenizer)
    tok.chat_template = STRIPS_THINK
    with pytest.raises(ValueError, match="drops the <think> content"):
        check_reasoning_template(tok)
    plain = [{"question": "Q?", "answer": "A."}]
    with pytest.raises(ValueError, match=r"have no 'cot'.*add a 'cot' column"):
        reasoning_rows(plain)
    with pytest.raises(ValueError, match=r"have no 'idk_cot'.*never states the fact"):
        reasoning_rows([{**plain[0], "cot": "Thinking."}], idk="reasoned")
    assert reasoning_rows(plain, idk="direct")[0]["answer"].startswith("<think>\n")  # direct IDK needs no trace
    with pytest.raises(ValueError, match="target must be one of"):
        reasoning_rows(bench["forget"][:1], target="trace")


def test_export_writes_the_traces(tmp_path):
    b = build_fictitious_authors(num_authors=10, qa_per_author=2)
    b.export(tmp_path / "fa")
    first = json.loads((tmp_path / "fa" / "forget.jsonl").read_text().splitlines()[0])
    assert first["cot"] == b["forget"][0]["cot"] and first["idk_cot"] == b["forget"][0]["idk_cot"]
