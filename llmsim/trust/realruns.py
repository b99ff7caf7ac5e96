"""Parsers of real vLLM serving runs (``../shared/data/real_runs/``) and the llmsim experiment a user would
write for each, so that predictions can be checked against measurements.

``load_stage_runs(path)`` reads ``vllm_0.15.1_runs.csv`` (one row per run and stage) into ``RealRun``
objects; ``experiment_for(run)`` is the experiment mapping that configures that deployment in llmsim: the
model, GPU, TP and replicas, the scheduler limits the run set, ``max_model_len``, and the load generator's
behaviour as its README states it (inference-perf ``shared_prefix`` data: a pool of groups x users fixed
prompts sent in turn, a fixed interval of 1/rate in back-to-back stages, exactly ``output_len`` tokens out).
``load_request_runs(path)`` reads the per-request vLLM 0.11.0 records for request-by-request replay.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmsim.errors import ConfigError

# Hugging Face model ids of the runs -> llmsim model names, or config.json files shipped with the data.
MODELS = {
    "meta-llama/Llama-2-7b-hf": "llama-2-7b",
    "meta-llama/Llama-2-70b-hf": "llama-2-70b",
    "mistralai/Mixtral-8x7B-v0.1": "mixtral-8x7b",
    "mistralai/Mixtral-8x22B-Instruct-v0.1": "mixtral-8x22b",
    "codellama/CodeLlama-34b-Instruct-hf": "codellama-34b",
    "meta-llama/Llama-3.1-70B-Instruct": "llama-3.1-70b",
    "Qwen/Qwen2.5-7B-Instruct": "qwen2.5-7b",
    "mistralai/Mistral-Nemo-Instruct-2407": "models/mistral-nemo-instruct-2407.json",
    "01-ai/Yi-34B": "models/yi-34b.json",
    "RedHatAI/Llama-4-Scout-17B-16E-Instruct-FP8-dynamic": "models/llama-4-scout-17b-16e-instruct-fp8-dynamic.json",
}
GPUS = {"H100-SXM-80GB": "h100-sxm", "A100-80GB": "a100-sxm-80gb"}
METRICS = ("ttft_mean", "ttft_p90", "ttft_p99", "e2e_mean", "e2e_p90", "e2e_p99", "itl")


@dataclass(frozen=True)
class Stage:
    rate_per_s: float
    duration_s: float
    measured: dict[str, float]  # METRICS in seconds (NaN where the data has none)


@dataclass(frozen=True)
class RealRun:
    """One measured deployment under a staged constant-rate load. ``whole`` holds the whole-run metrics."""

    set: str
    experiment: str
    model_id: str
    gpu: str
    tp: int
    dp: int
    precision: str
    max_num_seqs: int
    max_num_batched_tokens: int
    max_model_len: int
    kv_blocks_logged: int | None
    system_prompt_len: int
    question_len: int
    prompt_len: float  # measured mean prompt length (templating adds ~25 tokens)
    output_len: int
    groups: int
    users_per_group: int
    saturated: bool
    stages: tuple[Stage, ...]
    whole: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.experiment

    @property
    def model_family(self) -> str:
        """The model, for leave-one-model-out splits."""
        return self.model_id.split("/")[-1].lower()

    @property
    def num_requests(self) -> int:
        return int(round(sum(s.rate_per_s * s.duration_s for s in self.stages)))


def _f(row: dict, key: str) -> float:
    v = row.get(key, "")
    try:
        return float(v) if v not in ("", None) else math.nan
    except ValueError:
        return math.nan


def _measured(row: dict) -> dict[str, float]:
    out = {m: _f(row, f"{m}_ms") / 1e3 for m in METRICS if m != "itl"}
    out["itl"] = _f(row, "itl_derived_mean_ms") / 1e3
    out["throughput"] = _f(row, "req_per_s")  # completions per second, as the client counted them
    return out


def _gpu(name: str) -> str:
    for key, value in GPUS.items():
        if name.startswith(key):
            return value
    raise ConfigError(f"real runs: unknown GPU {name!r}")


def load_stage_runs(path: str | Path) -> list[RealRun]:
    """Every run of ``vllm_0.15.1_runs.csv``, stages in order, with whole-run and per-stage metrics."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    by_run: dict[str, list[dict]] = {}
    for row in rows:
        by_run.setdefault(row["experiment"], []).append(row)
    runs = []
    for name, group in by_run.items():
        whole = next(r for r in group if r["stage_index"] == "-1")
        stages = sorted((r for r in group if r["stage_index"] != "-1"), key=lambda r: int(r["stage_index"]))
        prompt = _f(whole, "prompt_len_mean_measured")
        sys_len, q_len = int(whole["system_prompt_len"]), int(whole["question_len"])
        blocks = _f(whole, "total_kv_blocks_gpu")
        runs.append(RealRun(
            set=whole["set"], experiment=name, model_id=whole["model"], gpu=_gpu(whole["gpu"]),
            tp=int(whole["tp"]), dp=int(_f(whole, "dp")) if not math.isnan(_f(whole, "dp")) else 1,
            precision=whole["precision"], max_num_seqs=int(whole["max_num_seqs"]),
            max_num_batched_tokens=int(whole["max_num_batched_tokens"]), max_model_len=int(whole["max_model_len"]),
            kv_blocks_logged=None if math.isnan(blocks) else int(blocks), system_prompt_len=sys_len,
            question_len=q_len, prompt_len=prompt if not math.isnan(prompt) else sys_len + q_len + 25.0,
            output_len=int(whole["output_len_spec"]), groups=int(float(whole["num_unique_system_prompts"])),
            users_per_group=int(float(whole["users_per_system_prompt"])),
            saturated=whole["saturated_flag"].strip().lower() == "true",
            stages=tuple(Stage(_f(r, "stage_rate_rps"), _f(r, "stage_duration_s"), _measured(r)) for r in stages),
            whole=_measured(whole),
        ))
    return runs


