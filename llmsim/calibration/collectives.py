"""All-reduce through torch.distributed (NCCL across the visible GPUs; gloo on a CPU, for tests). The
algorithm model ``llmsim.cost.collectives.allreduce_s`` is fitted to it by
``llmsim.calibration.physics_fit.fit_allreduce_terms`` (torch.distributed's all-reduce is NCCL's ring).

Every rank must issue the same number of collectives, so the schedule is fixed up front (calls per sample
decided on rank 0 and broadcast) rather than adaptive as in ``timing.Harness``.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from llmsim.calibration.measurements import Case, Measurement
from llmsim.calibration.timing import relative_iqr


def _worker(rank: int, world: int, backend: str, sizes: list[int], samples: int, init: str, out: str) -> None:
    import torch  # noqa: PLC0415 (a fresh process)
    import torch.distributed as dist  # noqa: PLC0415

    cuda = backend == "nccl"
    if cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"file://{init}", rank=rank, world_size=world)
    device = torch.device(f"cuda:{rank}" if cuda else "cpu")
    results = []
    for size in sizes:
        x = torch.zeros(max(1, size // 2), dtype=torch.bfloat16 if cuda else torch.float32, device=device)
        for _ in range(3):
            dist.all_reduce(x)
        calls = torch.tensor([_calls(lambda x=x: dist.all_reduce(x), cuda, torch)], device=device)
        dist.broadcast(calls, 0)
        per_call = []
        for _ in range(samples):
            dist.barrier()
            t = torch.tensor([_timed(lambda x=x: dist.all_reduce(x), int(calls.item()), cuda, torch)],
                             device=device, dtype=torch.float64)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)  # a collective ends when its slowest rank does
            per_call.append(float(t.item()))
        results.append({"bytes": size, "median_s": statistics.median(per_call), "spread": relative_iqr(per_call),
                        "samples": samples, "calls": int(calls.item())})
    if rank == 0:
        Path(out).write_text(json.dumps(results))
    dist.destroy_process_group()


def _timed(fn, calls: int, cuda: bool, torch: Any) -> float:
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) * 1e-3 / calls
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def _calls(fn, cuda: bool, torch: Any, min_sample_s: float = 2e-3) -> int:
    one = min(_timed(fn, 1, cuda, torch) for _ in range(2))
    return int(max(1, min(1000, round(min_sample_s / max(one, 1e-7)))))


def measure_allreduce(torch: Any, world: int, sizes: list[int], *, backend: str = "nccl",
                      samples: int = 5) -> list[Measurement]:
    """Median seconds per all-reduce of each payload size (bytes) across ``world`` ranks, one process each."""
    import torch.multiprocessing as mp  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        init, out = str(Path(tmp) / "init"), str(Path(tmp) / "out.json")
        mp.spawn(_worker, args=(world, backend, sizes, samples, init, out), nprocs=world, join=True)
        rows = json.loads(Path(out).read_text())
    return [Measurement(Case.make("allreduce", "nccl" if backend == "nccl" else backend, "bf16" if backend == "nccl" else "fp32", ranks=world,
                                  bytes=r["bytes"]), r["median_s"], r["spread"], r["samples"], r["calls"])
            for r in rows]
