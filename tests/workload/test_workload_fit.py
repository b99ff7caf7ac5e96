import numpy as np
import pytest
import yaml

from llmsim.errors import ConfigError
from llmsim.workload import generate_requests, load_trace, load_workload
from llmsim.workload.arrivals import ARRIVALS
from llmsim.workload.commands import main
from llmsim.workload.fit import fit_arrivals, fit_lengths


def arrivals(block: dict, n: int = 20_000, seed: int = 0) -> np.ndarray:
    return next(ARRIVALS.build(block).chunks(np.random.default_rng(seed)))[:n]


# Tolerances: with 20k gaps the MLE's standard error is ~1% for rates and shapes; we allow 3-5x that.
def test_recovers_gamma():
    fit = fit_arrivals(arrivals({"kind": "gamma", "rate_per_s": 5.0, "cv": 2.0}))
    assert fit.proposal["kind"] == "gamma" and "fits well" in fit.verdict
    assert fit.proposal["rate_per_s"] == pytest.approx(5.0, rel=0.04)
    assert fit.proposal["cv"] == pytest.approx(2.0, rel=0.04)


def test_recovers_poisson_rate():
    fit = fit_arrivals(arrivals({"kind": "poisson", "rate_per_s": 3.0}))
    assert "fits well" in fit.verdict
    assert fit.proposal["rate_per_s"] == pytest.approx(3.0, rel=0.03)
    gamma = next(c for c in fit.candidates if c.name == "gamma")
    assert gamma.block["cv"] == pytest.approx(1.0, abs=0.03)


def test_recovers_weibull():
    fit = fit_arrivals(arrivals({"kind": "weibull", "rate_per_s": 2.0, "shape": 0.6}))
    assert fit.proposal["kind"] == "weibull"
    assert fit.proposal["shape"] == pytest.approx(0.6, rel=0.03)
    assert fit.proposal["rate_per_s"] == pytest.approx(2.0, rel=0.05)


def test_on_off_traffic_gets_bursty():
    truth = {"kind": "bursty", "on_rate_per_s": 20.0, "mean_on_s": 5.0, "mean_off_s": 30.0}
    fit = fit_arrivals(arrivals(truth, 30_000))
    assert fit.proposal["kind"] == "bursty", fit.verdict
    assert "No renewal model fits" in fit.verdict
    # 30k arrivals ~ 300 bursts: sojourn means are known to ~6%, so allow 20%
    assert fit.proposal["on_rate_per_s"] == pytest.approx(20.0, rel=0.1)
    assert fit.proposal["mean_on_s"] == pytest.approx(5.0, rel=0.2)
    assert fit.proposal["mean_off_s"] == pytest.approx(30.0, rel=0.2)
    assert fit.proposal["on_cv"] == pytest.approx(1.0, abs=0.1)


def test_recovers_lognormal_lengths():
    x = load_workload_length({"kind": "lognormal", "mean": 900, "sigma": 0.7})
    fit = fit_lengths(x)
    assert fit.proposal["kind"] == "lognormal"
    assert fit.proposal["mean"] == pytest.approx(900, rel=0.03)
    assert fit.proposal["sigma"] == pytest.approx(0.7, rel=0.03)


def test_lengths_fall_back_to_empirical():
    rng = np.random.default_rng(0)
    bimodal = np.concatenate([rng.normal(100, 5, 5000), rng.normal(3000, 50, 5000)]).round().astype(int)
    fit = fit_lengths(bimodal)
    assert fit.proposal["kind"] == "empirical" and len(fit.proposal["quantiles"]) == 201
    assert "no parametric model fits" in fit.verdict


def load_workload_length(block: dict, n: int = 20_000) -> np.ndarray:
    from llmsim.workload.lengths import LENGTHS

    return LENGTHS.build(block).sample(np.random.default_rng(0), n)


def write_trace(path, spec_mapping, n=4000):
    spec = load_workload(spec_mapping)
    reqs = generate_requests(spec, np.random.default_rng(0), num_requests=n)
    lines = ["arrival_s,input_tokens,output_tokens"] + [
        f"{r.arrival_s},{r.input_tokens},{r.output_tokens}" for r in reqs
    ]
    path.write_text("\n".join(lines) + "\n")


