"""The timing harness on real CPU work: warm-up, samples sized to a minimum duration, median and spread."""

import time

import pytest

from llmsim.calibration.timing import Harness, relative_iqr

torch = pytest.importorskip("torch")


def test_relative_iqr():
    assert relative_iqr([1.0]) == 0.0
    assert relative_iqr([1.0, 1.0, 1.0]) == 0.0
    assert relative_iqr([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(2.0 / 3.0)


def test_sleep_is_timed_to_its_duration():
    h = Harness(torch, "cpu", min_repeats=3, max_repeats=5, min_sample_s=2e-3)
    t = h.time(lambda: time.sleep(1e-3))
    assert 0.9e-3 < t.median_s < 10e-3  # sleep overshoots on a loaded machine
    assert 3 <= t.samples <= 5 and t.calls_per_sample >= 1 and t.spread >= 0


def test_small_kernels_are_batched_into_samples():
    x = torch.ones(16)
    h = Harness(torch, "cpu", min_repeats=3, max_repeats=4, min_sample_s=1e-3)
    t = h.time(lambda: x.add_(1.0))
    assert t.calls_per_sample > 10 and 0 < t.median_s < 1e-4


def test_bad_repeats():
    with pytest.raises(ValueError, match="min_repeats"):
        Harness(torch, "cpu", min_repeats=0)
