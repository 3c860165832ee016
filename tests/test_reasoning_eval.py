"""The reasoning suite (R-TOFU, arXiv:2505.15214): decoding prompts as specified for ChatML and Llama-3-style templates,
trace/answer metrics on planted generations (unclosed traces never scored as forgotten), step-wise cosine, the real
sentence encoder, and the CLI."""

import copy
import re

import pytest
import torch

from hf_unlearn import build_fictitious_authors
from hf_unlearn.cli import main
from hf_unlearn.evaluation import EvalResult, evaluate_reasoning, reasoning_prompt
from hf_unlearn.evaluation import reasoning as R
from hf_unlearn.evaluation.reasoning import stepwise_cosine

from .conftest import make_tiny_llama
from .test_reasoning_data import LLAMA3

# DeepSeek-R1 distills open the trace in the generation prompt themselves.
OPENS_THINK = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n<think>\n' }}{% endif %}"
)
LESS = "Okay, the user asked this, I can answer it without thinking much."


def toy_encoder(texts):
    """Bag of lower-cased words hashed into 64 buckets, L2-normalised: equal word sets give cosine 1."""
    out = torch.zeros(len(texts), 64)
    for i, t in enumerate(texts):
        for w in re.findall(r"\w+", t.lower()):
            out[i, sum(map(ord, w)) % 64] += 1
    return torch.nn.functional.normalize(out, dim=-1)


def test_decoding_prompts_render_as_specified(chat_tokenizer):
    q = "Where was Elena Varenko born?"
    chatml = "<|im_start|>system\nYou are a tiny test assistant.<|im_end|>\n<|im_start|>user\n" + q + "<|im_end|>\n"
    chatml += "<|im_start|>assistant\n"
    assert reasoning_prompt(chat_tokenizer, q, "default") == chatml + "<think>\n"
    assert reasoning_prompt(chat_tokenizer, q, "zerothink") == chatml + "<think>\n\n</think>\n\n"
    assert reasoning_prompt(chat_tokenizer, q, "lessthink") == chatml + f"<think>\n{LESS}\n</think>\n\n"
    tok = copy.deepcopy(chat_tokenizer)
    tok.chat_template = LLAMA3
    llama = f"<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{q}<|eot_id|>"
    llama += "<|start_header_id|>assistant<|end_header_id|>\n\n"
    assert reasoning_prompt(tok, q, "default") == llama + "<think>\n"
    assert reasoning_prompt(tok, q, "zerothink") == llama + "<think>\n\n</think>\n\n"
    assert reasoning_prompt(tok, q, "lessthink") == llama + f"<think>\n{LESS}\n</think>\n\n"
    tok.chat_template = OPENS_THINK  # no second <think>
    assert reasoning_prompt(tok, q, "zerothink").endswith("assistant\n<think>\n\n</think>\n\n")
    assert reasoning_prompt(tok, q, "default").count("<think>") == 1
    with pytest.raises(ValueError, match="decoding must be one of"):
        reasoning_prompt(tok, q, "nothink")


