"""Figures: readable ticks, overload drawn as such, legends in sweep order with short labels, every point in
the CDFs, per-GPU throughput, the interactivity Pareto front; inspected as matplotlib objects."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import llmsim.plot_points as plot_points
import llmsim.plots as plots
from llmsim.experiment.results import Results

RATE = "sweep.workload.arrival.rate_per_s"


@pytest.fixture
def figures(monkeypatch):
    """Figures by name instead of files."""
    captured = {}

    def keep(fig, out_dir, name):
        captured[name] = fig
        return [name]

    monkeypatch.setattr(plots, "_save", keep)
    monkeypatch.setattr(plot_points, "_save", keep)
    yield captured
    plt.close("all")


def summary(chunks=(256, 512, 1024, 2048), rates=(1.0, 2.0, 3.0), seeds=(0, 1)):
    rows = []
    for c in chunks:
        for r in rates:
            for s in seeds:
                over = r == rates[-1] and c == chunks[0]
                rows.append({"point_id": f"c{c}r{r}s{s}", "seed": s, "sweep.scheduler.chunk_size": c, RATE: r,
                             "load_verdict": "overloaded" if over else ("inconclusive" if r == 2.0 else "stable"),
                             "slo_attainment": (0.5 if over else 0.98) - 0.01 * s, "slo_target_attainment": 0.9,
                             "slo_met": not over, "slo_ttft_s": 1.0,
                             "ttft_p50_s": 0.05 * r, "ttft_p99_s": 0.2 * r, "tpot_p50_s": 0.012 + 0.002 * r,
                             "tpot_p99_s": 0.02 + 0.002 * r, "itl_p99_s": 0.03 * r, "num_gpus": 2,
                             "output_tokens_per_s": 400.0 * r, "output_tokens_per_s_per_gpu": 200.0 * r})
    return pd.DataFrame(rows)


def tick_labels(axis) -> list[str]:
    """Labels of the ticks inside the axis' view (minor and major)."""
    axis.figure.canvas.draw()
    lo, hi = sorted(axis.get_view_interval())
    ticks = axis.get_major_ticks() + axis.get_minor_ticks()
    return [t.label1.get_text() for t in ticks if lo <= t.get_loc() <= hi and t.label1.get_text()]


def test_every_latency_panel_has_tick_labels(figures):
    s = summary()
    s.loc[s["load_verdict"] == "overloaded", "ttft_p99_s"] = 60.0  # TTFT p99 spans decades, TPOT less than one
    plots.plot_throughput_latency(s, None)
    fig = figures["throughput_latency"]
    for ax in fig.axes:
        assert len(tick_labels(ax.yaxis)) >= 2, ax.get_title()  # TPOT spans less than a decade here
        assert "per GPU" in ax.get_xlabel()
    # throughput per GPU, not the total
    xs = np.concatenate([line.get_xdata() for line in fig.axes[0].get_lines() if len(line.get_xdata())])
    assert xs.max() == pytest.approx(600.0)


def test_legend_in_sweep_order_with_short_labels_and_status(figures):
    plots.plot_attainment(summary(), None)
    ax = figures["slo_attainment"].axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:4] == ["chunk_size=256", "chunk_size=512", "chunk_size=1024", "chunk_size=2048"]
    assert any("overloaded" in t for t in labels) and any("inconclusive" in t for t in labels)
    assert "range over 2 seeds" in ax.get_title() and "TTFT <= 1 s" in ax.get_title()


def test_overloaded_points_are_crosses_and_goodput_is_a_bound(figures):
    plots.plot_attainment(summary(chunks=(256,)), None)
    ax = figures["slo_attainment"].axes[0]
    crosses = [line for line in ax.get_lines() if line.get_marker() == "X"]
    assert len(crosses) == 1 and crosses[0].get_xdata()[0] == 3.0
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert dashed  # segments towards non-stable points
    texts = [t.get_text() for t in ax.texts]
    assert "goodput >= 1 " in texts  # 2 is inconclusive, 3 overloaded: only a lower bound
    assert not [line for line in ax.get_lines() if line.get_marker() == "*"]


