"""Quiet misleading third-party messages that users cannot act on (imported first by the package)."""

import logging
import warnings


class _DropKernelsHubHint(logging.Filter):
    """bitsandbytes logs "pip install kernels" on AVX512-BF16 CPUs; that package fetches kernels from the Hub, so the
    advice is wrong for offline use, and the fallback it announces is the normal path."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "kernels-community" not in record.getMessage()


logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_DropKernelsHubHint())

# TRL reads transformers' deprecated `is_gradient_checkpointing` on every trainer; the FutureWarning concerns TRL's
# code, not the user's, and repeated on every run it hides warnings that matter.
warnings.filterwarnings("ignore", message=r".*`is_gradient_checkpointing` is deprecated", category=FutureWarning)


class _OnceOnly(logging.Filter):
    """Let a message through the first time only: bitsandbytes' 8-bit layers log the same cast notice on every forward
    (hundreds of lines for one evaluation of an 8-bit model)."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker, self.seen = marker, False

    def filter(self, record: logging.LogRecord) -> bool:
        if self.marker not in record.getMessage():
            return True
        first, self.seen = not self.seen, True
        return first


logging.getLogger("bitsandbytes.autograd._functions").addFilter(_OnceOnly("inputs will be cast from"))


class _DropOfflineTrustNotice(logging.Filter):
    """The `kernels` package warns "Skipping publisher trust check ... offline mode" on every command run offline
    (the normal way to run hf_unlearn here): nothing to act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Skipping publisher trust check" not in record.getMessage()


logging.getLogger("kernels").addFilter(_DropOfflineTrustNotice())
logging.getLogger("kernels._internals.hf_hub").addFilter(_DropOfflineTrustNotice())


# ------------------------------------------------------------------------------------------- hf_unlearn's own logger
# Messages go through logging.getLogger("hf_unlearn") (child loggers "hf_unlearn.<module>"): one handler on stderr,
# "[hf_unlearn] message", the level set like transformers' (set_verbosity, or HF_UNLEARN_VERBOSITY=debug|info|
# warning|error), and only the main process speaks below ERROR when accelerate or torchrun runs several.

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class _MainProcessOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        import os

        rank = os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or "0"
        return record.levelno >= logging.ERROR or rank in ("0", "")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the message (a redirected or captured stderr included),
    not to the stream that was current when hf_unlearn was imported."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        import sys

        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _library_logger() -> logging.Logger:
    import os

    logger = logging.getLogger("hf_unlearn")
    if not any(getattr(h, "_hf_unlearn", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler._hf_unlearn = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter("[hf_unlearn] %(message)s"))
        handler.addFilter(_MainProcessOnly())
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(LEVELS.get(os.environ.get("HF_UNLEARN_VERBOSITY", "warning").lower(), logging.WARNING))
    return logger


def set_verbosity(level: str | int) -> None:
    """The level of hf_unlearn's messages: ``"debug"``, ``"info"`` (what the recipe and the CLI use), ``"warning"``
    (the default for library use) or ``"error"``, or a ``logging`` level."""
    _library_logger().setLevel(LEVELS[level.lower()] if isinstance(level, str) else level)


def get_verbosity() -> int:
    return _library_logger().getEffectiveLevel()


_library_logger()
