import pytest
import torch

from hf_unlearn.data import (
    IGNORE_INDEX,
    DataCollatorForUnlearning,
    FallbackFormat,
    encode_completion,
    encode_prompt,
    encode_qa,
    tokenize_rows,
)


def _labelled(ex):
    return [t for t in ex["labels"] if t != IGNORE_INDEX]


def test_labels_are_answer_plus_end_of_turn_with_pad_equal_eos(chat_tokenizer):
    tok = chat_tokenizer
    assert tok.pad_token_id == tok.eos_token_id  # the hard case
    ex = encode_qa(tok, "Where was Elena Varenko born?", "Elena Varenko was born in Lisbon, Portugal.")
    labels = [t for t in ex.labels if t != IGNORE_INDEX]
    # Exactly the answer's tokens, then the template's end-of-turn token, and nothing after it.
    answer_ids = tok("Elena Varenko was born in Lisbon, Portugal.", add_special_tokens=False)["input_ids"]
    assert labels == [*answer_ids, tok.convert_tokens_to_ids("<|im_end|>")]
    assert ex.input_ids[-1] == tok.eos_token_id
    assert tok.decode(labels) == "Elena Varenko was born in Lisbon, Portugal.<|im_end|>"
    # The prompt is masked and equals what generation would see.
    prompt = encode_prompt(tok, "Where was Elena Varenko born?")
    assert ex.input_ids[: len(prompt)] == prompt
    assert ex.labels[: len(prompt)] == [IGNORE_INDEX] * len(prompt)
    assert ex.prompt_length == len(prompt)
    # The prompt itself contains end-of-turn tokens equal to the pad id (system and user turns).
    assert prompt.count(tok.pad_token_id) == 2


def test_attention_mask_keeps_real_eos_tokens_that_equal_pad(chat_tokenizer):
    tok = chat_tokenizer
    rows = tokenize_rows(
        [
            {"question": "What is the capital of France?", "answer": "Paris."},
            {"question": "Where was Elena Varenko born?", "answer": "Elena Varenko was born in Lisbon, Portugal."},
        ],
        tok,
    )
    batch = DataCollatorForUnlearning(pad_token_id=tok.pad_token_id)(rows)
    lengths = [len(r["input_ids"]) for r in rows]
    assert batch["attention_mask"].sum(1).tolist() == lengths  # from lengths, all real tokens attended
    naive = batch["input_ids"] != tok.pad_token_id  # the pitfall: hides every <|im_end|> in the prompt
    assert (naive.sum(1) < batch["attention_mask"].sum(1)).all()
    longer = max(range(2), key=lambda i: lengths[i])
    assert batch["attention_mask"][longer].all()
    assert (batch["labels"][1 - longer, lengths[1 - longer] :] == IGNORE_INDEX).all()


def test_zero_label_rows_are_dropped_and_counted(chat_tokenizer):
    tok = chat_tokenizer
    prompt_len = len(encode_prompt(tok, "What is the capital of France?"))
    rows = [
        {"question": "What is the capital of France?", "answer": "The capital of France is Paris."},
        {"question": "What is the capital of France? " * 8, "answer": "Paris."},  # prompt alone overflows
        {"question": "What is the capital of France?", "answer": ""},  # no answer token at all
    ]
    with pytest.warns(UserWarning, match=r"Dropped 2 of 3 rows .*row indices: 1, 2"):
        out = tokenize_rows(rows, tok, max_length=prompt_len + 3)
    assert [r["index"] for r in out] == [0]
    # Truncation keeps the first answer tokens; the cut end-of-turn token is not labelled.
    assert len(out[0]["input_ids"]) == prompt_len + 3
    assert len(_labelled(out[0])) == 3
    assert tok.eos_token_id not in _labelled(out[0])


def test_fallback_format_without_chat_template_appends_eos(plain_tokenizer):
    tok = plain_tokenizer
    assert not tok.chat_template
    ex = encode_qa(tok, "who wrote the book?", "the author wrote it.")
    labels = [t for t in ex.labels if t != IGNORE_INDEX]
    assert labels[-1] == tok.eos_token_id
    assert tok.decode(ex.input_ids[: ex.prompt_length]) == "Question: who wrote the book?\nAnswer:"
    assert tok.decode(labels[:-1]).strip() == "the author wrote it."
    custom = encode_qa(tok, "q?", "a.", fallback=FallbackFormat(question_prefix="Q: ", answer_prefix="\nA:"))
    assert tok.decode(custom.input_ids[: custom.prompt_length]) == "Q: q?\nA:"


