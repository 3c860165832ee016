"""ForgetTargetCallback: stops where the forget set reaches the non-member level, restores the closest evaluation's
weights after an overshoot, measures with the evaluation's scoring path, and refuses non-members that are not."""

import math

import pytest
import torch

from hf_unlearn import ForgetTargetCallback, NPOConfig, NPOTrainer, build_fictitious_authors
from hf_unlearn.callbacks import nonmembers_needed

from .conftest import make_tiny_llama


@pytest.fixture(scope="module")
def bench():
    return build_fictitious_authors(num_authors=20)  # 20 forget and 20 holdout rows


class Planted(ForgetTargetCallback):
    """Distances from a list instead of the model (one per evaluation)."""

    def __init__(self, *args, curve, **kwargs):
        super().__init__(*args, **kwargs)
        self.curve = list(curve)

    def measure(self, model):
        d = self.curve.pop(0)
        return {"forget_prob": 0.5, "nonmember_prob": 0.4, "auc": 0.5 + d, "distance": d}


class Snapshots:
    """Trainable weights after every optimizer step."""

    def __init__(self):
        self.by_step = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.by_step[state.global_step] = {n: p.detach().clone() for n, p in model.named_parameters()}

    def __getattr__(self, name):  # the other TrainerCallback events: nothing to do
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)


def _train(tok, bench, tmp_path, callbacks, max_steps=20, model=None):
    args = NPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        max_steps=max_steps,
        report_to=[],
        save_strategy="no",
        learning_rate=1e-2,
        warmup_steps=0,
        logging_steps=1,
    )
    trainer = NPOTrainer(
        model if model is not None else make_tiny_llama(tok),
        args=args,
        forget_dataset=bench["forget"],
        retain_dataset=bench["retain"],
        processing_class=tok,
        callbacks=callbacks,
    )
    trainer.train()
    return trainer


def _rows(bench, metric="prob"):
    """12 forget and 12 non-member rows; planted curves use the probability distance (no AUC-spread warning)."""
    return {"forget": bench["forget"][:12], "nonmember": bench["holdout"][:12], "metric": metric}


def test_stops_at_the_step_the_planted_curve_reaches_the_target(chat_tokenizer, bench, tmp_path):
    cb = Planted(chat_tokenizer, **_rows(bench), every_n_steps=2, curve=[0.45, 0.3, 0.15, 0.05, 0.0, 0.0])
    trainer = _train(chat_tokenizer, bench, tmp_path, [cb])
    assert trainer.state.global_step == 6  # evaluations at 0, 2, 4, 6; |d| = 0.05 <= 0.1 at step 6
    logged = [h["step"] for h in trainer.state.log_history if "calibration/distance" in h]
    assert logged == [0, 2, 4, 6]
    # The callback logs at the Trainer's logging steps without swallowing the Trainer's own loss log of that step.
    assert [h["step"] for h in trainer.state.log_history if "loss" in h] == [1, 2, 3, 4, 5, 6]
    summary = cb.summary
    assert summary["stopped"] == "reached" and summary["best_step"] == 6 and summary["restored_step"] is None
    assert summary["evaluations"] == 4 and cb.curve == [0.0, 0.0]  # no evaluation after the stop


def test_overshoot_restores_the_closest_evaluation(chat_tokenizer, bench, tmp_path):
    cb = Planted(chat_tokenizer, **_rows(bench), every_n_steps=2, curve=[0.45, 0.12, -0.3], refine_overshoot=False)
    snaps = Snapshots()
    trainer = _train(chat_tokenizer, bench, tmp_path, [snaps, cb])
    assert trainer.state.global_step == 4 and cb.stopped == "overshot"
    assert cb.summary["best_step"] == 2 and cb.summary["restored_step"] == 2
    final = dict(trainer.model.named_parameters())
    assert all(torch.equal(final[n], w) for n, w in snaps.by_step[2].items())
    assert any(not torch.equal(final[n], w) for n, w in snaps.by_step[4].items())  # training had moved on


class PlantedByStep(ForgetTargetCallback):
    """The distance of whichever step's weights the model holds (found among ``snaps``): ``curve[step]``."""

    def __init__(self, *args, curve, snaps, **kwargs):
        super().__init__(*args, **kwargs)
        self.curve, self.snaps, self.measured = curve, snaps, []

    def measure(self, model):
        now = dict(model.named_parameters())
        step = next(s for s, w in self.snaps.by_step.items() if all(torch.equal(now[n], v) for n, v in w.items()))
        self.measured.append(step)
        d = self.curve[step]
        return {"forget_prob": 0.5, "nonmember_prob": 0.4, "auc": 0.5 + d, "distance": d}


