"""Task vectors: the weight difference a fine-tune made, and unlearning by subtracting it.

Task arithmetic (Ilharco et al. 2023, "Editing Models with Task Arithmetic", arXiv 2212.04089) edits a model by adding
or subtracting ``tau = theta_finetuned - theta_pretrained``. For unlearning, MUSE's task-vector baseline (Shi et al.
2024, arXiv 2407.06460) fine-tunes the target further on the forget set (the "reinforced" model) and subtracts that
difference: ``theta_unlearned = theta_target - alpha * (theta_reinforced - theta_target)``.

:class:`TaskVector` holds a vector in memory (float32) for small models and for Selective Task Arithmetic;
:func:`negate_checkpoint` applies the MUSE formula between two safetensors folders tensor by tensor, so its peak
memory is a few tensors, not two models.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_directory
from .checkpoint import DTYPES, Checkpoint, SafetensorsStreamWriter

__all__ = ["TaskVector", "check_compatible", "negate_checkpoint", "stream_checkpoint"]

logger = logging.getLogger(__name__)

# Files of a model folder that are weights or training state, not copied beside new weights.
_NOT_COPIED = ("*.safetensors", "*.safetensors.index.json", "*.bin", "*.pt", "*.pth", "hf_unlearn_bundled.json")
_NOT_COPIED_NAMES = {"README.md", "results.json", "training_args.bin", "trainer_state.json", "task_vector.json"}
_ARCH_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")


def _state(source: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """Named floating tensors of a model (each shared parameter once), a state dict, or a folder."""
    if isinstance(source, torch.nn.Module):
        yield from ((n, p.detach()) for n, p in source.named_parameters())
    elif isinstance(source, Mapping):
        yield from source.items()
    else:
        yield from Checkpoint(source).items()


def _meta(ckpt: Checkpoint) -> dict[str, torch.Tensor]:
    """Shape-and-dtype stand-ins of a checkpoint's tensors (no data read)."""
    return {k: torch.empty(ckpt.shape(k), device="meta", dtype=DTYPES[ckpt.info(k)["dtype"]]) for k in ckpt}


def _embedding(key: str) -> bool:
    return "embed" in key or "lm_head" in key or key.endswith("wte.weight")


def _aligned_pairs(target: dict[str, torch.Tensor], other: dict[str, torch.Tensor]) -> list[str]:
    """Keys to combine; tied or resized embeddings are skipped with a warning, any other mismatch is an error."""
    missing = [k for k in target if k not in other and target[k].is_floating_point()]
    skipped = [k for k in missing if _embedding(k)]
    missing = [k for k in missing if not _embedding(k)]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"The two models do not hold the same weights: {shown} missing from the second.")
    resized = [k for k in target if k in other and target[k].shape != other[k].shape]
    wrong = [k for k in resized if not _embedding(k)]
    if wrong:
        k = wrong[0]
        raise ValueError(
            f"The two models differ in shape ({k}: {tuple(target[k].shape)} vs {tuple(other[k].shape)}): "
            "they are not the same architecture."
        )
    skipped += resized
    if skipped:
        warnings.warn(
            f"Skipped {', '.join(skipped)} (tied or resized embeddings: missing from one model or of another "
            "shape); they keep the first model's values.",
            UserWarning,
            stacklevel=3,
        )
    return [k for k in target if k in other and k not in skipped and target[k].is_floating_point()]


