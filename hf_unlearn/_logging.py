"""Quiet one misleading third-party log line (imported first by the package)."""

import logging


class _DropKernelsHubHint(logging.Filter):
    """bitsandbytes logs "pip install kernels" on AVX512-BF16 CPUs; that package fetches kernels from the Hub, so the
    advice is wrong for offline use, and the fallback it announces is the normal path."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "kernels-community" not in record.getMessage()


logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_DropKernelsHubHint())
