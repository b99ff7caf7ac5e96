"""Acceptance models: expected tokens per verification by hand, seeded draws, bad values."""

import numpy as np
import pytest

from llmsim.errors import ConfigError
from llmsim.speculative import AcceptanceModel, draw_accepted


def test_geometric_expectation_by_hand():
    # alpha 0.6, k 4: 1 + 0.6 + 0.36 + 0.216 + 0.1296 = 2.3056 = (1 - 0.6^5) / (1 - 0.6)
    m = AcceptanceModel.rate(0.6)
    assert m.expected_tokens(4) == pytest.approx(2.3056, abs=1e-12)
    assert m.expected_tokens(0) == 1.0


def test_per_position_last_value_repeats():
    # p = (0.8, 0.5, 0.5): 1 + 0.8 + 0.4 + 0.2 = 2.4
    assert AcceptanceModel((0.8, 0.5)).expected_tokens(3) == pytest.approx(2.4, abs=1e-12)


def test_tree_width_widens_each_depth():
    # width 2 at alpha 0.5: 1 - 0.5^2 = 0.75 per depth; depth 2: 1 + 0.75 + 0.5625
    assert AcceptanceModel.rate(0.5).expected_tokens(2, width=2) == pytest.approx(2.3125, abs=1e-12)


def test_draws_are_seeded_and_deterministic():
    probs = np.full((50, 4), 0.7)
    ks = np.full(50, 4)
    a = draw_accepted(np.random.default_rng(3), probs, ks)
    b = draw_accepted(np.random.default_rng(3), probs, ks)
    c = draw_accepted(np.random.default_rng(4), probs, ks)
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()
    assert a.min() >= 0 and a.max() <= 4


def test_draws_match_the_expectation_on_a_long_run():
    rows = 200_000
    probs = np.full((rows, 4), 0.6)
    got = draw_accepted(np.random.default_rng(0), probs, np.full(rows, 4)).mean()
    # E[accepted] = 0.6 + 0.36 + 0.216 + 0.1296 = 1.3056; std of the mean < 0.003
    assert got == pytest.approx(1.3056, abs=0.01)


def test_rows_never_accept_past_their_own_k():
    probs = np.ones((3, 5))  # everything accepted
    assert draw_accepted(np.random.default_rng(0), probs, np.array([0, 2, 5])).tolist() == [0, 2, 5]


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), "high", True])
def test_acceptance_outside_unit_interval_is_refused(bad):
    with pytest.raises(ConfigError, match="acceptance: must be a probability in \\[0, 1\\]"):
        AcceptanceModel.parse(bad)


def test_empty_per_position_list_is_refused():
    with pytest.raises(ConfigError, match="at least one"):
        AcceptanceModel.parse([])


def test_token_tree_verifies_every_node():
    from llmsim.speculative.proposers import PROPOSERS
    from llmsim.speculative.scheduler import _depth_within

    tree = PROPOSERS.build({"kind": "medusa", "tree_width": 2})
    assert tree.verify_positions(3) == 2 + 4 + 8  # a full binary tree of depth 3: 14 nodes
    assert PROPOSERS.build({"kind": "medusa"}).verify_positions(3) == 3  # a chain
    # a budget that cuts the tree keeps the deepest complete level
    assert _depth_within(14, 2) == 3 and _depth_within(13, 2) == 2 and _depth_within(1, 2) == 0