def model_ref(run: RealRun, data_dir: Path) -> str:
    ref = MODELS.get(run.model_id)
    if ref is None:
        raise ConfigError(f"real runs: no llmsim model for {run.model_id!r}")
    return str(data_dir / ref) if ref.startswith("models/") else ref


def precision_of(run: RealRun) -> str:
    return "fp8" if run.precision.upper() == "FP8" else "bf16"


def experiment_for(run: RealRun, data_dir: Path, engine: Any = "vllm-0.15", hardware: str | None = None,
                   seed: int = 0, time_scale: float = 1.0) -> dict[str, Any]:
    """The experiment mapping a user would write for ``run``. ``time_scale`` < 1 shortens every stage (the
    load is constant within a stage, so a shorter stage samples the same steady state)."""
    question = max(1, int(round(run.prompt_len)) - run.system_prompt_len)
    stages = [{"rate_per_s": s.rate_per_s, "duration_s": s.duration_s * time_scale} for s in run.stages]
    return {
        "name": run.experiment,
        "model": model_ref(run, data_dir),
        "hardware": hardware or run.gpu,
        "layout": {"tp": run.tp, "replicas": run.dp},
        "precision": precision_of(run),
        "engine": engine,
        "max_model_len": run.max_model_len,
        "scheduler": {"kind": "vllm", "max_num_seqs": run.max_num_seqs,
                      "max_num_batched_tokens": run.max_num_batched_tokens},
        # vLLM's data-parallel front end sends each request to the engine with the least work queued
        "router": {"kind": "least_outstanding"},
        "workload": {
            "description": "inference-perf shared_prefix, constant-rate stages",
            "arrival": {"kind": "stages", "stages": stages, "cv": 0.0},
            "input_len": {"kind": "fixed", "value": question},
            "output_len": {"kind": "fixed", "value": run.output_len},
            "prefix": {"kind": "prompt_pool", "groups": run.groups, "users_per_group": run.users_per_group,
                       "system_tokens": run.system_prompt_len},
        },
        "stop": {"num_requests": None, "duration_s": sum(s["duration_s"] for s in stages) + 1.0},
        "seeds": [seed],
    }


@dataclass(frozen=True)
class RequestRun:
    """Per-request records of one vLLM 0.11.0 run: arrivals, lengths and server-side TTFT/E2E (seconds)."""

    experiment: str
    model: str
    max_model_len: int
    max_num_batched_tokens: int
    max_num_seqs: int
    arrival_s: tuple[float, ...]
    prompt_tokens: tuple[int, ...]
    output_tokens: tuple[int, ...]
    ttft_s: tuple[float, ...]
    e2e_s: tuple[float, ...]
    shared_prefix_tokens: int = 0

    def requests(self) -> list:
        """The run's requests as llmsim replays them: exact arrivals and lengths, and the load generator's
        shared prefix as content identity at vLLM's 16-token block granularity (its full blocks are one
        content for every request; the rest of each prompt is the request's own)."""
        from llmsim.workload.request import Request  # noqa: PLC0415 (keeps this module import-light)

        shared = tuple(range(self.shared_prefix_tokens // PREFIX_BLOCK_TOKENS))
        return [Request(i, a, p, o, prefix_hashes=shared[:p // PREFIX_BLOCK_TOKENS],
                        prefix_chunk_tokens=PREFIX_BLOCK_TOKENS)
                for i, (a, p, o) in enumerate(zip(self.arrival_s, self.prompt_tokens, self.output_tokens,
                                                  strict=True))]


PREFIX_BLOCK_TOKENS = 16  # vLLM's block size in these runs (prefix ids at block granularity: exact identity)

# Model served and scheduler limits of each per-request run (the data's README), and the length of the
# prefix that guidellm's synthetic data prepends to every prompt of the run: `data.prefix_tokens` in the
# run's profile.yaml (inference-sim/inference-sim, eval/ground_truth/<experiment>/profile.yaml, commit
# e1a5cd74; guidellm SyntheticTextItemsGenerator draws one prefix and prepends it to every sample). The
# server's log of the prefill runs shows the matching prefix-cache hit rate (~33 % of ~3,050-token prompts).
REQUEST_RUNS = {
    "jan21-llama7b-train-1": ("llama-2-7b", 4096, 4096, 256, 0),
    "jan20-codellama-train-1": ("codellama-34b", 8192, 4096, 256, 0),
    "jan20-codellama-prefill-1": ("codellama-34b", 8192, 64, 32, 1024),
    "jan20-prefill-llama7b-tp1-1": ("codellama-34b", 4096, 4096, 256, 1024),
}


def load_request_runs(path: str | Path) -> list[RequestRun]:
    with Path(path).open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for name, (model, mml, mnbt, seqs, prefix) in REQUEST_RUNS.items():
        rr = sorted((r for r in rows if r["experiment"] == name), key=lambda r: float(r["arrival_s_rel"]))
        if not rr:
            continue
        out.append(RequestRun(name, model, mml, mnbt, seqs, tuple(float(r["arrival_s_rel"]) for r in rr),
                              tuple(int(r["prompt_tokens"]) for r in rr),
                              tuple(int(r["completion_tokens"]) for r in rr),
                              tuple(float(r["ttft_s"]) for r in rr), tuple(float(r["e2e_s"]) for r in rr),
                              prefix))
    return out