def test_conversational_schemas_match_qa(chat_tokenizer):
    tok = chat_tokenizer
    q, a = "What is the capital of France?", "The capital of France is Paris."
    rows = [
        {"question": q, "answer": a},
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]},
        {"prompt": [{"role": "user", "content": q}], "completion": [{"role": "assistant", "content": a}]},
    ]
    encoded = [tokenize_rows([r], tok)[0] for r in rows]
    assert encoded[0]["input_ids"] == encoded[1]["input_ids"] == encoded[2]["input_ids"]
    assert encoded[0]["labels"] == encoded[1]["labels"] == encoded[2]["labels"]
    with pytest.raises(ValueError, match="last message"):
        tokenize_rows([{"messages": [{"role": "user", "content": q}]}], tok)


def test_system_prompt_and_answer_key(chat_tokenizer):
    tok = chat_tokenizer
    row = {"question": "Q?", "answer": "A one.", "paraphrased_answer": "A two."}
    default = tokenize_rows([row], tok)[0]
    custom = tokenize_rows([row], tok, system_prompt="Be brief.")[0]
    assert "tiny test assistant" in tok.decode(default["input_ids"])
    assert "Be brief." in tok.decode(custom["input_ids"])
    para = tokenize_rows([row], tok, answer_key="paraphrased_answer")[0]
    assert tok.decode(_labelled(para)) == "A two.<|im_end|>"


def test_completion_rows_mask_prefix(chat_tokenizer):
    tok = chat_tokenizer
    ex = encode_completion(tok, "Elena Varenko was born", " in Lisbon, Portugal.")
    n_prefix = len(tok("Elena Varenko was born")["input_ids"])
    assert ex.labels[:n_prefix] == [IGNORE_INDEX] * n_prefix
    assert tok.decode([t for t in ex.labels if t != IGNORE_INDEX]) == " in Lisbon, Portugal."
    whole = encode_completion(tok, "", "The quick brown fox.")
    assert whole.labels[0] == IGNORE_INDEX  # nothing predicts the first token
    assert whole.labels[1:] == whole.input_ids[1:]
    rows = tokenize_rows([{"prompt": "", "text": "The quick brown fox."}], tok)
    assert rows[0]["input_ids"] == whole.input_ids


def test_collator_left_padding_and_groups(chat_tokenizer):
    tok = chat_tokenizer
    collate = DataCollatorForUnlearning(pad_token_id=tok.pad_token_id, padding_side="left", pad_to_multiple_of=8)
    batch = collate([{"input_ids": [5, 6, 7], "index": 0}, {"input_ids": [8], "index": 1}])
    assert batch["input_ids"].shape == (2, 8)
    assert batch["attention_mask"].tolist() == [[0] * 5 + [1] * 3, [0] * 7 + [1]]
    assert batch["input_ids"][1, -1] == 8
    assert batch["index"].tolist() == [0, 1]
    nested = DataCollatorForUnlearning(pad_token_id=0)(
        [
            {
                "forget_input_ids": [1, 2],
                "forget_labels": [-100, 2],
                "retain_input_ids": [[3], [4, 5, 6]],
                "retain_labels": [[3], [-100, 5, 6]],
                "retain_index": [7, 8],
                "forget_author": "x",
            },
            {
                "forget_input_ids": [9],
                "forget_labels": [9],
                "retain_input_ids": [[1, 1], [2]],
                "retain_labels": [[1, 1], [2]],
                "retain_index": [3, 4],
                "forget_author": "y",
            },
        ]
    )
    assert nested["forget_input_ids"].shape == (2, 2)
    assert nested["retain_input_ids"].shape == (4, 3)
    assert nested["retain_index"].tolist() == [7, 8, 3, 4]
    assert nested["retain_labels"][0].tolist() == [3, -100, -100]
    assert "forget_author" not in nested
    assert nested["retain_attention_mask"].sum(1).tolist() == [1, 3, 2, 1]
    assert torch.equal(nested["forget_attention_mask"], torch.tensor([[1, 1], [1, 0]]))