@pytest.mark.parametrize("end", ["stop", "end"])
def test_an_overshoot_is_bisected_back_to_the_crossing_step(chat_tokenizer, bench, tmp_path, end):
    """Evaluations every 4 steps; the target is crossed between steps 4 and 8 (at 7, |d| <= 0.1): two refined
    evaluations (steps 6, then 7) find it and its weights are restored. With ``end``, training ends at step 7 (not an
    evaluation step), the end-of-training evaluation overshoots and steps 5-6 are bisected."""
    curve = {0: 0.45, 1: 0.42, 2: 0.4, 3: 0.38, 4: 0.35, 5: 0.3, 6: 0.2, 7: 0.05, 8: -0.3}
    if end == "end":
        curve = {**curve, 6: 0.08, 7: -0.3}
    snaps = Snapshots()
    model = make_tiny_llama(chat_tokenizer)
    snaps.by_step[0] = {n: p.detach().clone() for n, p in model.named_parameters()}
    cb = PlantedByStep(chat_tokenizer, **_rows(bench), every_n_steps=4, curve=curve, snaps=snaps, refine_overshoot=True)
    trainer = _train(chat_tokenizer, bench, tmp_path, [snaps, cb], model=model, max_steps=20 if end == "stop" else 7)
    best = 7 if end == "stop" else 6
    assert cb.measured == ([0, 4, 8, 6, 7] if end == "stop" else [0, 4, 7, 5, 6])
    assert cb.summary["stopped"] == "reached" and cb.summary["refined_evaluations"] == 2
    assert cb.summary["best_step"] == cb.summary["restored_step"] == best
    final = dict(trainer.model.named_parameters())
    assert all(torch.equal(final[n], w) for n, w in snaps.by_step[best].items())
    refined = [h["calibration/evaluated_step"] for h in trainer.state.log_history if h.get("calibration/refined")]
    assert refined == ([6, 7] if end == "stop" else [5, 6])
    assert not cb._trail and cb._best_weights is None  # the kept copies are freed


def test_refinement_is_skipped_above_its_memory_budget(chat_tokenizer, bench, tmp_path):
    curve = {s: 0.45 - 0.1 * s for s in range(9)}
    snaps = Snapshots()
    model = make_tiny_llama(chat_tokenizer)
    snaps.by_step[0] = {n: p.detach().clone() for n, p in model.named_parameters()}
    cb = PlantedByStep(
        chat_tokenizer,
        **_rows(bench),
        every_n_steps=8,
        curve=curve,
        snaps=snaps,
        refine_overshoot=True,
        refine_max_mib=1e-3,
    )
    with pytest.warns(UserWarning, match="refine_max_mib"):
        _train(chat_tokenizer, bench, tmp_path, [snaps, cb], model=model)
    assert cb.summary["stopped"] == "overshot" and cb.summary["refined_evaluations"] == 0


def test_not_reached_keeps_the_final_weights(chat_tokenizer, bench, tmp_path):
    """The evaluation least far from a target never reached is no stopping point: the run's own weights are kept."""
    cb = Planted(chat_tokenizer, **_rows(bench), every_n_steps=2, curve=[0.45, 0.2, 0.3, 0.35])
    snaps = Snapshots()
    trainer = _train(chat_tokenizer, bench, tmp_path, [snaps, cb], max_steps=4)
    assert trainer.state.global_step == 4 and cb.summary["stopped"] == "not reached"
    assert cb.summary["best_step"] == 2 and cb.summary["restored_step"] is None
    final = dict(trainer.model.named_parameters())
    assert all(torch.equal(final[n], w) for n, w in snaps.by_step[4].items())


def test_already_at_the_target_keeps_the_initial_weights(chat_tokenizer, bench, tmp_path):
    cb = Planted(chat_tokenizer, **_rows(bench), every_n_steps=2, curve=[0.05])
    snaps = Snapshots()
    model = make_tiny_llama(chat_tokenizer)
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = _train(chat_tokenizer, bench, tmp_path, [snaps, cb], model=model)
    assert cb.summary["stopped"] == "reached" and cb.summary["best_step"] == 0
    assert trainer.state.global_step <= 1  # the Trainer checks the stop flag after a step
    final = dict(trainer.model.named_parameters())
    assert all(torch.equal(final[n], w) for n, w in initial.items())
    assert cb.summary["restored_step"] == (0 if trainer.state.global_step else None)


