"""GreedyDecoder: the continuously refilled batch reproduces ``model.generate``'s greedy tokens, per-row budgets and
stop tokens included; prompt caches handed over by the scoring pass give the same tokens; evaluate_tofu's new path
equals the previous one."""

import math

import pytest
import torch

from hf_unlearn import build_fictitious_authors
from hf_unlearn._compat import output_cache
from hf_unlearn.data import pad_sequences
from hf_unlearn.data.tokenization import encode_prompt
from hf_unlearn.evaluation import builtin_tofu_splits, evaluate_tofu, generate_answers
from hf_unlearn.evaluation.decoding import GreedyDecoder, supports_greedy_decoder
from hf_unlearn.evaluation.generation import generate_ids

from .conftest import make_tiny_llama

QUESTIONS = [
    "Where was Greta born?",
    "Who publishes the books of the author of Lantern Winter, and since when?",
    "Why?",
    "What is the capital of France?",
    "Name the award that Adrian Rudezar received in 1988 for his third romance novel.",
    "When?",
    "Which city?",
]


def _reference(model, prompts, budgets, stop, pad):
    """``model.generate`` one prompt at a time: each row cut at its first stop token and its budget."""
    out = []
    for p, b in zip(prompts, budgets, strict=True):
        if b == 0:
            out.append([])
            continue
        ids = torch.tensor([p])
        gen = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=b,
            do_sample=False,
            eos_token_id=stop,
            pad_token_id=pad,
        )[0, len(p) :].tolist()
        ends = [j for j, t in enumerate(gen) if t in stop]
        out.append(gen[: ends[0] + 1] if ends else gen)
    return out


@pytest.mark.parametrize("batch_size,refill_at", [(1, None), (3, 1), (3, None), (16, None)])
def test_decoder_equals_generate_with_budgets_and_stops(chat_tokenizer, batch_size, refill_at):
    model = make_tiny_llama(chat_tokenizer).eval()
    prompts = [encode_prompt(chat_tokenizer, q) for q in QUESTIONS]
    budgets = [9, 3, 0, 12, 1, 7, 10]
    free = _reference(model, prompts, [12] * len(prompts), [chat_tokenizer.eos_token_id], chat_tokenizer.pad_token_id)
    stop = sorted({free[0][2], free[3][5], chat_tokenizer.eos_token_id})  # rows end at different steps
    expected = _reference(model, prompts, budgets, stop, chat_tokenizer.pad_token_id)
    assert len({len(x) for x in expected}) >= 4  # the stops and budgets really vary the lengths

    decoder = GreedyDecoder(
        model, stop_ids=stop, pad_token_id=chat_tokenizer.pad_token_id, batch_size=batch_size, refill_at=refill_at
    )
    for i, (p, b) in enumerate(zip(prompts, budgets, strict=True)):
        decoder.submit(i, p, b)
    out = decoder.finish()
    assert [out[i] for i in range(len(prompts))] == expected
    assert decoder.stats.max_in_flight <= batch_size
    assert decoder.stats.tokens == sum(len(x) for x in expected) - sum(1 for x in expected if x)  # rows leave


def test_generate_ids_engines_agree_and_fall_back(chat_tokenizer):
    model = make_tiny_llama(chat_tokenizer).eval()
    prompts = [encode_prompt(chat_tokenizer, q) for q in QUESTIONS]
    new = generate_ids(model, chat_tokenizer, prompts, max_new_tokens=[5, 8, 2, 6, 1, 0, 4], batch_size=3)
    old = generate_ids(
        model, chat_tokenizer, prompts, max_new_tokens=[5, 8, 2, 6, 1, 0, 4], batch_size=3, engine="generate"
    )
    assert new == old and [len(x) for x in new] == [5, 8, 2, 6, 1, 0, 4]

    model.generation_config.repetition_penalty = 1.3  # a logits processor the decoder does not reproduce
    assert not supports_greedy_decoder(model)
    auto = generate_ids(model, chat_tokenizer, prompts, max_new_tokens=6, batch_size=3)
    assert auto == generate_ids(model, chat_tokenizer, prompts, max_new_tokens=6, batch_size=3, engine="generate")
    with pytest.raises(ValueError, match="engine must be"):
        generate_ids(model, chat_tokenizer, prompts, max_new_tokens=6, engine="fast")
    with pytest.raises(ValueError, match="one per prompt"):
        generate_ids(model, chat_tokenizer, prompts, max_new_tokens=[1, 2])


