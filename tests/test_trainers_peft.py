"""LoRA and 4-bit QLoRA (on CPU, with the bitsandbytes repacking fix) for every output-level method."""

import pytest
import torch
from peft import LoraConfig

from hf_unlearn import build_fictitious_authors, load_model
from hf_unlearn.objective import requirements
from hf_unlearn.trainers import (
    CEUConfig,
    CEUTrainer,
    GradAscentConfig,
    GradAscentTrainer,
    GradDiffConfig,
    GradDiffTrainer,
    IdkDPOConfig,
    IdkDPOTrainer,
    IdkSFTConfig,
    IdkSFTTrainer,
    NPOConfig,
    NPOTrainer,
    PDUConfig,
    PDUTrainer,
    SatImpConfig,
    SatImpTrainer,
    SimNPOConfig,
    SimNPOTrainer,
    UNDIALConfig,
    UNDIALTrainer,
    WGAConfig,
    WGATrainer,
)

METHODS = [
    (GradAscentTrainer, GradAscentConfig),
    (GradDiffTrainer, GradDiffConfig),
    (NPOTrainer, NPOConfig),
    (SimNPOTrainer, SimNPOConfig),
    (IdkSFTTrainer, IdkSFTConfig),
    (IdkDPOTrainer, IdkDPOConfig),
    (UNDIALTrainer, UNDIALConfig),
    (WGATrainer, WGAConfig),
    (SatImpTrainer, SatImpConfig),
    (CEUTrainer, CEUConfig),
    (PDUTrainer, PDUConfig),
]


@pytest.fixture(scope="module")
def bench():
    return build_fictitious_authors(num_authors=10, qa_per_author=2, seed=2)


def _lora(**kw):
    return LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], **kw)


def _make(cls, cfg, model, tok, bench, tmp_path, **kw):
    args = cfg(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=2,
        max_steps=2,
        report_to=[],
        save_strategy="no",
        learning_rate=1e-2,
        warmup_steps=0,
        logging_steps=1,
        **kw,
    )
    retain = bench["retain"] if requirements(cls.objectives_for(args)).retain else None
    return cls(
        model,
        args=args,
        forget_dataset=bench["forget"],
        retain_dataset=retain,
        processing_class=tok,
        peft_config=_lora(),
    )


@pytest.mark.parametrize("quantized", [False, True], ids=["lora", "qlora"])
@pytest.mark.parametrize("cls,cfg", METHODS, ids=[m[0].__name__ for m in METHODS])
def test_every_method_trains_an_adapter(cls, cfg, quantized, tiny_model_dir, bench, tmp_path):
    pytest.importorskip("bitsandbytes")
    model, tok = load_model(tiny_model_dir, load_in_4bit=quantized)
    trainer = _make(cls, cfg, model, tok, bench, tmp_path)
    assert trainer.ref_model is None  # the reference, where needed, is the model with its adapter disabled
    trainable = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    frozen = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if not p.requires_grad}
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(trainable[n], after[n].detach()) for n in trainable if "lora_B" in n)
    assert all(torch.equal(frozen[n], after[n].detach()) for n in frozen)


def _lora_grads(trainer, batch):
    trainer.model.zero_grad()
    trainer.compute_loss(trainer.model, batch).backward()
    return {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}


def test_qlora_gradients_match_a_dequantised_reference(tiny_model_dir, bench, tmp_path):
    bnb = pytest.importorskip("bitsandbytes")
    torch.manual_seed(0)
    qmodel, tok = load_model(tiny_model_dir, load_in_4bit=True)
    q = NPOTrainer(
        qmodel,
        args=NPOConfig(
            output_dir=str(tmp_path / "q"), per_device_train_batch_size=4, report_to=[], precompute_ref_log_probs=False
        ),
        peft_config=_lora(init_lora_weights=False),
        forget_dataset=bench["forget"],
        retain_dataset=bench["retain"],
        processing_class=tok,
    )
    # TRL keeps QLoRA adapters in bf16; use fp32 here so the comparison isolates the 4-bit path.
    for p in q.model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    batch = {k: v.to(q.args.device) for k, v in next(iter(q.get_train_dataloader())).items()}
    q.model.eval()
    with torch.no_grad():  # the trigger of the CPU repacking trap: an eval-mode, no-grad forward before training
        q.model(input_ids=batch["forget_input_ids"])
    q.model.train()
    q_grads = _lora_grads(q, batch)

    # Reference: the same network with the dequantised 4-bit weights in ordinary float Linear layers.
    fmodel, _ = load_model(tiny_model_dir)
    qbase = dict(q.model.get_base_model().named_modules())
    for name, module in fmodel.named_modules():
        src = qbase.get(name)
        src = getattr(src, "base_layer", src)
        if isinstance(src, bnb.nn.Linear4bit):
            module.weight.data = bnb.functional.dequantize_4bit(src.weight.data, src.weight.quant_state).float()
    f = NPOTrainer(
        fmodel,
        args=NPOConfig(
            output_dir=str(tmp_path / "f"), per_device_train_batch_size=4, report_to=[], precompute_ref_log_probs=False
        ),
        peft_config=_lora(),
        forget_dataset=bench["forget"],
        retain_dataset=bench["retain"],
        processing_class=tok,
    )
    qparams = dict(q.model.named_parameters())
    with torch.no_grad():
        for n, p in f.model.named_parameters():
            if p.requires_grad:
                p.copy_(qparams[n])
    f.model.train()
    f_grads = _lora_grads(f, batch)
    assert q_grads.keys() == f_grads.keys() and len(q_grads) == 2 * 3 * 2  # A and B, 3 modules, 2 layers
    for n in q_grads:
        assert q_grads[n].abs().sum() > 0, n
        torch.testing.assert_close(q_grads[n], f_grads[n], rtol=1e-3, atol=1e-5, msg=n)