def test_pareto_front():
    x = np.array([1.0, 2.0, 3.0, 2.5, 0.5])
    y = np.array([5.0, 4.0, 1.0, 0.5, 4.0])
    assert list(plots.pareto_front(x, y)) == [0, 1, 2]


def test_interactivity_figure(figures):
    plots.plot_interactivity(summary(), None)
    ax = figures["throughput_vs_interactivity"].axes[0]
    assert "tokens/s per user" in ax.get_xlabel() and "per GPU" in ax.get_ylabel()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "Pareto front of the stable points" in legend


def test_cdfs_draw_every_point_and_timelines_one_per_configuration(tmp_path, figures):
    s = summary(chunks=(256, 512, 1024, 2048, 4096), rates=(1.0, 2.0), seeds=(0,))
    rng = np.random.default_rng(0)
    requests, steps = {}, {}
    for pid in s["point_id"]:
        n = 50
        requests[pid] = pd.DataFrame({"status": "finished", "phase": ["warmup"] * 5 + ["measured"] * (n - 5),
                                      "ttft_s": rng.uniform(0.01, 0.1, n), "tpot_s": rng.uniform(0.01, 0.02, n),
                                      "e2e_s": rng.uniform(1, 3, n)})
        steps[pid] = pd.DataFrame({"start_s": np.arange(100.0), "batch_size": 4, "kv_blocks_used": 10,
                                   "kv_blocks_total": 100, "num_in_system": 5})
    res = Results(summary=s, _requests=requests, _steps=steps)
    written = plot_points.plot_latency_cdfs(res, tmp_path)
    assert written == ["latency_cdf", "latency_cdf_2"]  # 5 configurations: 4 rows, then 1
    curves = sum(len([li for li in ax.get_lines() if len(li.get_xdata())]) for name in written
                 for ax in figures[name].axes)
    assert curves == 5 * 2 * 3  # every configuration x rate, in each of TTFT, TPOT, E2E
    assert len(figures["latency_cdf"].axes[0].get_lines()[0].get_xdata()) == 45  # measured requests only
    timelines = plot_points.plot_timelines(res, tmp_path)
    assert len(timelines) == 5 and "timeline_chunk_size=256" in timelines
    title = figures["timeline_chunk_size=256"].axes[0].get_title()
    assert "chunk_size=256" in title and "c256" not in title  # a label, not an id


@pytest.mark.parametrize("missing", [np.nan, None])
def test_points_without_measured_requests_are_left_out_with_a_note(tmp_path, figures, capsys, missing):
    """A very short closed-loop run: no measured requests, so no measured arrival rate (NaN read back from a
    results file, None in memory); the CDFs and timelines skip that point and say so instead of crashing."""
    s = pd.DataFrame({"point_id": ["short", "long"], "seed": [0, 0], "arrival_rate_rps": [missing, 2.0],
                      "load_verdict": ["inconclusive", "stable"]})
    rng = np.random.default_rng(0)
    requests = {pid: pd.DataFrame({"status": "finished", "phase": "measured", "ttft_s": rng.uniform(0.01, 0.1, 9),
                                   "tpot_s": rng.uniform(0.01, 0.02, 9), "e2e_s": rng.uniform(1, 3, 9)})
                for pid in s["point_id"]}
    requests["short"] = requests["short"].iloc[0:0]
    steps = {pid: pd.DataFrame({"start_s": np.arange(10.0), "batch_size": 1, "kv_blocks_used": 1,
                                "kv_blocks_total": 10, "num_in_system": 1}) for pid in s["point_id"]}
    res = Results(summary=s, _requests=requests, _steps=steps)
    assert plot_points.plot_latency_cdfs(res, tmp_path) == ["latency_cdf"]
    assert plot_points.plot_timelines(res, tmp_path) == ["timeline"]
    lines = figures["timeline"].axes[0].get_lines()
    assert [li.get_label() for li in lines] == ["2 req/s"]  # the point with a rate, drawn once
    err = capsys.readouterr().err
    assert err.count("left out point(s) short") == 2 and "no measured requests" in err


