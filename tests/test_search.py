"""Settings search: the documented objective, one trainer per trial from the same starting weights, pruning, the best
trial's weights kept, the card, and refusals."""

import pytest
import torch

optuna = pytest.importorskip("optuna")  # installed by `make install` (the `search` extra)

from hf_unlearn import NPOConfig, NPOTrainer, build_fictitious_authors  # noqa: E402
from hf_unlearn.search import SearchObjective, default_hp_space, search_objective, search_settings  # noqa: E402

from .conftest import make_tiny_llama  # noqa: E402


@pytest.fixture(scope="module")
def bench():
    return build_fictitious_authors(num_authors=20)


def test_objective_formula():
    # |d| + w * (max(0, 1 - p/p0) for retain and general); a missing set or a gain contributes 0
    assert search_objective(-0.2) == pytest.approx(0.2)
    j = search_objective(
        0.1, retain_prob=0.3, retain_prob_before=0.6, general_prob=0.8, general_prob_before=0.5, utility_weight=2.0
    )
    assert j == pytest.approx(0.1 + 2.0 * (0.5 + 0.0))
    j = search_objective(0.05, retain_prob=0.45, retain_prob_before=0.5, general_prob=0.3, general_prob_before=0.4)
    assert j == pytest.approx(0.05 + 0.1 + 0.25)
    assert search_objective(0.05, retain_prob=0.1, retain_prob_before=None) == pytest.approx(0.05)


def _trainer(tok, bench, tmp_path, *, seed=0, **overrides):
    from peft import LoraConfig

    args = NPOConfig(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=2,
        max_steps=4,
        report_to=[],
        save_strategy="no",
        learning_rate=5e-3,
        warmup_steps=0,
        logging_steps=1,
        **overrides,
    )
    return NPOTrainer(
        make_tiny_llama(tok, seed=seed),
        args=args,
        forget_dataset=bench["forget"][:8],
        retain_dataset=bench["retain"][:16],
        processing_class=tok,
        peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )


def _data(bench):
    return {"nonmember_dataset": bench["holdout"][:8], "general_dataset": bench["general_knowledge"][:6]}


class PruneOdd(optuna.pruners.BasePruner):
    """Prunes odd-numbered trials at their first report."""

    def prune(self, study, trial):
        return trial.number % 2 == 1


def test_search_runs_trials_from_the_same_start_and_keeps_the_best(chat_tokenizer, bench, tmp_path):
    trainer = _trainer(chat_tokenizer, bench, tmp_path)
    model = trainer.accelerator.unwrap_model(trainer.model)
    start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    seen = []

    def space(trial):  # three clearly different learning rates; every trial must begin at the starting weights
        now = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        seen.append(all(torch.equal(now[n], start[n]) for n in start))
        return {"learning_rate": [1e-4, 2e-2, 5e-3][trial.number], "beta": 0.2}

    with pytest.warns(UserWarning, match="non-member"):  # 8 vs 8 rows: the AUC is noisy, and the user is told so
        best = trainer.hyperparameter_search(
            hp_space=space,
            n_trials=3,
            pruner=PruneOdd(),
            every_n_steps=2,
            utility_weight=0.5,
            progress=False,
            **_data(bench),
        )
    result = best.run_summary
    assert seen == [True, True, True]
    assert [t["state"] for t in result.trials] == ["complete", "pruned", "complete"]
    assert result.trials[1]["steps"] == 2  # pruned at its first report
    assert [h["step"] for h in result.trials[0]["history"]] == [2, 4]
    complete = {t["trial"]: t["value"] for t in result.trials if t["state"] == "complete"}
    assert best.run_id == str(min(complete, key=complete.get)) and best.objective == min(complete.values())
    assert best.hyperparameters["beta"] == 0.2 and result.trainer.args.beta == 0.2  # non-lr settings reach the config
    assert result.trainer.args.learning_rate == best.hyperparameters["learning_rate"]
    # The model holds the best trial's weights: measuring it again gives the best value, from the formula.
    again = SearchObjective(
        chat_tokenizer,
        forget=bench["forget"][:8],
        nonmember=bench["holdout"][:8],
        retain=bench["retain"][:16],
        general=bench["general_knowledge"][:6],
        utility_weight=0.5,
    )
    again.before = result.baseline
    m = again.measure(model)
    assert m["objective"] == pytest.approx(best.objective, abs=1e-5)
    assert m["objective"] == pytest.approx(
        abs(m["auc"] - 0.5) + 0.5 * (max(0, 1 - m["retain_prob"] / result.baseline["retain_prob"]) + m["general_drop"]),
        abs=1e-6,
    )
    # The best trainer saves the best model, with a card naming the search (passed in), into the original folder.
    result.trainer.save_model(str(tmp_path / "best"))
    result.trainer.create_model_card(search=result)
    card = (tmp_path / "run" / "README.md").read_text()
    assert "settings_search" in card and "3 trials (1 pruned, 0 failed)" in card
    result.save(tmp_path / "search.json")
    saved = (tmp_path / "search.json").read_text()
    assert '"best_params"' in saved and bench["forget"][0]["question"] not in saved  # no forget-set content