def test_fit_command_writes_yaml_that_regenerates_similar_traffic(tmp_path, capsys):
    truth = {
        "arrival": {"kind": "gamma", "rate_per_s": 4.0, "cv": 1.5},
        "input_len": {"kind": "lognormal", "mean": 1000, "sigma": 0.6},
        "output_len": {"kind": "lognormal", "mean": 200, "sigma": 0.5},
        "correlation": 0.5,
    }
    write_trace(tmp_path / "t.csv", truth)
    out, png = tmp_path / "fitted.yaml", tmp_path / "fit.png"
    assert main(["fit", str(tmp_path / "t.csv"), "-o", str(out), "--plot", str(png)]) == 0
    assert "gamma" in capsys.readouterr().out and png.stat().st_size > 10_000
    data = yaml.safe_load(out.read_text())
    assert data["arrival"]["kind"] == "gamma" and data["arrival"]["cv"] == pytest.approx(1.5, rel=0.06)
    assert data["correlation"] == pytest.approx(0.5, abs=0.05)
    again = list(generate_requests(load_workload(out), np.random.default_rng(1), num_requests=4000))
    gaps = np.diff([r.arrival_s for r in again])
    assert gaps.std() / gaps.mean() == pytest.approx(1.5, rel=0.1)
    assert np.mean([r.input_tokens for r in again]) == pytest.approx(1000, rel=0.06)


def test_fit_length_only_trace_uses_given_rate(tmp_path, fixture_path, capsys):
    rng = np.random.default_rng(0)
    rows = [f"{a},{b},0,0" for a, b in zip(rng.integers(10, 900, 300), rng.integers(1, 90, 300), strict=True)]
    trace = tmp_path / "lens.csv"
    trace.write_text(
        "num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n" + "\n".join(rows) + "\n"
    )
    out = tmp_path / "w.yaml"
    assert main(["fit", str(trace), "-o", str(out), "--rate-per-s", "2.5", "--json"]) == 0
    assert yaml.safe_load(out.read_text())["arrival"] == {"kind": "poisson", "rate_per_s": 2.5}


def test_fit_command_user_errors(tmp_path, fixture_path):
    with pytest.raises(ConfigError, match="trace file not found"):
        main(["fit", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "x.yaml")])
    with pytest.raises(ConfigError, match="need at least 11 requests"):
        main(["fit", str(fixture_path("azure2023.csv")), "-o", str(tmp_path / "x.yaml")])
    with pytest.raises(ConfigError, match="unknown trace format"):
        main(["describe", str(fixture_path("azure2023.csv")), "--format", "excel"])


def test_real_azure_code_is_on_off(real_trace):
    fit = fit_arrivals(load_trace(real_trace("azure2023_code.csv")).arrival_s)
    gamma = next(c for c in fit.candidates if c.name == "gamma")
    assert gamma.quality == "poor"
    assert fit.proposal["kind"] == "bursty" and "on/off" in fit.verdict


def test_real_azure_conv_is_near_poisson(real_trace):
    fit = fit_arrivals(load_trace(real_trace("azure2023_conv.csv")).arrival_s)
    assert fit.proposal["kind"] in ("gamma", "weibull") and "fits well" in fit.verdict
    gamma = next(c for c in fit.candidates if c.name == "gamma")
    assert 1 / gamma.block["cv"] ** 2 == pytest.approx(
        0.87, abs=0.03
    )  # shape, as measured in the data README


def test_real_mooncake_fit_spreads_quantised_clock(real_trace, tmp_path, capsys):
    out = tmp_path / "mc.yaml"
    assert main(["fit", str(real_trace("mooncake_conversation_trace.jsonl")), "-o", str(out)]) == 0
    assert "spreading them over 3 s" in capsys.readouterr().err
    arrival = yaml.safe_load(out.read_text())["arrival"]
    assert arrival["rate_per_s"] == pytest.approx(3.4, rel=0.03)
