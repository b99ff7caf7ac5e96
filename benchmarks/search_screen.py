"""Screen throughput of ``llmsim search``: candidates judged per CPU second on a 7,200-candidate grid
(Llama-3.1-70B chat on three calibrated GPU types; every knob the spec offers). Not part of the tests.

    PYTHONPATH=$PWD python benchmarks/search_screen.py
"""

from __future__ import annotations

import time
from pathlib import Path

from llmsim.search.run import resolve, run_screen
from llmsim.search.spec import parse_spec

SPEC = {
    "name": "screen-benchmark",
    "models": [{"name": "chat", "model": "llama-3.1-70b", "workload": "chat", "rate_per_s": 8}],
    "slo": {"ttft_s": 2.0, "tpot_s": 0.1, "attainment": 0.9},
    "gpus": {"h100-sxm-calibrated": {"count": 32}, "a100-sxm-80gb-calibrated": {"count": 32},
             "h200-calibrated": {"count": 16}},
    "knobs": {"tp": [1, 2, 4, 8], "pp": [1, 2], "precision": ["bf16", "fp8"], "kv_dtype": [None, "fp8"],
              "modes": ["colocated", "disaggregated"], "max_num_batched_tokens": [1024, 2048, 4096, 8192, 16384],
              "max_num_seqs": [32, 64, 128, 256, 512]},
}


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    ctx = resolve(parse_spec(SPEC, "benchmark"), repo / "experiments", "benchmark")
    for _ in range(3):
        t0 = time.process_time()
        screened, per_s = run_screen(ctx)
        kept = sum(s.kept for s in screened)
        print(f"{len(screened)} candidates, {kept} kept, {time.process_time() - t0:.3f} CPU s: "
              f"{per_s:,.0f} candidates per CPU second")


if __name__ == "__main__":
    main()
