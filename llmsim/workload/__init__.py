"""Traffic: requests, arrival processes, length distributions, prefix structure, trace loading and fitting.

Public API::

    spec = load_workload("workloads/chat.yaml")            # or a mapping, with where="exp.yaml: workload"
    for req in generate_requests(spec, rng, num_requests=1000): ...
    faster = with_rate(spec, 8.0)                            # same shape, another load (rate sweeps)
    trace = load_trace(path, format="auto", start_s=..., speed=2.0, strict=False)
    describe_trace(trace); fit_trace(trace).workload_mapping()   # what `llmsim workload describe|fit` print

Pluggable parts register by name in ``ARRIVALS``, ``LENGTHS``, ``PREFIXES`` and ``TRACE_FORMATS``.
"""

from typing import TYPE_CHECKING

from llmsim.lazy import lazy_exports
from llmsim.workload.arrivals import ARRIVALS, ArrivalProcess, ClosedLoop
from llmsim.workload.generate import generate_requests, with_rate
from llmsim.workload.lengths import LENGTHS, LengthDist
from llmsim.workload.prefix import PREFIXES
from llmsim.workload.request import Request
from llmsim.workload.spec import TrafficClass, WorkloadSpec, load_workload
from llmsim.workload.traces import TRACE_FORMATS, MalformedRow, TraceData, load_trace, save_trace_jsonl

# trace description and fitting (scipy.stats) are imported on first use
__getattr__ = lazy_exports(__name__, {"TraceSummary": "describe", "describe_trace": "describe",
                                      "WorkloadFit": "fit", "fit_trace": "fit"}, globals())

__all__ = [
    "ARRIVALS",
    "LENGTHS",
    "PREFIXES",
    "TRACE_FORMATS",
    "ArrivalProcess",
    "ClosedLoop",
    "LengthDist",
    "MalformedRow",
    "Request",
    "TraceData",
    "TraceSummary",
    "TrafficClass",
    "WorkloadFit",
    "WorkloadSpec",
    "describe_trace",
    "fit_trace",
    "generate_requests",
    "load_trace",
    "load_workload",
    "save_trace_jsonl",
    "with_rate",
]

if TYPE_CHECKING:
    from llmsim.workload.describe import TraceSummary, describe_trace
    from llmsim.workload.fit import WorkloadFit, fit_trace