@pytest.mark.filterwarnings("ignore:With 12 forget and 12 non-member rows")
def test_measure_uses_the_attack_and_the_probabilities(chat_tokenizer, bench):
    from hf_unlearn import score_sequences, tokenize_rows
    from hf_unlearn.evaluation import metrics as M

    model = make_tiny_llama(chat_tokenizer)
    rows = _rows(bench)
    del rows["metric"]
    loss = ForgetTargetCallback(chat_tokenizer, **rows, metric="loss").measure(model)
    prob = ForgetTargetCallback(chat_tokenizer, **rows, metric="prob").measure(model)
    min_k = ForgetTargetCallback(chat_tokenizer, **rows).measure(model)
    f = score_sequences(model, tokenize_rows(rows["forget"], chat_tokenizer), pad_token_id=chat_tokenizer.pad_token_id)
    h = score_sequences(
        model, tokenize_rows(rows["nonmember"], chat_tokenizer), pad_token_id=chat_tokenizer.pad_token_id
    )
    assert loss["auc"] == pytest.approx(M.auc(f.avg_nll.tolist(), h.avg_nll.tolist()))
    assert loss["distance"] == pytest.approx(loss["auc"] - 0.5)
    assert prob["forget_prob"] == pytest.approx(float(f.normalized_prob.mean()), rel=1e-5)
    assert prob["distance"] == pytest.approx(prob["forget_prob"] - prob["nonmember_prob"])
    assert 0.0 <= min_k["auc"] <= 1.0 and min_k["distance"] == pytest.approx(min_k["auc"] - 0.5)


def test_non_members_must_be_non_members(chat_tokenizer, bench):
    forget = bench["forget"][:12]
    with pytest.raises(ValueError, match="share a question with the forget set"):
        ForgetTargetCallback(
            chat_tokenizer, forget=forget, nonmember=[*bench["holdout"][:11], forget[0]], metric="prob"
        )
    same_author = [{**bench["holdout"][0], "author": forget[0]["author"]}]
    with pytest.raises(ValueError, match="name authors of the forget set"):
        ForgetTargetCallback(chat_tokenizer, forget=forget, nonmember=same_author, metric="prob")
    with pytest.raises(ValueError, match="share a question with the retain set"):
        ForgetTargetCallback(
            chat_tokenizer, forget=forget, nonmember=[bench["retain"][0]], retain=bench["retain"], metric="prob"
        )
    with pytest.warns(UserWarning, match="use at least 30 non-members"):  # ceil(13 / (12 * 12 * 0.1**2 - 1))
        ForgetTargetCallback(chat_tokenizer, forget=forget, nonmember=bench["holdout"][:3], tolerance=0.1)
    with pytest.raises(ValueError, match="metric must be"):
        ForgetTargetCallback(chat_tokenizer, forget=forget, nonmember=bench["holdout"], metric="auc")


def test_nonmembers_needed_matches_the_auc_spread():
    def sd(n_f, n_n):
        return math.sqrt((n_f + n_n + 1) / (12 * n_f * n_n))

    n = nonmembers_needed(40, 0.1)
    assert n == 11 and sd(40, n) <= 0.1 < sd(40, n - 1)
    assert nonmembers_needed(5, 0.1) is None  # no number of non-members makes 5 forget rows enough


class PlantedScores(ForgetTargetCallback):
    """Answer probabilities from a curve for the forget rows and a constant for the non-members (``metric="prob"``);
    counts how often each set is scored."""

    def __init__(self, *args, curve, nonmember_prob=0.4, **kwargs):
        super().__init__(*args, **kwargs)
        self.curve, self.level, self.scored = list(curve), nonmember_prob, []

    def _scores(self, model, rows):
        which = "forget" if rows is self._forget else "nonmember"
        self.scored.append(which)
        p = self.curve.pop(0) if which == "forget" else self.level
        return [0.0] * len(rows), [p] * len(rows)


@pytest.mark.parametrize("margin", [0.1, None])
def test_non_members_are_rescored_only_near_the_target(chat_tokenizer, bench, tmp_path, margin):
    # d = 0.5 (first: scored), 0.4 (> 0.1 + 0.1: far, not rescored), 0.15 (near: rescored), 0.05 (reached: rescored)
    cb = PlantedScores(
        chat_tokenizer, **_rows(bench), every_n_steps=2, curve=[0.9, 0.8, 0.55, 0.45], rescore_margin=margin
    )
    trainer = _train(chat_tokenizer, bench, tmp_path, [cb])
    assert trainer.state.global_step == 6 and cb.stopped == "reached"
    rescored = [h["nonmember_rescored"] for h in cb.history]
    assert rescored == ([1.0, 0.0, 1.0, 1.0] if margin is not None else [1.0] * 4)
    assert cb.scored.count("nonmember") == sum(rescored) and cb.scored.count("forget") == 4
    assert [round(h["distance"], 6) for h in cb.history] == [0.5, 0.4, 0.15, 0.05]
    with pytest.raises(ValueError, match="rescore_margin"):
        ForgetTargetCallback(chat_tokenizer, **_rows(bench), rescore_margin=-1)
