"""Per-request and per-step records and their summaries (percentiles, throughput, SLO attainment and
goodput, MFU/MBU, the load verdict, Little's law)."""

from llmsim.metrics.histogram import LogHistogram
from llmsim.metrics.overload import Overload, detect_overload
from llmsim.metrics.records import REQUEST_COLUMNS, STEP_COLUMNS, RequestLog, StepLog
from llmsim.metrics.slo import evaluate_slo, slo_attainment
from llmsim.metrics.summary import latency_stats, littles_law, summarize
from llmsim.metrics.window import Window, mark_phases

__all__ = [
    "REQUEST_COLUMNS", "STEP_COLUMNS", "LogHistogram", "Overload", "RequestLog", "StepLog", "Window",
    "detect_overload", "evaluate_slo", "latency_stats", "littles_law", "mark_phases", "slo_attainment",
    "summarize",
]
