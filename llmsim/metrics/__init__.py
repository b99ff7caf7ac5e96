"""Per-request and per-step records and their summaries (percentiles, throughput, SLO attainment, MFU/MBU,
Little's law and overload cross-checks)."""

from llmsim.metrics.histogram import LogHistogram
from llmsim.metrics.records import REQUEST_COLUMNS, STEP_COLUMNS, RequestLog, StepLog
from llmsim.metrics.summary import (
    Overload,
    detect_overload,
    latency_stats,
    littles_law,
    slo_attainment,
    summarize,
)

__all__ = [
    "REQUEST_COLUMNS", "STEP_COLUMNS", "LogHistogram", "Overload", "RequestLog", "StepLog", "detect_overload",
    "latency_stats", "littles_law", "slo_attainment", "summarize",
]