class TaskVector(Mapping[str, torch.Tensor]):
    """``tau = theta_finetuned - theta_pretrained`` for every floating weight both models share, in float32.

    Integer buffers are skipped; tied and resized embeddings are skipped with a warning naming the keys. Vectors
    support ``-tau``, ``tau1 + tau2``, ``scale * tau`` and :meth:`masked`, and are applied with :meth:`apply_to`.
    """

    def __init__(self, deltas: Mapping[str, torch.Tensor]) -> None:
        self.deltas = {k: v.float() for k, v in deltas.items()}

    @classmethod
    def from_models(cls, pretrained: Any, finetuned: Any) -> TaskVector:
        """The vector from ``pretrained`` to ``finetuned`` (models, state dicts or local folders); an all-zero vector
        is an error."""
        pre = dict(_state(pretrained))
        ft = dict(_state(finetuned))
        keys = _aligned_pairs(pre, ft)
        vector = cls({k: ft[k].float() - pre[k].float() for k in keys})
        if not any(bool(v.any()) for v in vector.values()):
            raise ValueError("The task vector is zero everywhere: the two models are equal (was one fine-tuned?).")
        return vector

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.deltas[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.deltas)

    def __len__(self) -> int:
        return len(self.deltas)

    def __neg__(self) -> TaskVector:
        return TaskVector({k: -v for k, v in self.deltas.items()})

    def __mul__(self, scale: float) -> TaskVector:
        return TaskVector({k: scale * v for k, v in self.deltas.items()})

    __rmul__ = __mul__

    def __add__(self, other: TaskVector) -> TaskVector:
        keys = [k for k in self.deltas if k in other.deltas]
        dropped = sorted(set(self.deltas) ^ set(other.deltas))
        if dropped:
            warnings.warn(f"Keys in only one vector are dropped: {', '.join(dropped[:5])}.", UserWarning, stacklevel=2)
        return TaskVector({k: self.deltas[k] + other.deltas[k] for k in keys})

    def __sub__(self, other: TaskVector) -> TaskVector:
        return self + (-other)

    def masked(self, masks: Mapping[str, torch.Tensor]) -> TaskVector:
        """Only the entries where ``masks`` is true (keys without a mask are zeroed)."""
        return TaskVector({k: v * masks[k].to(v.dtype) if k in masks else torch.zeros_like(v) for k, v in self.items()})

    def norm(self) -> float:
        return float(torch.sqrt(sum((v.double() ** 2).sum() for v in self.deltas.values())))

    def nonzero_fraction(self) -> float:
        total = sum(v.numel() for v in self.deltas.values())
        return sum(int((v != 0).sum()) for v in self.deltas.values()) / max(total, 1)

    @torch.no_grad()
    def apply_to(self, model: torch.nn.Module, scale: float = 1.0) -> torch.nn.Module:
        """Add ``scale * tau`` to ``model``'s parameters in place (float32 arithmetic, cast back); returns it."""
        params = dict(model.named_parameters())
        missing = [k for k in self.deltas if k not in params]
        if missing:
            raise ValueError(f"The model has no parameter {missing[0]} of this task vector (another architecture?).")
        for k, v in self.deltas.items():
            p = params[k]
            if p.shape != v.shape:
                raise ValueError(f"{k}: the model's shape {tuple(p.shape)} differs from the vector's {tuple(v.shape)}.")
            p.copy_((p.float() + scale * v.to(p.device)).to(p.dtype))
        return model


def check_compatible(first: Checkpoint, second: Checkpoint) -> None:
    """One clear error when two model folders are not the same architecture."""
    a, b = first.config, second.config
    for key in _ARCH_KEYS:
        if key in a and key in b and a[key] != b[key]:
            raise ValueError(
                f"{first.folder} and {second.folder} are different architectures ({key}: {a[key]} vs {b[key]})."
            )


def _refuse_output(output_dir: Path, inputs: list[Path], overwrite: bool) -> None:
    out = output_dir.resolve()
    for folder in inputs:
        folder = folder.resolve()
        if out == folder or folder in out.parents:
            raise ValueError(f"The output folder {output_dir} is inside the input {folder}; choose another folder.")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{output_dir} is not empty; choose another folder or pass overwrite=True.")


def _copy_side_files(source: Path, destination: Path) -> None:
    for path in source.iterdir():
        if path.is_file() and path.name not in _NOT_COPIED_NAMES and not any(path.match(p) for p in _NOT_COPIED):
            shutil.copy2(path, destination / path.name)


