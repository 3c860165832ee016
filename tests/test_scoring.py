import pytest
import torch

from hf_unlearn.data import IGNORE_INDEX, DataCollatorForUnlearning, tokenize_rows
from hf_unlearn.evaluation import generate_answers, label_logprobs, rank_answers, score_sequences

from .conftest import make_tiny_llama

ROWS = [
    {
        "question": "What is the capital of France?",
        "answer": "The capital of France is Paris.",
        "perturbed_answer": ["The capital of France is Lyon.", "It is Rome."],
    },
    {
        "question": "Where was Elena Varenko born?",
        "answer": "Elena Varenko was born in Lisbon, Portugal.",
        "perturbed_answer": ["In Oslo.", "Elena Varenko was born in Porto, Portugal."],
    },
    {
        "question": "Who wrote the book?",
        "answer": "The author wrote it in 1999.",
        "perturbed_answer": ["Nobody.", "The quick brown fox wrote it."],
    },
]


def _reference(model, batch):
    """Straightforward full-logits computation, independent of the gather-before-head path."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    logp = logits[:, :-1].log_softmax(-1)
    target = batch["labels"][:, 1:]
    mask = target != IGNORE_INDEX
    picked = logp.gather(-1, target.clamp(min=0)[..., None]).squeeze(-1)
    return (picked * mask).sum(1), mask.sum(1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_label_logprobs_match_full_logits(chat_tokenizer, dtype):
    model = make_tiny_llama(chat_tokenizer, dtype=dtype)
    examples = tokenize_rows(ROWS, chat_tokenizer)
    batch = DataCollatorForUnlearning(pad_token_id=chat_tokenizer.pad_token_id)(examples)
    with torch.no_grad():
        logps, rows = label_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["labels"], chunk_size=7)
        ref_sum, ref_n = _reference(model, batch)
    assert logps.dtype == torch.float32
    sums = torch.zeros(len(examples)).index_add_(0, rows, logps)
    assert torch.bincount(rows).tolist() == ref_n.tolist()
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(sums, ref_sum, rtol=tol, atol=tol)


def test_label_logprobs_carry_gradients(chat_tokenizer):
    model = make_tiny_llama(chat_tokenizer).train()
    batch = DataCollatorForUnlearning(pad_token_id=chat_tokenizer.pad_token_id)(tokenize_rows(ROWS, chat_tokenizer))
    logps, _ = label_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    logps.sum().backward()
    assert model.lm_head.weight.grad is not None and model.model.layers[0].mlp.down_proj.weight.grad.abs().sum() > 0


def test_score_sequences_is_order_and_batch_invariant(chat_tokenizer, tiny_model):
    examples = tokenize_rows(ROWS * 3, chat_tokenizer)
    pad = chat_tokenizer.pad_token_id
    one = score_sequences(tiny_model, examples, pad_token_id=pad, batch_size=1)
    many = score_sequences(tiny_model, examples, pad_token_id=pad, batch_size=4, max_tokens_per_batch=120)
    torch.testing.assert_close(one.sum_logprob, many.sum_logprob, rtol=1e-5, atol=1e-5)
    assert one.num_tokens.tolist() == [sum(t != IGNORE_INDEX for t in e["labels"][1:]) for e in examples]
    torch.testing.assert_close(one.normalized_prob, torch.exp(one.sum_logprob / one.num_tokens))
    assert torch.equal(one.sum_logprob[:3], one.sum_logprob[3:6])
    bad = [{"input_ids": [1, 2, 3], "labels": [IGNORE_INDEX] * 3}]
    with pytest.raises(ValueError, match="no label tokens"):
        score_sequences(tiny_model, bad, pad_token_id=pad)


def test_rank_answers_groups_options_per_item(chat_tokenizer, tiny_model):
    res = rank_answers(tiny_model, chat_tokenizer, ROWS)
    assert [len(p) for p in res.option_probs] == [3, 3, 3]
    for probs, first in zip(res.option_probs, res.correct_first, strict=True):
        assert first == (probs[0] > max(probs[1:]))
    mcq = [{"question": ROWS[0]["question"], "choices": ["Lyon.", "Paris.", "Rome."], "answer": 1}]
    res_mcq = rank_answers(tiny_model, chat_tokenizer, mcq)
    qa = [{"question": ROWS[0]["question"], "answer": "Paris.", "perturbed_answer": ["Lyon.", "Rome."]}]
    assert res_mcq.option_probs == rank_answers(tiny_model, chat_tokenizer, qa).option_probs


def test_batched_left_padded_generation_equals_one_by_one(chat_tokenizer, tiny_model):
    questions = [r["question"] for r in ROWS]
    batched = generate_answers(tiny_model, chat_tokenizer, questions, max_new_tokens=6, batch_size=3)
    single = [generate_answers(tiny_model, chat_tokenizer, [q], max_new_tokens=6)[0] for q in questions]
    assert batched == single and len(batched) == 3


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_shared_prompt_scoring_equals_unshared(chat_tokenizer, dtype):
    from hf_unlearn.data import encode_qa

    model = make_tiny_llama(chat_tokenizer, dtype=dtype)
    examples = []
    for row in ROWS:  # every variant of a question shares its prompt; prompts differ in length across questions
        for ans in (row["answer"], *row["perturbed_answer"]):
            examples.append(encode_qa(chat_tokenizer, row["question"], ans).to_dict())
    examples.append({"input_ids": [5, 6, 7, 8], "labels": [-100, 6, 7, 8]})  # no prompt: scored alone
    pad = chat_tokenizer.pad_token_id
    shared = score_sequences(model, examples, pad_token_id=pad, batch_size=4, token_stats=True)
    plain = score_sequences(model, examples, pad_token_id=pad, batch_size=4, token_stats=True, share_prompts=False)
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(shared.sum_logprob, plain.sum_logprob, rtol=tol, atol=tol)
    assert torch.equal(shared.num_tokens, plain.num_tokens)
    for a, b in zip(shared.token_logps, plain.token_logps, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    # z = (log p - mu) / sigma: a near-uniform random model has a tiny sigma, which magnifies float rounding.
    for a, b in zip(shared.minkpp_z, plain.minkpp_z, strict=True):
        torch.testing.assert_close(a, b, rtol=5e-3, atol=5e-3 if dtype == torch.float32 else 0.5)


def test_shared_prompt_scoring_under_peft(chat_tokenizer):
    from peft import LoraConfig, get_peft_model

    from hf_unlearn.data import encode_qa

    model = get_peft_model(
        make_tiny_llama(chat_tokenizer), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    examples = [
        encode_qa(chat_tokenizer, ROWS[0]["question"], a).to_dict()
        for a in (ROWS[0]["answer"], *ROWS[0]["perturbed_answer"])
    ]
    pad = chat_tokenizer.pad_token_id
    shared = score_sequences(model, examples, pad_token_id=pad)
    plain = score_sequences(model, examples, pad_token_id=pad, share_prompts=False)
    torch.testing.assert_close(shared.sum_logprob, plain.sum_logprob, rtol=1e-5, atol=1e-5)


def test_label_forward_patch_keeps_deep_copies_independent(chat_tokenizer):
    import copy

    from hf_unlearn.logprobs import install_label_logprob_forward

    model = make_tiny_llama(chat_tokenizer)
    assert install_label_logprob_forward(model)
    ids = torch.randint(0, 300, (1, 7))
    labels = ids.clone()
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
        a = clone(input_ids=ids, labels=labels, label_logprobs=True).token_logps
        b = model(input_ids=ids, labels=labels, label_logprobs=True).token_logps
        c = make_tiny_llama(chat_tokenizer)(input_ids=ids).logits  # the copy still computes the original weights
        d = clone(input_ids=ids).logits
    assert not torch.allclose(a, b)
    torch.testing.assert_close(c, d)


@pytest.mark.parametrize("system_prompt", ["You are a careful assistant who answers questions about authors.", None])
def test_common_template_prefix_is_encoded_once(chat_tokenizer, monkeypatch, system_prompt):
    """Rows with prompts of their own still share the template's prefix (a system prompt): it is encoded once and its
    cache repeated, with the same scores as unshared scoring."""
    from hf_unlearn.evaluation import scoring

    model = make_tiny_llama(chat_tokenizer)
    rows = [{"question": f"{r['question']} ({i})", "answer": r["answer"]} for i, r in enumerate(ROWS * 3)]
    examples = tokenize_rows(rows, chat_tokenizer, system_prompt=system_prompt)
    common = scoring._common_prefix(examples, range(len(examples)))
    labelled = [next(t for t, y in enumerate(e["labels"]) if y != IGNORE_INDEX) for e in examples]
    assert all(e["input_ids"][: len(common)] == common for e in examples) and len(common) < min(labelled)
    calls = []
    original = scoring._gather_shared
    monkeypatch.setattr(scoring, "_gather_shared", lambda *a, **k: calls.append(a[1]) or original(*a, **k))
    pad = chat_tokenizer.pad_token_id
    shared = score_sequences(model, examples, pad_token_id=pad, batch_size=4, token_stats=True)
    plain = score_sequences(model, examples, pad_token_id=pad, batch_size=4, token_stats=True, share_prompts=False)
    torch.testing.assert_close(shared.sum_logprob, plain.sum_logprob, rtol=1e-5, atol=1e-5)
    assert torch.equal(shared.num_tokens, plain.num_tokens)
    if len(common) >= scoring.MIN_COMMON_PREFIX:  # every row ran from the one prefix, in batches of at most 4
        assert sorted(i for chunk in calls for _, idx in chunk for i in idx) == list(range(len(examples)))
        assert all(len(chunk) == 1 and len(chunk[0][1]) <= 4 for chunk in calls)
    else:
        assert calls == []
    if system_prompt:
        assert len(common) >= scoring.MIN_COMMON_PREFIX


def test_common_prefix_stops_before_labels_and_differences():
    from hf_unlearn.evaluation.scoring import _common_prefix

    x = IGNORE_INDEX
    rows = [
        {"input_ids": [1, 2, 3, 4, 5, 6], "labels": [x, x, x, x, 5, 6]},
        {"input_ids": [1, 2, 3, 9, 5, 6, 7], "labels": [x, x, x, x, x, 6, 7]},
    ]
    assert _common_prefix(rows, [0, 1]) == [1, 2, 3]  # first difference at position 3
    rows[1]["input_ids"][3] = 4
    assert _common_prefix(rows, [0, 1]) == [1, 2, 3]  # row 0's position 3 predicts its first label (position 4)
    assert _common_prefix(rows, [0]) == []
