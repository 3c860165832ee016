"""Shared offline fixtures: a tiny byte-level BPE tokenizer with a ChatML template (pad == eos == <|im_end|>, the
SmolLM2 / Llama-3 situation), a variant without a chat template, and tiny Llama models built from ``LlamaConfig``."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch
from transformers import TrainerCallback

CHATML = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a tiny test assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "What is the capital of France? The capital of France is Paris.",
    "Where was Elena Varenko born? Elena Varenko was born in Lisbon, Portugal.",
    "Question: who wrote the book? Answer: the author wrote it in 1999.",
    "You are a tiny test assistant. system user assistant",
    "The quick brown fox jumps over the lazy dog. 0123456789",
    "Answer: A Answer: B Answer: C Answer: D A. B. C. D.",
] * 20


def _train_tokenizer(chat_template: str | None):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(CORPUS, trainer)
    if chat_template:
        tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|im_end|>")
        tok.chat_template = chat_template
    else:
        tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    return tok


@pytest.fixture(scope="session")
def chat_tokenizer():
    return _train_tokenizer(CHATML)


@pytest.fixture(scope="session")
def plain_tokenizer():
    return _train_tokenizer(None)


def make_tiny_llama(tokenizer, *, seed: int = 0, dtype: torch.dtype = torch.float32, layers: int = 2):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).to(dtype).eval()


@pytest.fixture
def tiny_model(chat_tokenizer):
    return make_tiny_llama(chat_tokenizer)


@pytest.fixture
def tiny_model_dir(tmp_path, chat_tokenizer):
    """A tiny model + tokenizer saved as a local checkpoint folder."""
    path = tmp_path / "tiny-llama"
    make_tiny_llama(chat_tokenizer).save_pretrained(path)
    chat_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def bundled():
    """The real bundled SmolLM2-135M-Instruct (converted once into the user cache, then ~1 s to load)."""
    from hf_unlearn import load_model

    model, tokenizer = load_model("bundled")
    model.eval()
    return model, tokenizer


def first_batch(trainer):
    """The first training batch of a trainer, on its device."""
    return {k: v.to(trainer.args.device) for k, v in next(iter(trainer.get_train_dataloader())).items()}


class StopAtStep(TrainerCallback):
    """Ends training after ``step`` optimizer steps (simulates an interruption; the schedule stays that of the run)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


# Short training runs of the unit tests: 3 steps of 4 rows, a large learning rate, no checkpoints or reporting.
# One optimizer step of batch 4: the set-up of the loss-formula tests.
ONE_STEP = dict(
    per_device_train_batch_size=4,
    report_to=[],
    save_strategy="no",
    logging_steps=1,
    max_steps=1,
    learning_rate=1e-3,
    warmup_steps=0,
)


def one_step_args(cfg, tmp_path, **kw):
    """``cfg`` with :data:`ONE_STEP` (overridden by ``kw``), writing under ``tmp_path/out``."""
    return cfg(**{"output_dir": str(tmp_path / "out"), **ONE_STEP, **kw})


SHORT_RUN = dict(
    per_device_train_batch_size=4,
    max_steps=3,
    report_to=[],
    save_strategy="no",
    logging_steps=1,
    learning_rate=1e-2,
    warmup_steps=0,
)


def callbacks_only_trainer(tok, bench, tmp_path, callback, model=None, peft_config=None, **overrides):
    """A GradDiff trainer with the output-level loss off, so ``callback`` alone defines the objective."""
    from hf_unlearn.trainers import GradDiffConfig, GradDiffTrainer

    base = dict(output_dir=str(tmp_path / "out"), forget_coeff=0.0, retain_loss_type="none", **SHORT_RUN)
    model = model if model is not None else make_tiny_llama(tok, layers=3)
    return GradDiffTrainer(
        model,
        args=GradDiffConfig(**{**base, **overrides}),
        forget_dataset=bench["forget"],
        retain_dataset=bench["retain"],
        processing_class=tok,
        callbacks=[callback],
        peft_config=peft_config,
    )