def stream_checkpoint(
    source: str | Path,
    output_dir: str | Path,
    transform: Callable[[str, torch.Tensor], torch.Tensor | None],
    *,
    inputs: list[str | Path] = (),
    record: dict | None = None,
    overwrite: bool = False,
    check: Callable[[], None] | None = None,
    weights: str = "model",
) -> Path:
    """Write ``source``'s folder to ``output_dir`` with every floating tensor replaced by ``transform(key, t32)``.

    ``t32`` is the tensor in float32; ``transform`` returns the new float32 tensor, or ``None`` to keep it. Results
    are cast back to the stored dtype and written as soon as they are computed, into the same files as the source.
    The folder is written to a temporary sibling and renamed, so an interrupted run leaves nothing half-written; the
    other files (config, tokenizer) are copied and ``record`` is saved as ``task_vector.json``. ``check`` runs
    after the last tensor and before the rename; an exception there discards the new folder and keeps what was at
    ``output_dir``. ``weights="adapter_model"`` streams a PEFT adapter folder.
    """
    source, output_dir = Path(source), Path(output_dir)
    _refuse_output(output_dir, [source, *map(Path, inputs)], overwrite)
    ckpt = Checkpoint(source, weights=weights)
    with atomic_directory(output_dir) as tmp:
        for file, header in ckpt.headers.items():
            names = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
            layout = [(k, header[k]["dtype"], header[k]["shape"]) for k in names]
            with SafetensorsStreamWriter(tmp / file, layout, header.get("__metadata__")) as writer:
                for k, dtype, _ in layout:
                    tensor = ckpt.get(k)
                    if ckpt.is_floating(k):
                        new = transform(k, tensor.float())
                        if new is not None:
                            tensor = new.to(DTYPES[dtype])
                    writer.write(k, tensor)
                    del tensor
        index = source / f"{weights}.safetensors.index.json"
        if index.is_file():
            shutil.copy2(index, tmp / index.name)
        _copy_side_files(source, tmp)
        if record is not None:
            (tmp / "task_vector.json").write_text(json.dumps(record, indent=1) + "\n")
        if check is not None:
            check()
    return output_dir


def negate_checkpoint(
    target: str | Path,
    reinforced: str | Path,
    output_dir: str | Path,
    *,
    scale: float = 1.0,
    masks: Mapping[str, torch.Tensor] | None = None,
    overwrite: bool = False,
) -> Path:
    """``theta_target - scale * m * (theta_reinforced - theta_target)`` between two folders, tensor by tensor.

    The MUSE task-vector baseline (``m`` = 1) or, with ``masks`` from :func:`~hf_unlearn.task_arithmetic.sta_masks`,
    Selective Task Arithmetic. Raises when the folders are different architectures, when a weight other than a tied
    or resized embedding is missing, or when the reinforced model equals the target (an all-zero vector).
    """
    target, reinforced = Path(target), Path(reinforced)
    t_ckpt, r_ckpt = Checkpoint(target), Checkpoint(reinforced)
    check_compatible(t_ckpt, r_ckpt)
    keys = set(_aligned_pairs(_meta(t_ckpt), _meta(r_ckpt)))
    nonzero = [False]

    def transform(key: str, t: torch.Tensor) -> torch.Tensor | None:
        if key not in keys or (masks is not None and key not in masks):
            return None
        # In place on the reinforced tensor's buffer: two tensors alive at a time (target and result).
        delta = r_ckpt.get(key).float().sub_(t)
        if masks is not None:
            delta.mul_(masks[key])
        if not nonzero[0] and bool(delta.any()):
            nonzero[0] = True
        return delta.mul_(-scale).add_(t)

    record = {
        "formula": "theta_target - scale * mask * (theta_reinforced - theta_target)",
        "target": str(target),
        "reinforced": str(reinforced),
        "scale": scale,
        "masked": masks is not None,
    }

    def check() -> None:
        if not nonzero[0]:
            raise ValueError(
                f"The task vector from {target} to {reinforced} is zero everywhere"
                + (" under the given masks" if masks is not None else "")
                + ": the reinforced model equals the target (was it fine-tuned?). Nothing was written."
            )

    out = stream_checkpoint(
        target, output_dir, transform, inputs=[reinforced], record=record, overwrite=overwrite, check=check
    )
    logger.info("Wrote %s (scale %s).", out, scale)
    return out
