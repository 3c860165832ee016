"""One detector per unlearning request: does a query touch what that request removed?

O3 ("On Large Language Model Continual Unlearning", arXiv:2407.10223) scores queries with a fine-tuned RoBERTa per
request. Here the backbone is the base model's own hidden states (no second large model): prompts are mean-pooled over
their real tokens at a few layers, and per layer

* ``maha`` - the Mahalanobis distance to the request's features (mean and a shrunk covariance), and
* ``cos`` - the maximum cosine to the request's stored features (or to their mean for a statistics-only detector,
  which stores no per-example features: embeddings of forget questions can leak their content),

are standardised against the request's own leave-one-out scores and averaged over layers (``cos`` up, ``maha`` down)
into one score. The routing weight is a readable calibration replacing O3's hand-tuned constants: ``w = 0`` at or
below ``threshold`` (set from a target false-positive rate on generic text), ``w = 1`` at or above ``full_at`` (the
median score of the request's own questions), linear in between.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["RequestDetector", "pool_hidden_states", "prompt_features"]

_FORMAT = 1


@torch.no_grad()
def prompt_features(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    layers: Sequence[int],
    *,
    batch_size: int = 32,
) -> torch.Tensor:
    """Mean-pooled hidden states over each prompt's real tokens at ``layers`` (``output_hidden_states`` indices):
    ``(len(layers), len(prompts), hidden)`` float32. Run it on the base model (adapter disabled)."""
    from ..data.collators import pad_sequences
    from ..logprobs import decoder_and_head

    decoder, _ = decoder_and_head(model)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = []
    for start in range(0, len(prompts), batch_size):
        ids, mask = pad_sequences([list(p) for p in prompts[start : start + batch_size]], pad)
        hidden = decoder(input_ids=ids.to(device), attention_mask=mask.to(device), output_hidden_states=True)
        out.append(pool_hidden_states(hidden.hidden_states, mask.to(device), layers))
    return torch.cat(out, dim=1).cpu() if out else torch.zeros(len(layers), 0, 0)


def pool_hidden_states(
    hidden_states: Sequence[torch.Tensor], attention_mask: torch.Tensor, layers: Sequence[int]
) -> torch.Tensor:
    """Mean over the real tokens (``attention_mask`` 1, on either side) at ``layers``: ``(len(layers), B, hidden)``
    float32."""
    weights = attention_mask / attention_mask.sum(1, keepdim=True).clamp_min(1)
    return torch.stack([torch.einsum("bt,btd->bd", weights.float(), hidden_states[i].float()) for i in layers])


class RequestDetector:
    """Scores how much queries belong to one request's forget data; see the module docstring."""

    def __init__(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.tensors, self.meta = tensors, meta

    # ------------------------------------------------------------------------------------------------- fitting

    @classmethod
    def fit(cls, features: torch.Tensor, *, store_features: bool = False, shrinkage: float = 0.1) -> RequestDetector:
        """Fit on the request's prompt features ``(layers, n, hidden)`` (at least 3 prompts).

        ``store_features=True`` also keeps the normalised features themselves (``bank``, for the ``cos`` part):
        per-example embeddings of the request's prompts, which :func:`~hf_unlearn.hub.push_unlearned` refuses to
        publish unless asked in so many words. The default keeps statistics only."""
        if features.dim() != 3 or features.shape[1] < 3:
            raise ValueError(
                "A request detector needs the features of at least 3 of the request's prompts; this request has "
                f"{features.shape[1] if features.dim() == 3 else 0}."
            )
        f = features.float()
        mean = f.mean(1)
        centred = f - mean[:, None]
        cov = centred.transpose(1, 2) @ centred / max(f.shape[1] - 1, 1)
        dim = f.shape[2]
        scale = torch.diagonal(cov, dim1=1, dim2=2).mean(-1).clamp_min(1e-8)
        shrunk = (1 - shrinkage) * cov + shrinkage * scale[:, None, None] * torch.eye(dim)
        tensors = {"mean": mean, "precision": torch.linalg.inv(shrunk)}
        if store_features:
            tensors["bank"] = torch.nn.functional.normalize(f, dim=-1)
        det = cls(tensors, {"format": _FORMAT, "store_features": store_features, "shrinkage": shrinkage})
        maha, cos = det._layer_parts(f, leave_one_out=True)
        det.tensors.update(
            maha_mean=maha.mean(1),
            maha_std=maha.std(1).clamp_min(1e-6),
            cos_mean=cos.mean(1),
            cos_std=cos.std(1).clamp_min(1e-6),
        )
        own = det.score(f, leave_one_out=True)
        det.meta.update(full_at=float(own.median()), threshold=None, n=int(f.shape[1]))
        return det

    def _layer_parts(self, f: torch.Tensor, *, leave_one_out: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        d = f - self.tensors["mean"][:, None]
        maha = torch.einsum("lnd,lde,lne->ln", d, self.tensors["precision"], d).clamp_min(0).sqrt()
        unit = torch.nn.functional.normalize(f, dim=-1)
        if "bank" in self.tensors:
            sims = unit @ self.tensors["bank"].transpose(1, 2)  # (L, n, N)
            if leave_one_out:  # a training prompt is not its own nearest neighbour
                sims = sims - 4.0 * torch.eye(sims.shape[1], sims.shape[2])[None]
            cos = sims.max(-1).values
        else:
            cos = (unit * torch.nn.functional.normalize(self.tensors["mean"], dim=-1)[:, None]).sum(-1)
        return maha, cos

    def score(self, features: torch.Tensor, *, leave_one_out: bool = False) -> torch.Tensor:
        """One score per prompt (higher = closer to the request): the layer-average of standardised ``cos - maha``."""
        maha, cos = self._layer_parts(features.float(), leave_one_out=leave_one_out)
        t = self.tensors
        z = (cos - t["cos_mean"][:, None]) / t["cos_std"][:, None] - (maha - t["maha_mean"][:, None]) / t["maha_std"][
            :, None
        ]
        return z.mean(0)

    def calibrate(self, generic_features: torch.Tensor, *, false_positive_rate: float = 0.01) -> RequestDetector:
        """Set ``threshold`` so that ``false_positive_rate`` of generic prompts (text unrelated to any request, e.g.
        general-knowledge questions) get a non-zero weight."""
        if not 0 <= false_positive_rate < 1:
            raise ValueError(f"false_positive_rate must be in [0, 1), got {false_positive_rate}.")
        scores = self.score(generic_features)
        threshold = float(torch.quantile(scores, 1 - false_positive_rate)) if scores.numel() else -math.inf
        self.meta.update(threshold=threshold, false_positive_rate=false_positive_rate, generic_n=int(scores.numel()))
        if self.meta["full_at"] <= threshold:
            self.meta["full_at"] = threshold + 1e-6  # cannot separate: a step at the threshold (said by `separable`)
        return self

    @property
    def separable(self) -> bool:
        """Whether the request's median prompt scores above the calibrated threshold."""
        return self.meta.get("threshold") is not None and self.meta["full_at"] - self.meta["threshold"] > 1e-5

    def weight(self, features: torch.Tensor) -> torch.Tensor:
        """Routing weight in [0, 1] per prompt (0 below ``threshold``, 1 from ``full_at``, linear between)."""
        if self.meta.get("threshold") is None:
            raise ValueError("This detector is not calibrated: call calibrate(generic_features) first.")
        lo, hi = self.meta["threshold"], self.meta["full_at"]
        return ((self.score(features) - lo) / max(hi - lo, 1e-6)).clamp(0, 1)

    # ---------------------------------------------------------------------------------------------- saving

    def save(self, stem: str) -> None:
        """``<stem>.safetensors`` (tensors) and ``<stem>.json`` (settings); never pickle."""
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in self.tensors.items()}, f"{stem}.safetensors")
        with open(f"{stem}.json", "w") as fh:
            json.dump(self.meta, fh, indent=1)

    @classmethod
    def load(cls, stem: str) -> RequestDetector:
        from safetensors.torch import load_file

        try:
            tensors = load_file(f"{stem}.safetensors")
            with open(f"{stem}.json") as fh:
                meta = json.load(fh)
        except Exception as err:  # safetensors raises its own error types for truncated files
            raise ValueError(
                f"The detector {stem} is missing or corrupt ({type(err).__name__}: {err}); re-save it."
            ) from None
        needed = {"mean", "precision", "maha_mean", "maha_std", "cos_mean", "cos_std"}
        if not needed <= set(tensors) or meta.get("format") != _FORMAT:
            raise ValueError(f"The detector {stem} is incomplete or of another format; re-save it.")
        return cls(tensors, meta)
