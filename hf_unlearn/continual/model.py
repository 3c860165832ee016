"""``O3Model``: a LoRA adapter unlearned request after request, routed per query by the requests' detectors
("On Large Language Model Continual Unlearning", Gao et al., ICLR 2025, arXiv:2407.10223).

At inference every row of a batch gets its own weight ``w = max over requests of detector weight`` and the LoRA
delta of that row is scaled by ``w`` (``W0 x + w * B A x * scaling``): queries that touch no request run on the base
model's weights, and a mixed batch is routed row by row in one forward (O3's code runs one query at a time).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .._compat import cache_kwarg, output_cache
from .detector import RequestDetector, pool_hidden_states, prompt_features
from .orthogonal import OrthogonalLoRAObjective, lora_A_snapshot

__all__ = ["O3Model"]


MANIFEST = "o3_manifest.json"
_FORMAT = 1


def _default_lora():
    from peft import LoraConfig

    # O3's TOFU setting: r 8, alpha 32, dropout 0.05, the 7 linear modules of every layer.
    return LoraConfig(r=8, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")


class O3Model(torch.nn.Module):
    """A PEFT model plus one :class:`~hf_unlearn.continual.RequestDetector` per unlearning request."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        detectors: Sequence[RequestDetector] = (),
        snapshots: Sequence[Mapping[str, torch.Tensor]] = (),
        manifest: Sequence[Mapping[str, Any]] = (),
        layers: Sequence[int] | None = None,
        system_prompt: str | None = None,
    ) -> None:
        super().__init__()
        if not hasattr(model, "disable_adapter"):
            raise TypeError("O3Model wraps a PEFT model with a LoRA adapter: use O3Model.from_base(model, tokenizer).")
        if not len(detectors) == len(snapshots) == len(manifest):
            raise ValueError(
                f"{len(detectors)} detectors, {len(snapshots)} snapshots and {len(manifest)} manifest entries: "
                "there must be one of each per request; re-save the model."
            )
        self.model, self.tokenizer = model, tokenizer
        self.detectors, self.snapshots = list(detectors), list(snapshots)
        self.manifest = [dict(m) for m in manifest]
        n = model.get_base_model().config.num_hidden_layers
        self.layers = list(layers) if layers is not None else sorted({max(1, round(n * k / 4)) for k in (1, 2, 3, 4)})
        self.system_prompt = system_prompt
        self._weights: torch.Tensor | None = None
        self._hooks = [m.register_forward_hook(self._scale) for m in self._lora_B()]

    @classmethod
    def from_base(cls, model: Any, tokenizer: Any, lora_config: Any = None, **kwargs: Any) -> O3Model:
        """Wrap a base model with a fresh LoRA adapter (O3's r 8, alpha 32 on every linear layer by default)."""
        from peft import get_peft_model

        return cls(get_peft_model(model, lora_config or _default_lora()), tokenizer, **kwargs)

    # ------------------------------------------------------------------------------------------------ routing

    def _lora_B(self) -> list[torch.nn.Module]:
        mods = []
        for module in self.model.modules():
            lora_B = getattr(module, "lora_B", None)
            if isinstance(lora_B, torch.nn.ModuleDict):
                mods.extend(lora_B.values())
        return mods

    def _scale(self, module, inputs, output):
        w = self._weights
        if w is None:
            return output
        if output.shape[0] != w.shape[0]:
            raise ValueError(
                f"Routing weights for {w.shape[0]} rows, but a LoRA layer saw {output.shape[0]}: routed generation "
                "takes one sequence per prompt (no beams, num_return_sequences=1)."
            )
        return output * w.to(output.dtype).view(-1, *([1] * (output.dim() - 1)))

    @contextlib.contextmanager
    def routed(self, weights: torch.Tensor) -> Iterator[None]:
        """Scale each row's LoRA delta by ``weights`` (one per row) inside the block."""
        self._weights = weights.to(next(self.model.parameters()).device)
        try:
            yield
        finally:
            self._weights = None

    def features(self, prompts: Sequence[Sequence[int]], batch_size: int = 32) -> torch.Tensor:
        """Detector features of tokenised prompts, from the base model (the adapter disabled)."""
        with self.model.disable_adapter():
            return prompt_features(self.model, self.tokenizer, prompts, self.layers, batch_size=batch_size)

    def routing_weights(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``max`` over requests of each detector's weight, per row (0 for every row before any request)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        prompts = [ids[m.bool()].tolist() for ids, m in zip(input_ids.cpu(), attention_mask.cpu(), strict=True)]
        if not self.detectors:
            return torch.zeros(len(prompts))
        return self._weights_of(self.features(prompts))

    def _weights_of(self, features: torch.Tensor) -> torch.Tensor:
        """Each row's routing weight from its detector features: the largest over the requests."""
        return torch.stack([d.weight(features) for d in self.detectors]).max(0).values

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any):
        with self.routed(self.routing_weights(input_ids, attention_mask)):
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any):
        """``model.generate`` with every row routed by its prompt (weights computed once, from the prompt).

        The base model's pass over the prompts that gives the detector features also fills the prompt's KV cache,
        which is exact for every row routed to weight 0 (its LoRA delta is zero); only the rows with a weight above 0
        are encoded again, with their weight, before generation continues from the cache. Routing so costs a
        prefill of the routed rows, not a second pass over the batch. A caller's own ``cache`` or ``inputs_embeds``
        take the plain path (features, then ``generate``). One sequence per prompt: beams and
        ``num_return_sequences > 1`` are refused."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        config = kwargs.get("generation_config") or self.model.generation_config
        sequences = max(
            kwargs.get("num_beams") or getattr(config, "num_beams", 1) or 1,
            kwargs.get("num_return_sequences") or getattr(config, "num_return_sequences", 1) or 1,
        )
        plain = (
            input_ids.shape[1] < 2
            or not self.detectors
            or sequences > 1  # refused by the routing hooks, with what to do
            or {"cache", "past_key_values", "inputs_embeds"} & kwargs.keys()
        )
        prefilled = None if plain else self._prefill(input_ids, attention_mask)
        if prefilled is None:
            with self.routed(self.routing_weights(input_ids, attention_mask)):
                return self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        weights, cache = prefilled
        with self.routed(weights):
            return self.model.generate(
                input_ids=input_ids, attention_mask=attention_mask, **{cache_kwarg(): cache}, **kwargs
            )

    @torch.no_grad()
    def _prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, Any] | None:
        """Routing weights and the KV cache of every prompt token but the last (``generate`` encodes that one), with
        the positions ``generate`` uses for padded rows; ``None`` where the cache cannot be cut back."""
        from ..logprobs import decoder_and_head

        decoder, _ = decoder_and_head(self.model)
        device = next(self.model.parameters()).device
        ids, mask = input_ids.to(device), attention_mask.to(device)
        positions = (mask.long().cumsum(-1) - 1).clamp_min(0)
        with self.model.disable_adapter():
            out = decoder(
                input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, output_hidden_states=True
            )
        cache = output_cache(out)
        if not (hasattr(cache, "layers") and getattr(cache, "is_croppable", False)):
            return None
        features = pool_hidden_states(out.hidden_states, mask, self.layers).cpu()
        weights = self._weights_of(features)
        rows = torch.nonzero(weights > 0).flatten()
        if len(rows):  # routed rows: their prompt's keys and values depend on their weight
            with self.routed(weights[rows]):
                routed = output_cache(
                    decoder(
                        input_ids=ids[rows], attention_mask=mask[rows], position_ids=positions[rows], use_cache=True
                    )
                )
            index = rows.to(device)
            for layer, new in zip(cache.layers, routed.layers, strict=True):
                layer.keys[index] = new.keys
                layer.values[index] = new.values
        cache.crop(-1)
        return weights, cache

    # -------------------------------------------------------------------------------------------- unlearning

    def _question_prompts(self, rows: Sequence[Mapping[str, Any]]) -> list[list[int]]:
        from ..data.tokenization import encode_prompt

        out = []
        for r in rows:
            for key in ("question", "paraphrased_question"):
                if r.get(key):
                    out.append(encode_prompt(self.tokenizer, r[key], system_prompt=self.system_prompt))
        return out

    def unlearn(
        self,
        forget: Sequence[Mapping[str, Any]],
        *,
        name: str,
        args: Any = None,
        method: str = "o3",
        retain: Sequence[Mapping[str, Any]] | None = None,
        generic: Sequence[Mapping[str, Any]] | None = None,
        false_positive_rate: float = 0.01,
        store_features: bool = False,
        orthogonal_weight: float = 0.1,
    ) -> Any:
        """One unlearning request: train the adapter further on ``forget`` (``method``: ``"o3"``, the refusal NLL of
        O3's code, or any registered output-level method) with the orthogonality penalty against every earlier
        request, snapshot its ``lora_A``, and fit and calibrate this request's detector (``generic``: text the
        adapter must leave alone; default the built-in general-knowledge questions). ``store_features=True`` keeps the
        request's per-question features in its detector (refused by publishing unless asked; the default detector
        keeps statistics only). Returns the trainer."""
        from ..registry import get_method
        from ..trainers.o3 import O3Config, O3Trainer

        forget = list(forget)
        if not forget:
            raise ValueError(f"Request {name!r} has no rows: there is nothing to unlearn.")
        if any(m["name"] == name for m in self.manifest):
            raise ValueError(f"A request named {name!r} was already unlearned; give each request its own name.")
        if method == "o3":
            args = args or O3Config(output_dir=f"o3-{name}", report_to=[], save_strategy="no")
            trainer = O3Trainer(
                self.model,
                args=args,
                forget_dataset=forget,
                retain_dataset=retain,
                processing_class=self.tokenizer,
                previous_lora_A=self.snapshots,
            )
        else:
            spec = get_method(method)
            args = args or spec.config_class(output_dir=f"o3-{name}", report_to=[], save_strategy="no")
            extra = [OrthogonalLoRAObjective(self.snapshots, orthogonal_weight)] if self.snapshots else []
            trainer = spec.trainer_class(
                self.model,
                args=args,
                forget_dataset=forget,
                retain_dataset=retain,
                processing_class=self.tokenizer,
                objectives=extra,
            )
        trainer.train()
        self.model = trainer.accelerator.unwrap_model(trainer.model)
        if "ref" in self.model.peft_config:  # TRL's frozen copy for the reference; the next request makes its own
            self.model.delete_adapter("ref")
            self.model.set_adapter("default")
        detector = RequestDetector.fit(self.features(self._question_prompts(forget)), store_features=store_features)
        if generic is None:
            from ..data import GENERAL_KNOWLEDGE

            generic = [{"question": question} for question, *_ in GENERAL_KNOWLEDGE]
        detector.calibrate(self.features(self._question_prompts(generic)), false_positive_rate=false_positive_rate)
        self.detectors.append(detector)
        self.snapshots.append(lora_A_snapshot(self.model))
        self.manifest.append(
            {
                "name": name,
                "rows": len(forget),
                "date": datetime.date.today().isoformat(),
                "objective": method,
                "detector": "per-example features" if store_features else "statistics only",
                "separable": detector.separable,
            }
        )
        return trainer

    # -------------------------------------------------------------------------------------------------- saving

    def model_card(self, repo_id: str) -> str:
        """The card: the base, the lineage, the requests (names, sizes, dates, objectives, detector kinds; never forget
        text) and how loading routes by itself."""
        from ..hub.cards import build_model_card
        from ..hub.lineage import extend_lineage
        from ..models import BUNDLED_HUB_ID, is_bundled_model
        from ..trainers.o3 import O3_PAPER

        base = next(iter(self.model.peft_config.values())).base_model_name_or_path or "unknown"
        base = BUNDLED_HUB_ID if is_bundled_model(base) else base
        lineage = extend_lineage(
            base, {"kind": "unlearn", "method": f"O3, {len(self.manifest)} requests", "adapter": True}
        )
        card = build_model_card(
            repo_id=repo_id,
            base_model=base,
            method="O3",
            is_adapter=True,
            forget_name=f"{len(self.manifest)} continual unlearning requests",
            forget_size=sum(int(m["rows"]) for m in self.manifest),
            hyperparameters={"requests": len(self.manifest), "detector_layers": ", ".join(map(str, self.layers))},
            citation=O3_PAPER["citation"],
            lineage=lineage,
        )
        rows = "\n".join(
            f"| {i + 1} | {m['name']} | {m['rows']} | {m['date']} | {m['objective']} | {m['detector']} | "
            f"{'yes' if m.get('separable') else 'no'} |"
            for i, m in enumerate(self.manifest)
        )
        return (
            str(card).rstrip()
            + "\n\n## Unlearning requests\n\nOne LoRA adapter unlearned request after request, each request's `lora_A` "
            "kept orthogonal to the earlier ones; one detector per request routes every query (the adapter's weight "
            "is the largest detector weight). `hf_unlearn.load_unlearned` returns the routed model, and its "
            '`generate()` routes every prompt by itself. A detector of kind "per-example features" stores the '
            'request\'s question embeddings (which could reveal them); "statistics only" stores their mean and '
            "covariance.\n\n| # | request | rows | date | objective | detector | separable from generic text |\n"
            "|---|---|---|---|---|---|---|\n" + rows + "\n\n" + self._disclosure()
        )

    def _disclosure(self) -> str:
        """The card's statement of what routing and the detector files reveal about the forgotten topics."""
        banks = [m["name"] for m in self.manifest if m.get("detector") == "per-example features"]
        text = (
            "## What this model reveals about the forgotten topics\n\n"
            "Anyone who can query this model can tell which topics were forgotten: the adapter changes the answers "
            "exactly for the questions its detectors route, and that is inherent to routing whatever the detector "
            "stores. The detector files (`o3/detector_*`) add to it. Each holds, per request, the mean and the "
            f"(shrunk) covariance of the base model's hidden states of the request's questions at layers "
            f"{', '.join(map(str, self.layers))}. With few questions in a large hidden space, these statistics pin "
            "down the space the questions span, so whoever has the files can score candidate questions against "
            "them: questions about a forgotten topic stand out from others, and so do the request's very wordings "
            "against rephrasings of them (hf_unlearn's continual-unlearning docs give the measured rates). "
        )
        if banks:
            text += (
                f"The detectors of {', '.join(banks)} also store the hidden states of every question of the request "
                "(published on purpose, with `allow_forget_features`): a forgotten question matches its stored "
                "vector almost exactly.\n"
            )
        else:
            text += "No detector here stores per-question features.\n"
        return text

    def save_pretrained(self, directory: str | os.PathLike[str], *, repo_id: str | None = None) -> Path:
        """Adapter (PEFT format), detectors and ``lora_A`` snapshots (safetensors + JSON), manifest and card; atomic.
        ``repo_id`` names the repository the card's loading code uses (default: the folder name)."""
        from safetensors.torch import save_file

        from ..atomic import atomic_directory

        target = Path(directory)
        with atomic_directory(target) as tmp:
            self.model.save_pretrained(tmp, safe_serialization=True, selected_adapters=["default"])
            self.tokenizer.save_pretrained(tmp)
            (tmp / "o3").mkdir()
            for i, (det, snap) in enumerate(zip(self.detectors, self.snapshots, strict=True)):
                det.save(str(tmp / "o3" / f"detector_{i:03d}"))
                save_file({k: v.contiguous() for k, v in snap.items()}, str(tmp / "o3" / f"lora_A_{i:03d}.safetensors"))
            manifest = {
                "format": _FORMAT,
                "layers": self.layers,
                "system_prompt": self.system_prompt,
                "requests": self.manifest,
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
            (tmp / "README.md").write_text(self.model_card(repo_id or target.name))
        return target

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool = True,
        token: str | None = None,
        allow_forget_features: bool = False,
        commit_message: str = "Upload O3 continual-unlearning adapter (hf_unlearn)",
        **kwargs: Any,
    ) -> Any:
        """Save to a temporary folder and publish it with :func:`hf_unlearn.hub.push_unlearned` (private unless
        ``private=False``; detectors with per-question features refused unless ``allow_forget_features=True``).
        ``kwargs`` go to ``push_unlearned`` (e.g. ``base_repo_id`` for a base that is a local folder)."""
        import tempfile

        from ..hub.push import HubPushError, push_unlearned

        with tempfile.TemporaryDirectory(prefix="hf_unlearn_o3_push_") as work:
            folder = self.save_pretrained(Path(work) / "o3", repo_id=repo_id)
            try:
                return push_unlearned(
                    folder,
                    repo_id,
                    private=private,
                    token=token,
                    commit_message=commit_message,
                    allow_forget_features=allow_forget_features,
                    **kwargs,
                )
            except HubPushError as err:  # its retry names the temporary folder, which is gone
                raise HubPushError(
                    f"Pushing the O3 model to {repo_id} failed ({err.__cause__!r}); nothing local changed: call "
                    "push_to_hub again, or save_pretrained(folder) and run `hf-unlearn push --output_dir folder "
                    "--hub_model_id repo`."
                ) from err.__cause__

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str], base: Any = None, *, trainable: bool = True) -> O3Model:
        """Load what :meth:`save_pretrained` wrote. ``base`` (a model) replaces the base the adapter names."""
        from peft import PeftModel
        from safetensors.torch import load_file

        from ..hub.push import load_saved
        from ..models import load_tokenizer

        path = Path(directory)
        if not (path / MANIFEST).is_file():
            raise FileNotFoundError(f"{path} holds no {MANIFEST}: it is not an O3Model folder (save_pretrained).")
        manifest = json.loads((path / MANIFEST).read_text())
        n = len(manifest["requests"])
        found = len(list((path / "o3").glob("detector_*.safetensors"))) if (path / "o3").is_dir() else 0
        if found != n:
            raise ValueError(f"{path}: the manifest lists {n} requests but {found} detectors were found; re-save it.")
        if base is None:
            model, tokenizer = load_saved(path)
        else:
            model, tokenizer = PeftModel.from_pretrained(base, str(path)), load_tokenizer(path)
        if trainable:
            for name, p in model.named_parameters():
                p.requires_grad_("lora_" in name)
        detectors = [RequestDetector.load(str(path / "o3" / f"detector_{i:03d}")) for i in range(n)]
        snapshots = [load_file(str(path / "o3" / f"lora_A_{i:03d}.safetensors")) for i in range(n)]
        return cls(
            model,
            tokenizer,
            detectors=detectors,
            snapshots=snapshots,
            manifest=manifest["requests"],
            layers=manifest["layers"],
            system_prompt=manifest.get("system_prompt"),
        )
