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
