"""The static-batch estimate against its own definitions and a hand-computed decode sum."""

import pytest

from llmsim.cost import CostModel
from llmsim.cost.estimate import estimate
from llmsim.errors import ConfigError
from llmsim.specs import load_model


def test_estimate_definitions(test_hw):
    m = load_model("llama-3.1-8b")
    e = estimate(m, test_hw, batch_size=4, input_len=256, output_len=32)
    cm = CostModel(m, test_hw)
    steps = [cm.step_time([1] * 4, [256 + k] * 4).total_s for k in range(31)]
    assert e.prefill_s == pytest.approx(cm.step_time([256] * 4, [0] * 4).total_s)
    assert e.ttft_s == e.prefill_s
    assert e.decode_step_first_s == pytest.approx(steps[0])
    assert e.decode_step_last_s == pytest.approx(steps[-1])
    assert e.tpot_s == pytest.approx(sum(steps) / 31)
    assert e.e2e_s == pytest.approx(e.prefill_s + sum(steps))
    assert e.output_tokens_per_s == pytest.approx(4 * 32 / e.e2e_s)
    assert e.memory.fits and e.memory.kv_bytes_per_token == 128 * 1024


def test_single_output_token_has_no_decode(test_hw):
    e = estimate(load_model("llama-2-7b"), test_hw, batch_size=1, input_len=100, output_len=1)
    assert e.tpot_s == 0.0 and e.e2e_s == e.prefill_s


def test_batch_that_does_not_fit_is_flagged(test_hw):
    e = estimate(load_model("llama-2-7b"), test_hw, batch_size=512, input_len=2000, output_len=2000)
    assert not e.memory.fits and e.memory.max_batch_size < 512


@pytest.mark.parametrize(("kwargs", "field"), [
    (dict(batch_size=0, input_len=10, output_len=10), "batch_size"),
    (dict(batch_size=1, input_len=-5, output_len=10), "input_len"),
    (dict(batch_size=1, input_len=4000, output_len=1000), "max context"),
])
def test_bad_lengths(test_hw, kwargs, field):
    with pytest.raises(ConfigError, match=field):
        estimate(load_model("llama-2-7b"), test_hw, **kwargs)
