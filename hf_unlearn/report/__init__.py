"""A report people look at: one self-contained HTML page per run (:func:`write_report`), from the run's results,
training log, robustness and search, with its non-sensitive figures as PNG files for the model card."""

from .guide import MetricGuide, guide
from .load import RunRecord, load_run
from .page import write_report

__all__ = ["MetricGuide", "RunRecord", "guide", "load_run", "write_report"]