def test_timeline_read_a_block_at_a_time_draws_the_whole_table_means(tmp_path, monkeypatch):
    """A step table longer than a block, read back from its file in blocks: the binned means are those of
    the whole table (to rounding)."""
    import llmsim.experiment.results as results

    monkeypatch.setattr(results, "WRITE_ROWS", 1000)
    rng = np.random.default_rng(1)
    n = 4500
    steps = pd.DataFrame({"start_s": np.sort(rng.uniform(0, 50, n)), "batch_size": rng.integers(1, 64, n),
                          "kv_blocks_used": rng.integers(0, 900, n), "kv_blocks_total": 1000,
                          "num_in_system": rng.integers(0, 90, n)})
    results.write_table(steps, tmp_path / "points" / "p" / "steps")
    res = Results(summary=pd.DataFrame({"point_id": ["p"]}), directory=tmp_path)
    blocks = list(res.step_blocks("p", ("start_s",)))
    assert len(blocks) == 5  # read in blocks, not whole
    centre, counts, sums = plot_points._timeline_means(res, "p")
    t = steps["start_s"].to_numpy()
    edges = np.linspace(t.min(), t.max() + 1e-9, plot_points.TIMELINE_BINS + 1)
    which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, plot_points.TIMELINE_BINS - 1)
    assert np.array_equal(counts, np.bincount(which, minlength=plot_points.TIMELINE_BINS)) and counts.sum() == n
    kv = 100 * steps["kv_blocks_used"].to_numpy(float) / 1000
    for got, v in zip(sums, (steps["batch_size"], kv, steps["num_in_system"]), strict=True):
        want = np.bincount(which, weights=np.asarray(v, float), minlength=plot_points.TIMELINE_BINS)
        assert np.allclose(got, want, rtol=1e-12, atol=0)
    assert np.allclose(centre, (edges[:-1] + edges[1:]) / 2)


def test_cdf_of_a_long_run_is_thinned_to_its_own_points_and_keeps_both_ends():
    v = np.sort(np.random.default_rng(2).lognormal(0, 1, 100_000))
    x, y = plot_points._cdf_points(v)
    assert len(x) == plot_points.CDF_POINTS
    assert x[0] == v[0] and x[-1] == v[-1] and y[0] == 1 / len(v) and y[-1] == 1.0
    ranks = np.searchsorted(v, x, side="right")  # every drawn point is a point of the empirical CDF
    assert np.allclose(y, ranks / len(v)) and np.all(np.diff(x) >= 0)
    small = v[:50]
    xs, ys = plot_points._cdf_points(small)
    assert np.array_equal(xs, small) and np.array_equal(ys, np.arange(1, 51) / 50)


def test_measured_latencies_read_in_blocks_are_the_measured_rows(tmp_path, monkeypatch):
    import llmsim.experiment.results as results

    monkeypatch.setattr(results, "WRITE_ROWS", 300)
    rng = np.random.default_rng(4)
    n = 1000
    req = pd.DataFrame({"id": np.arange(n), "status": np.where(rng.random(n) < 0.9, "finished", "rejected"),
                        "phase": np.where(np.arange(n) < 100, "warmup", "measured"), "ttft_s": rng.random(n),
                        "tpot_s": rng.random(n), "e2e_s": rng.random(n)})
    results.write_table(req, tmp_path / "points" / "p" / "requests")
    res = Results(summary=pd.DataFrame({"point_id": ["p"]}), directory=tmp_path)
    got = plot_points._measured_latencies(res, "p")
    want = req[(req["status"] == "finished") & (req["phase"] == "measured")][["ttft_s", "tpot_s", "e2e_s"]]
    pd.testing.assert_frame_equal(got, want.reset_index(drop=True))
