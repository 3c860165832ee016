"""The objective protocol: a third-party objective written only against the public API trains beside NPO and RMU;
setup validation is a function of the objective list; the registry; and the layering rules of the package."""

import ast
from pathlib import Path

import pytest
import torch
import yaml

import hf_unlearn
from hf_unlearn import LossTerm, UnlearningObjective, build_fictitious_authors, check_objectives, requirements
from hf_unlearn.callbacks import RMUCallback
from hf_unlearn.registry import CALLBACKS, METHODS, get_method, make_callback
from hf_unlearn.trainers import NPOConfig, NPOObjective, NPOTrainer, RetainKL, RetainNLL

from .conftest import SHORT_RUN, first_batch, make_tiny_llama

PACKAGE = Path(hf_unlearn.__file__).parent
ROOT = PACKAGE.parent


@pytest.fixture(scope="module")
def bench():
    return build_fictitious_authors(num_authors=10, qa_per_author=4, seed=5)


class LengthWeightedAscent(UnlearningObjective):
    """A third-party objective using only the public protocol: a per-row weight column added in ``prepare`` and
    gradient ascent on the forget answers weighted by it."""

    name = "weighted_ascent"
    logp_groups = ("forget",)

    def __init__(self, coeff: float) -> None:
        self.coeff = coeff
        self.seen_steps: list[int] = []

    def prepare(self, ctx):
        return {"weight": [1.0 / sum(t != -100 for t in labels) for labels in ctx.forget["labels"]]}

    def loss_terms(self, batch, ctx):
        self.seen_steps.append(ctx.step)
        forget = ctx.logps["forget"]
        total = self.coeff * (batch["forget_weight"].to(forget.logps) * forget.logps).sum()
        return {"weighted_ascent": LossTerm(total, "forget", "rows")}, {
            "weighted_ascent/mean_logp": forget.logps.mean()
        }


def _npo_rmu(tok, bench, tmp_path, objectives, **over):
    args = dict(output_dir=str(tmp_path), **SHORT_RUN)
    return NPOTrainer(
        make_tiny_llama(tok, layers=3),
        args=NPOConfig(**{**args, **over}),
        forget_dataset=bench["forget"],
        retain_dataset=bench["retain"],
        processing_class=tok,
        callbacks=[RMUCallback(layer=1, steering_coeff=2.0, alpha=3.0)],
        objectives=objectives,
    )


def test_third_party_objective_trains_beside_npo_and_rmu(chat_tokenizer, bench, tmp_path):
    extra = LengthWeightedAscent(0.5)
    tr = _npo_rmu(chat_tokenizer, bench, tmp_path, [extra])
    assert [type(o).__name__ for o in tr.objectives] == [
        "NPOObjective",
        "RetainNLL",
        "LengthWeightedAscent",
        "RMUCallback",
    ]
    assert "weight" in tr.forget_dataset.column_names and "ref_logps" in tr.forget_dataset.column_names
    batch = first_batch(tr)
    tr.model.train()
    with torch.no_grad():
        loss = tr.compute_loss(tr.model, batch)
    logged = {k.removeprefix("loss/"): v[-1] for k, v in tr._metrics["train"].items() if k.startswith("loss/")}
    assert set(logged) == {"forget", "retain", "weighted_ascent", "rmu_forget", "rmu_retain"}
    assert float(loss) == pytest.approx(sum(logged.values()), rel=1e-5)  # one batch = its own window
    # The term is the formula on this batch: 0.5 * mean_rows(weight * log p(answer)).
    ids, labels = batch["forget_input_ids"], batch["forget_labels"]
    with torch.no_grad():
        logits = tr.model(input_ids=ids, attention_mask=batch["forget_attention_mask"]).logits[:, :-1].float()
    token = torch.log_softmax(logits, -1).gather(-1, labels[:, 1:].clamp(min=0)[..., None])[..., 0]
    logp = (token * (labels[:, 1:] != -100)).sum(-1)
    expected = 0.5 * (batch["forget_weight"] * logp).sum() / len(logp)
    assert logged["weighted_ascent"] == pytest.approx(float(expected), rel=1e-4)
    before = {n: p.detach().clone() for n, p in tr.model.named_parameters()}
    tr.train()
    assert extra.seen_steps[-3:] == [1, 2, 3]
    assert any(not torch.equal(before[n], p) for n, p in tr.model.named_parameters())
    assert all(f"loss/{t}" in h for h in tr.state.log_history[:3] for t in ("weighted_ascent", "rmu_forget", "forget"))