def test_metrics_on_planted_generations(chat_tokenizer, monkeypatch):
    bench = build_fictitious_authors(num_authors=10, qa_per_author=2)
    rows = bench["forget"][:2]
    fact0, fact1 = rows[0]["fact"], rows[1]["fact"]

    def planted(model, tok, prompts, max_new_tokens, batch_size, progress):
        out = []
        for p, row in zip(prompts, rows, strict=True):
            if p.endswith("<think>\n"):  # default: row 0 leaks in its trace and refuses; row 1 never closes
                out.append(
                    f"{row['cot']}\n</think>\n\nI don't know." if row is rows[0] else f"Thinking about {fact1} and on"
                )
            elif LESS in p:
                out.append("I don't know.")
            else:  # ZeroThink: the true answer comes back
                out.append(row["answer"])
        return out

    monkeypatch.setattr(R, "_generate", planted)
    r = evaluate_reasoning(make_tiny_llama(chat_tokenizer), chat_tokenizer, forget=rows, encoder=toy_encoder)
    m = r.metrics
    assert m["forget/default/unclosed_rate"] == 0.5
    # Row 0 refused (answer ROUGE low) but its trace states the fact; row 1 never closed: scored on its trace text,
    # which names the fact - a leak, not a forgotten answer.
    assert r.per_item["forget/default/answer_leak"] == {0: 0.0, 1: 1.0}
    assert m["forget/default/trace_leak_rate"] == 1.0 and fact0 in r.per_item["forget/default/generation"][0]
    assert r.per_item["forget/default/trace_rouge"][0] == pytest.approx(1.0)
    assert r.per_item["forget/default/trace_stepwise_cosine"][0] == pytest.approx(1.0)
    assert m["forget/zerothink/answer_rouge"] == pytest.approx(1.0) and m["forget/zerothink/answer_cosine"] == (
        pytest.approx(1.0)
    )
    assert m["forget/lessthink/answer_leak_rate"] == 0.0
    # leak_rate: the trace or the answer states the fact (default), the answer alone (forced traces).
    assert r.per_item["forget/default/trace_leak"] == {0: 1.0, 1: 1.0} and m["forget/default/answer_leak_rate"] == 0.5
    assert m["forget/default/leak_rate"] == 1.0 and m["forget/lessthink/leak_rate"] == 0.0
    assert m["forget/zerothink/leak_rate"] == m["forget/zerothink/answer_leak_rate"] == 1.0
    assert m["worst/forget_leak_rate"] == 1.0
    assert m["worst/forget_answer_rouge"] == pytest.approx(1.0)
    assert r.details["worst_case"]["answer_rouge"]["decoding"] == "zerothink"
    assert m["zerothink_gap/forget_answer_rouge"] == pytest.approx(1.0 - m["forget/default/answer_rouge"])
    assert m["zerothink_gap/forget_answer_rouge"] > 0.5
    assert r.meta["prompts"]["zerothink"].endswith(
        "{question}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )


def test_stepwise_cosine():
    ref = "The author was born in Lyon. She writes crime fiction."
    assert stepwise_cosine("She writes crime fiction. The author was born in Lyon.", ref, toy_encoder) == pytest.approx(
        1.0
    )
    partial = stepwise_cosine("The author was born in Lyon. Bananas are yellow.", ref, toy_encoder)
    assert 0.4 < partial < 1.0
    assert stepwise_cosine("", ref, toy_encoder) is None


def test_the_packaged_sentence_encoder_ranks_paraphrases_above_unrelated_text():
    from hf_unlearn.evaluation.embeddings import load_sentence_encoder

    encode = load_sentence_encoder()
    e = encode(["Matteo was born in Lyon, France.", "The birthplace of Matteo is Lyon in France.", "Bananas are rich."])
    assert e.shape == (3, 384) and torch.allclose(e.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert e[0] @ e[1] > 0.8 > 0.2 > e[0] @ e[2]


def test_cli_reasoning_suite_on_a_tiny_model(tiny_model_dir, tmp_path):
    args = ["eval", "--model_name_or_path", str(tiny_model_dir), "--suite", "reasoning", "--num_authors", "10"]
    args += ["--qa_per_author", "2", "--retain_size", "4", "--max_new_tokens", "4"]
    assert main([*args, "--output_dir", str(tmp_path / "reasoning")]) == 0
    result = EvalResult.load(tmp_path / "reasoning" / "results.json")
    for d in ("default", "zerothink", "lessthink"):
        assert 0.0 <= result.metrics[f"forget/{d}/answer_rouge"] <= 1.0
        assert f"retain/{d}/answer_rouge" in result.metrics
    assert result.metrics["forget/default/unclosed_rate"] == 1.0  # 4 tokens never close a trace
    assert result.details["encoder"] == "all-MiniLM-L6-v2"
    hub = ["eval", "--model_name_or_path", str(tiny_model_dir), "--suite", "reasoning", "--dataset", "hub"]
    with pytest.warns(FutureWarning, match="--dataset is deprecated"):  # hf_unlearn 0.1's --dataset hub
        assert main(hub) == 2