def test_prefilled_rows_equal_own_encoding(chat_tokenizer):
    """Rows whose prefix cache comes from elsewhere (right-padded, as the scoring pass makes it) decode alike."""
    model = make_tiny_llama(chat_tokenizer).eval()
    prompts = [encode_prompt(chat_tokenizer, q) for q in QUESTIONS]
    stop, pad = [chat_tokenizer.eos_token_id], chat_tokenizer.pad_token_id
    expected = _reference(model, prompts, [6] * len(prompts), stop, pad)

    decoder = GreedyDecoder(model, stop_ids=stop, pad_token_id=pad, batch_size=4)
    ids, mask = pad_sequences([p[:-1] for p in prompts[:5]], pad)  # right padding
    with torch.no_grad():
        cache = output_cache(model(input_ids=ids, attention_mask=mask, use_cache=True))
    decoder.submit_prefilled(list(range(5)), prompts[:5], [6] * 5, cache, mask)
    for i in (5, 6):
        decoder.submit(i, prompts[i], 6)
    out = decoder.finish()
    assert [out[i] for i in range(len(prompts))] == expected
    assert decoder.stats.reused == 5 and decoder.stats.prefilled == 2


@pytest.fixture(scope="module")
def splits():
    return builtin_tofu_splits(build_fictitious_authors(num_authors=6, seed=3), retain_size=6)


def test_evaluate_tofu_decoder_equals_generate(chat_tokenizer, splits):
    model = make_tiny_llama(chat_tokenizer)
    new = evaluate_tofu(model, chat_tokenizer, **splits, max_new_tokens=7, batch_size=5)
    old = evaluate_tofu(model, chat_tokenizer, **splits, max_new_tokens=7, batch_size=5, generation_engine="generate")
    assert new.metrics == old.metrics
    for split in ("forget", "retain", "world_facts"):
        assert new.per_item[f"{split}_generation"] == old.per_item[f"{split}_generation"]
    questions = {r["question"] for s in ("forget", "retain", "world_facts") for r in splits[s]}
    details = new.details["generation"]
    assert details["engine"] == "decoder" and details["prompts_from_scoring"] == len(questions)
    assert details["prompts_encoded"] == 0  # every generated prompt was encoded once, by the scoring pass
    assert old.details["generation"] == {"engine": "generate"}


@pytest.mark.slow
def test_generation_budget_caps_each_split(chat_tokenizer, splits):
    model = make_tiny_llama(chat_tokenizer)
    full = evaluate_tofu(model, chat_tokenizer, **splits, max_new_tokens=40, batch_size=8)
    capped = evaluate_tofu(model, chat_tokenizer, **splits, max_new_tokens=40, batch_size=8, generation_budget=0.5)
    for split in ("forget", "retain", "world_facts"):
        longest = max(len(chat_tokenizer(r["answer"], add_special_tokens=False)["input_ids"]) for r in splits[split])
        cap = min(40, math.ceil(0.5 * longest))
        questions = [r["question"] for r in splits[split]]
        at_cap = generate_answers(model, chat_tokenizer, questions, max_new_tokens=cap, batch_size=8)
        assert list(capped.per_item[f"{split}_generation"].values()) == at_cap
        for i, text in capped.per_item[f"{split}_generation"].items():
            assert full.per_item[f"{split}_generation"][i].startswith(text)  # greedy: a prefix of the full text
    assert capped.meta["generation"]["generation_budget"] == 0.5
    assert capped.details["generation"]["tokens"] < full.details["generation"]["tokens"]
    with pytest.raises(ValueError, match="generation_budget must be > 0"):
        evaluate_tofu(model, chat_tokenizer, **splits, generation_budget=0)


def test_cli_eval_generation_budget(tiny_model_dir, tmp_path):
    from hf_unlearn.cli import main
    from hf_unlearn.evaluation import EvalResult

    out = tmp_path / "r"
    args = ["eval", "--model_name_or_path", str(tiny_model_dir), "--suite", "tofu", "--num_authors", "10"]
    args += ["--qa_per_author", "2", "--retain_size", "5", "--max_new_tokens", "30", "--generation_budget", "0.5"]
    assert main([*args, "--output_dir", str(out)]) == 0
    result = EvalResult.load(out / "results.json")
    assert result.meta["generation"] == {"greedy": True, "max_new_tokens": 30, "generation_budget": 0.5}
    assert result.details["generation"]["engine"] == "decoder"