def test_setup_validation_is_a_function_of_the_objectives(chat_tokenizer, bench, tmp_path):
    class NeedsRetain(LengthWeightedAscent):
        needs_retain = True

    npo = NPOObjective()
    assert requirements([npo]).reference and not requirements([npo]).retain
    kl = requirements([npo, RetainKL()])
    assert kl.retain and kl.live_reference and kl.logits_groups == ("retain",)
    assert requirements([npo, RetainNLL()]).forward_groups == ("forget", "retain")
    with pytest.raises(ValueError, match="NeedsRetain needs retain_dataset"):
        check_objectives([NeedsRetain(1.0)], has_retain=False, has_ref_model=False, peft=False, precompute=True)
    with pytest.raises(ValueError, match="would be ignored"):
        check_objectives([npo], has_retain=True, has_ref_model=False, peft=False, precompute=True)
    with pytest.raises(ValueError, match="uses no reference model"):
        check_objectives([LengthWeightedAscent(1.0)], has_retain=False, has_ref_model=True, peft=False, precompute=True)
    with pytest.raises(ValueError, match="cannot be precomputed"):
        check_objectives([RetainKL()], has_retain=True, has_ref_model=False, peft=False, precompute=True)
    # The trainer asks the same function: NPO without a retain term plus a retain-reading objective needs retain rows.
    with pytest.raises(ValueError, match="NeedsRetain needs retain_dataset"):
        NPOTrainer(
            make_tiny_llama(chat_tokenizer),
            args=NPOConfig(output_dir=str(tmp_path), retain_loss_type="none", report_to=[]),
            forget_dataset=bench["forget"],
            processing_class=chat_tokenizer,
            objectives=[NeedsRetain(1.0)],
        )


def test_objective_columns_must_fit_the_forget_table(chat_tokenizer, bench, tmp_path):
    class Short(LengthWeightedAscent):
        def prepare(self, ctx):
            return {"weight": [1.0]}

    with pytest.raises(ValueError, match="one per tokenised forget row"):
        _npo_rmu(chat_tokenizer, bench, tmp_path, [Short(1.0)])


def test_registry_names_every_method_with_its_classes_and_recipe():
    for name, spec in METHODS.items():
        assert getattr(hf_unlearn, spec.config_class.__name__) is spec.config_class
        assert getattr(hf_unlearn, spec.trainer_class.__name__) is spec.trainer_class
        assert spec.trainer_class.config_class is spec.config_class
        assert yaml.safe_load(spec.recipe_path.read_text())["method"] == name
    with pytest.raises(ValueError, match="Unknown method 'npx'; choose one of grad_ascent"):
        get_method("npx")
    assert type(make_callback("rmu", 3)) is RMUCallback and make_callback("rmu", 3).layer == 3
    # Guards the recipe's masks: on QA, steering the chat template's prefix would fight the retain term.
    assert make_callback("rmu", 3).token_mask == "labels" and make_callback("adaptive_rmu", 3).token_mask == "labels"
    assert make_callback("rmu", 3, qa=False).token_mask == "attention"
    assert set(CALLBACKS) == {"rmu", "adaptive_rmu", "attention_shifting"}
    with pytest.raises(ValueError, match="Unknown callbacks"):
        make_callback("rmx", 3)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


TRAINING = [
    *sorted((PACKAGE / "trainers").glob("*.py")),
    PACKAGE / "objective.py",
    PACKAGE / "logprobs.py",
    PACKAGE / "layers.py",
    PACKAGE / "callbacks" / "base.py",
    PACKAGE / "callbacks" / "rmu.py",
    PACKAGE / "callbacks" / "attention_shifting.py",
]


