"""Linear probes on hidden states: does the representation still encode a fact the outputs no longer show?

Output metrics can be fooled by a model that only hides knowledge. A linear probe reads the hidden states instead
("Eight Methods to Evaluate Robust Unlearning in LLMs", Lynch et al., arXiv:2402.16835, probe unlearned models the
same way). Here the probe ranks candidate answers: for a question, the true answer and its perturbed answers (same
sentence, another value of the same kind) are encoded, each candidate's answer tokens are mean-pooled at a layer, and a
logistic regression trained on *retain* items (which the model knows) scores them. On the forget items, the share of
questions whose true candidate scores highest is compared with chance (1 / number of candidates) and with items the
model never saw (holdout authors): a probe that still finds the true value of forgotten facts shows they were hidden,
not removed. The layer is chosen by cross-validation on the retain items, never by the forget score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["answer_features", "fit_linear_probe", "layer_sweep", "probe_candidates", "rank_accuracy"]


def fit_linear_probe(
    features: torch.Tensor, labels: torch.Tensor, *, l2: float = 1e-2, max_iter: int = 200
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """L2-regularised logistic regression (LBFGS, float64) on standardised features.

    Returns ``(weight, bias, mean, std)``: score new features with ``((x - mean) / std) @ weight + bias``.
    """
    x = features.double()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    x = (x - mean) / std
    y = labels.double()
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y) + l2 * w.pow(2).sum() / 2
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach(), mean, std


def _score(features: torch.Tensor, probe: tuple[torch.Tensor, ...]) -> torch.Tensor:
    w, b, mean, std = probe
    return ((features.double() - mean) / std) @ w + b


def rank_accuracy(scores: torch.Tensor, groups: Sequence[int], labels: Sequence[int]) -> float:
    """The share of groups (questions) whose positive candidate has the highest score."""
    best: dict[int, tuple[float, int]] = {}
    for s, g, y in zip(scores.tolist(), groups, labels, strict=True):
        if g not in best or s > best[g][0]:
            best[g] = (s, y)
    return sum(y for _, y in best.values()) / max(len(best), 1)


def probe_candidates(
    rows: Sequence[Mapping[str, Any]], max_perturbed: int | None = None
) -> list[tuple[int, str, str, int]]:
    """``(item, question, candidate answer, is_true)`` for every item with perturbed answers (the first
    ``max_perturbed`` of them): the true candidate is the paraphrased answer, which shares its sentence with the
    perturbed ones (the answer itself otherwise)."""
    out = []
    for i, row in enumerate(rows):
        perturbed = (row.get("perturbed_answer") or [])[:max_perturbed]
        if not perturbed:
            continue
        out.append((i, row["question"], row.get("paraphrased_answer") or row["answer"], 1))
        out.extend((i, row["question"], p, 0) for p in perturbed)
    return out


@torch.no_grad()
def answer_features(
    model: torch.nn.Module,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    layers: Sequence[int],
    *,
    system_prompt: str | None = None,
    max_length: int = 512,
    batch_size: int = 32,
) -> torch.Tensor:
    """Mean hidden state over each answer's tokens at ``layers`` (indices into ``output_hidden_states``, 0 = the
    embeddings): a ``(len(layers), len(pairs), hidden)`` float32 tensor."""
    from ..data.tokenization import encode_qa

    encoded = [
        encode_qa(tokenizer, q, a, system_prompt=system_prompt, max_length=max_length).to_dict() for q, a in pairs
    ]
    device = next(model.parameters()).device
    order = sorted(range(len(encoded)), key=lambda j: len(encoded[j]["input_ids"]))
    out: torch.Tensor | None = None
    was_training = model.training
    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(encoded[j]["input_ids"]) for j in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            answer = torch.zeros((len(idx), width), dtype=torch.float32)
            for r, j in enumerate(idx):
                e = encoded[j]
                n = len(e["input_ids"])
                ids[r, :n] = torch.tensor(e["input_ids"])
                mask[r, :n] = 1
                answer[r, :n] = (torch.tensor(e["labels"]) != -100).float()
            hidden = model(input_ids=ids.to(device), attention_mask=mask.to(device), output_hidden_states=True)
            hidden = hidden.hidden_states
            weights = (answer / answer.sum(1, keepdim=True).clamp_min(1)).to(device)
            pooled = torch.stack([torch.einsum("bt,btd->bd", weights, hidden[layer].float()) for layer in layers])
            if out is None:
                out = torch.empty(len(layers), len(encoded), pooled.shape[-1])
            out[:, idx] = pooled.cpu()
    finally:
        model.train(was_training)
    assert out is not None
    return out


def layer_sweep(
    train: torch.Tensor,
    train_labels: Sequence[int],
    train_groups: Sequence[int],
    train_folds: Sequence[int],
    tests: Mapping[str, tuple[torch.Tensor, Sequence[int], Sequence[int]]],
    layers: Sequence[int],
    *,
    l2: float = 1e-2,
) -> dict[str, Any]:
    """Choose the layer by 2-fold cross-validated rank accuracy on the training items (folds by ``train_folds``, e.g.
    authors), refit on all of them, and report each test set's rank accuracy per layer and at the chosen one.

    ``train`` and the test features are ``(layers, n, hidden)``; ``tests`` maps a name to (features, groups, labels).
    """
    y = torch.tensor(list(train_labels))
    folds = torch.tensor(list(train_folds))
    cv, per_layer = [], {name: [] for name in tests}
    for li in range(len(layers)):
        accs = []
        for f in (0, 1):
            fit, held = folds != f, folds == f
            if fit.sum() == 0 or held.sum() == 0:
                continue
            probe = fit_linear_probe(train[li][fit], y[fit], l2=l2)
            held_idx = held.nonzero().flatten().tolist()
            accs.append(
                rank_accuracy(_score(train[li][held], probe), [train_groups[j] for j in held_idx], y[held].tolist())
            )
        cv.append(sum(accs) / len(accs) if accs else float("nan"))
        probe = fit_linear_probe(train[li], y, l2=l2)
        for name, (feats, groups, labels) in tests.items():
            per_layer[name].append(rank_accuracy(_score(feats[li], probe), groups, labels))
    best = max(range(len(layers)), key=lambda i: cv[i])
    return {
        "layers": list(layers),
        "cv_accuracy": cv,
        "layer": layers[best],
        "accuracy": {name: acc[best] for name, acc in per_layer.items()},
        "per_layer": per_layer,
    }
