"""Tensor-by-tensor access to safetensors checkpoints, and a writer that streams a safetensors file to disk.

A task vector of a 7B model is 7B numbers; holding the target, the fine-tuned model and the result at once would
need three copies. Reading one tensor at a time from memory-mapped files and writing each result as soon as it is
computed keeps the peak at a few tensors, whatever the model size. The writer knows every shape and dtype up front
(they are those of the input), so it writes the safetensors header first and then the tensors in order.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

__all__ = ["Checkpoint", "SafetensorsStreamWriter", "read_header"]

# safetensors' dtype names (the format's specification) and torch's.
DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
FLOATING = ("F64", "F32", "F16", "BF16")


def read_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of a safetensors file: ``{name: {"dtype", "shape", "data_offsets"}, "__metadata__": ...}``,
    plus ``"__data_start__"``: where the tensor data begins in the file."""
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path} is not a safetensors file (shorter than its 8-byte header size).")
        (size,) = struct.unpack("<Q", raw)
        if size > 100_000_000:
            raise ValueError(f"{path} is not a safetensors file (header size {size}).")
        try:
            header = json.loads(fh.read(size))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not a safetensors file ({err}).") from None
    header["__data_start__"] = 8 + size
    return header


class Checkpoint:
    """The weights of a model folder (``model.safetensors`` or shards with ``model.safetensors.index.json``), read
    lazily, one tensor at a time.

    Args:
        folder: a local model folder.
        weights: the file name stem; ``"adapter_model"`` reads a PEFT adapter.
    """

    def __init__(self, folder: str | Path, weights: str = "model") -> None:
        self.folder = Path(folder)
        index = self.folder / f"{weights}.safetensors.index.json"
        single = self.folder / f"{weights}.safetensors"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            self.files = sorted(set(weight_map.values()))
        elif single.is_file():
            self.files = [single.name]
        else:
            bins = sorted(p.name for p in self.folder.glob("*.bin"))
            hint = f" (found {', '.join(bins)}: convert to safetensors first)" if bins else ""
            raise FileNotFoundError(f"No {weights}.safetensors or its index in {self.folder}{hint}.")
        self.headers = {f: read_header(self.folder / f) for f in self.files}
        self._data_start = {f: self.headers[f].pop("__data_start__") for f in self.files}
        self.where = {k: f for f, h in self.headers.items() for k in h if k != "__metadata__"}
        self._open: dict[str, Any] = {}

    def keys(self) -> list[str]:
        return list(self.where)

    def __iter__(self) -> Iterator[str]:
        return iter(self.where)

    def __contains__(self, key: object) -> bool:
        return key in self.where

    def info(self, key: str) -> dict[str, Any]:
        return self.headers[self.where[key]][key]

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self.info(key)["shape"])

    def is_floating(self, key: str) -> bool:
        return self.info(key)["dtype"] in FLOATING

    def get(self, key: str) -> torch.Tensor:
        """The tensor ``key``, read from its file into fresh memory (a plain read, not a memory map: the process
        then holds only the tensors it keeps, and its resident size says so)."""
        file = self.where[key]
        info = self.headers[file][key]
        start, end = info["data_offsets"]
        tensor = torch.empty(info["shape"], dtype=DTYPES[info["dtype"]])
        if end == start:
            return tensor
        if file not in self._open:
            self._open[file] = open(self.folder / file, "rb")  # noqa: SIM115 - closed in close() / __del__
        fh = self._open[file]
        fh.seek(self._data_start[file] + start)
        view = tensor.reshape(-1).view(torch.uint8).numpy()
        if fh.readinto(view) != end - start:
            raise ValueError(f"{self.folder / file} is truncated: {key} is incomplete.")
        return tensor

    def close(self) -> None:
        for fh in getattr(self, "_open", {}).values():
            fh.close()
        self._open = {}

    def __del__(self) -> None:
        self.close()

    def items(self) -> Iterator[tuple[str, torch.Tensor]]:
        for key in self.keys():
            yield key, self.get(key)

    @property
    def config(self) -> dict[str, Any]:
        path = self.folder / "config.json"
        return json.loads(path.read_text()) if path.is_file() else {}


class SafetensorsStreamWriter:
    """Write one safetensors file whose tensors (names, dtypes, shapes) are known in advance, one tensor at a time.

    ``layout`` lists ``(name, dtype, shape)`` in file order; :meth:`write` must then be called once per name, in that
    order, with a tensor of that dtype and shape.
    """

    def __init__(self, path: str | Path, layout: list[tuple[str, str, list[int]]], metadata: dict | None = None):
        header: dict[str, Any] = {"__metadata__": metadata or {"format": "pt"}}
        offset = 0
        for name, dtype, shape in layout:
            size = torch.empty((), dtype=DTYPES[dtype]).element_size()
            for dim in shape:
                size *= dim
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
            offset += size
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self._expected = [(n, d, list(s)) for n, d, s in layout]
        self._next = 0
        self._fh = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._fh.write(struct.pack("<Q", len(raw)))
        self._fh.write(raw)

    def write(self, name: str, tensor: torch.Tensor) -> None:
        expected_name, dtype, shape = self._expected[self._next]
        if name != expected_name or tensor.dtype != DTYPES[dtype] or list(tensor.shape) != shape:
            raise ValueError(
                f"Writer expected {expected_name} {dtype} {shape}, got {name} {tensor.dtype} {list(tensor.shape)}."
            )
        data = tensor.detach().contiguous().reshape(-1)
        if data.numel():
            self._fh.write(data.view(torch.uint8).numpy())  # the buffer itself, no copy
        self._next += 1

    def close(self) -> None:
        self._fh.close()
        if self._next != len(self._expected):
            raise ValueError(f"Writer closed after {self._next} of {len(self._expected)} tensors.")

    def __enter__(self) -> SafetensorsStreamWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self._fh.close()