@pytest.mark.parametrize("path", TRAINING, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_training_code_does_not_import_evaluation_or_trainers_upward(path):
    for module in _imports(path):
        assert "evaluation" not in module.split("."), f"{path.name} imports {module}"
        if path.parent.name == "callbacks":
            assert "trainers" not in module.split("."), f"{path.name} imports {module}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "callbacks").glob("*.py")), ids=lambda p: p.name)
def test_callbacks_touch_no_private_attribute_of_the_trainer_or_context(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        owner = node.value
        name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
        assert name not in ("trainer", "ctx"), f"{path.name}: {name}.{node.attr}"


def _declaring(**declared):
    """An objective that declares exactly ``declared`` (class attributes of the protocol)."""
    return type("Declaring", (UnlearningObjective,), {"loss_terms": lambda self, batch, ctx: ({}, {}), **declared})()


@pytest.mark.parametrize(
    "declared,kind,stop",
    [
        ({"logp_groups": ("forget",)}, "labels", None),
        ({"label_logits_groups": ("forget",)}, "labels", None),  # once a crash on max() of no hooked layer
        ({"logits_groups": ("retain",)}, "labels", None),
        ({"logp_groups": ("forget",), "activation_groups": ("retain",), "hooked_layers": (1,)}, "labels", None),
        ({"activation_groups": ("forget", "retain"), "hooked_layers": (1, 3)}, "truncated", 3),
        ({}, "none", None),
    ],
)
def test_one_rule_decides_the_forward(declared, kind, stop):
    from hf_unlearn.objective import forward_plan

    plan = forward_plan([_declaring(**declared)])
    assert (plan.kind, plan.stop_after) == (kind, stop)
    expected = [
        g
        for key in ("logp_groups", "logits_groups", "label_logits_groups", "activation_groups")
        for g in declared.get(key, ())
    ]
    assert list(plan.groups) == (list(dict.fromkeys(expected)) if kind != "none" else [])


def test_rows_run_for_nothing_are_refused():
    with pytest.raises(ValueError, match="declare activation_groups but hook no layer"):
        check_objectives(
            [_declaring(activation_groups=("forget",))],
            has_retain=False,
            has_ref_model=False,
            peft=False,
            precompute=True,
        )


def test_a_new_method_in_one_short_file_trains_through_the_registry_and_the_recipe(
    tmp_path, tiny_model_dir, monkeypatch
):
    """ "Adding a method" (docs/concepts/protocol.md): tests/example_method.py (ME, arXiv:2410.08109) is under 80
    lines and, with one registry line, trains through the recipe; its term equals KL(uniform || p) averaged over the
    answer tokens."""
    from hf_unlearn.registry import MethodSpec
    from hf_unlearn.scripts.unlearn import main as recipe

    from . import example_method as ex

    source = Path(ex.__file__).read_text()
    assert len(source.splitlines()) <= 80
    monkeypatch.setitem(METHODS, "me", MethodSpec("me", "MaxEntropy", "tests.example_method", "tofu/grad_diff.yaml"))
    cfg = tmp_path / "me.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "method": "me",
                "dataset_name": "fictitious-authors",
                "num_authors": 10,
                "qa_per_author": 2,
                "model_name_or_path": str(tiny_model_dir),
                "output_dir": str(tmp_path / "run"),
                "per_device_train_batch_size": 2,
                "max_steps": 2,
                "learning_rate": 1e-3,
                "report_to": [],
                "save_strategy": "no",
                "evaluate": False,
            }
        )
    )
    recipe(["--config", str(cfg)])
    card = (tmp_path / "run" / "README.md").read_text()
    assert "method: ME" in card and "2410.08109" in card
    # The term, against its formula on one batch of a fresh trainer.
    bench = build_fictitious_authors(num_authors=10, qa_per_author=2)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = ex.MaxEntropyTrainer(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        args=ex.MaxEntropyConfig(output_dir=str(tmp_path / "t"), per_device_train_batch_size=2, report_to=[]),
        forget_dataset=bench["forget"],
        retain_dataset=bench["retain"],
        processing_class=tok,
    )
    batch = first_batch(trainer)
    trainer.model.train()  # metrics of a training step
    trainer.compute_loss(trainer.model, batch)
    logits = trainer.model(input_ids=batch["forget_input_ids"], attention_mask=batch["forget_attention_mask"]).logits
    select = batch["forget_labels"][:, 1:] != -100
    logp = torch.log_softmax(logits[:, :-1][select].float(), -1)
    expected = (-torch.log(torch.tensor(float(logp.shape[-1]))) - logp.mean(-1)).mean()
    assert trainer._metrics["train"]["loss/forget"][-1] == pytest.approx(float(expected), rel=1e-4)