def test_search_without_keep_best_restores_the_start_and_refuses_bad_input(chat_tokenizer, bench, tmp_path):
    trainer = _trainer(chat_tokenizer, bench, tmp_path)
    model = trainer.accelerator.unwrap_model(trainer.model)
    start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    result = search_settings(
        trainer,
        hp_space=lambda t: {"learning_rate": 1e-2},
        n_trials=1,
        keep_best=False,
        metric="prob",
        progress=False,
        **_data(bench),
    )
    assert result.trials[0]["state"] == "complete"
    assert all(torch.equal(p, start[n]) for n, p in model.named_parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="not fields of NPOConfig"):
        search_settings(trainer, hp_space=lambda t: {"learnin_rate": 1e-3}, n_trials=1, metric="prob", **_data(bench))
    with pytest.raises(ValueError, match="no callback RMUCallback"):
        search_settings(trainer, hp_space=lambda t: {"RMUCallback.alpha": 2.0}, n_trials=1, **_data(bench))
    with pytest.raises(ValueError, match="share a question with the forget set"):
        search_settings(trainer, nonmember_dataset=bench["forget"][:4], n_trials=1, metric="prob")
    with pytest.raises(TypeError, match="nonmember_dataset"):
        trainer.hyperparameter_search(n_trials=1)
    with pytest.raises(ValueError, match="optuna"):
        trainer.hyperparameter_search(n_trials=1, backend="ray", **_data(bench))
    trainer.train()
    with pytest.raises(ValueError, match="already trained"):
        search_settings(trainer, n_trials=1, metric="prob", **_data(bench))


def test_all_trials_pruned_is_an_error_and_the_start_is_restored(chat_tokenizer, bench, tmp_path):
    trainer = _trainer(chat_tokenizer, bench, tmp_path)
    model = trainer.accelerator.unwrap_model(trainer.model)
    start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    with pytest.raises(RuntimeError, match="No trial of the search completed"):
        search_settings(
            trainer,
            n_trials=2,
            every_n_steps=1,
            pruner=optuna.pruners.ThresholdPruner(upper=-1.0),  # every report is above the bound
            metric="prob",
            progress=False,
            **_data(bench),
        )
    assert all(torch.equal(p, start[n]) for n, p in model.named_parameters() if p.requires_grad)


def test_default_space_covers_the_methods_own_strength(chat_tokenizer, bench, tmp_path):
    trainer = _trainer(chat_tokenizer, bench, tmp_path, beta=0.2, retain_coeff=2.0)
    trial = optuna.trial.FixedTrial({"learning_rate": 1e-3, "beta": 0.1, "retain_coeff": 1.0})
    assert default_hp_space(trainer)(trial) == {"learning_rate": 1e-3, "beta": 0.1, "retain_coeff": 1.0}
    # The ranges: a quarter to four times the configured value.
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        params = default_hp_space(trainer)(study.ask())
        assert 5e-3 / 4 <= params["learning_rate"] <= 5e-3 * 4
        assert 0.05 <= params["beta"] <= 0.8 and 0.5 <= params["retain_coeff"] <= 8.0
