"""The shared finite-space rule (nni_pl/hpo/tuners/_seen.py): point numbering, unseen draws, exhaustion."""

from __future__ import annotations

import numpy as np
import pytest

from nni_pl.errors import NoMoreTrialError
from nni_pl.hpo.tuners._seen import FiniteIndex, SeenPoints
from nni_pl.space import SearchSpace
from nni_pl.testing import corpus
from nni_pl.testing.tuners import point_key

NESTED_12 = {  # 1 + 6 + 4 + 1 = 12 points
    "model": {
        "_type": "choice",
        "_value": [
            {"_name": "linear"},
            {
                "_name": "mlp",
                "width": {"_type": "choice", "_value": [16, 32]},
                "depth": {"_type": "randint", "_value": [1, 4]},
            },
            {
                "_name": "conv",
                "k": {"_type": "choice", "_value": [3, 5]},
                "pad": {"_type": "choice", "_value": ["same", "valid"]},
            },
            {"_name": "identity", "scale": 1.0},
        ],
    }
}
# 10^12 points: six randint parameters of 100 values each
HUGE = {f"p{i}": {"_type": "randint", "_value": [0, 100]} for i in range(6)}


@pytest.mark.parametrize(
    "space",
    [NESTED_12, *(c.space for c in corpus.FINITE_CASES), corpus.CORPUS_BY_NAME["clipping_q"].space],
    ids=["nested_12", *(c.name for c in corpus.FINITE_CASES), "clipping_q"],
)
def test_finite_index_numbers_points_in_grid_order(space):
    parsed = SearchSpace.parse(space)
    index = FiniteIndex(parsed)
    grid = list(parsed.grid())
    assert index.size == len(grid)
    for i, point in enumerate(grid):
        assert index.rank(point) == i
        assert point_key(parsed, index.point(i)) == point_key(parsed, point)
    assert index.rank({"model": {"_name": "nope"}}) is None


def test_finite_index_of_a_huge_space_is_exact_without_enumerating(monkeypatch):
    space = SearchSpace.parse(
        {
            **HUGE,
            "q": {"_type": "quniform", "_value": [0, 1e9, 0.5]},
            "c": {"_type": "choice", "_value": ["a"]},
        }
    )
    monkeypatch.setattr(SearchSpace, "grid", lambda self: pytest.fail("the space was enumerated"))
    index = FiniteIndex(space)
    assert index.size == 10**12 * (2 * 10**9 + 1)
    point = {**{f"p{i}": 7 * i for i in range(6)}, "q": 123456.5, "c": "a"}
    assert index.point(index.rank(point)) == point
    assert index.point(index.size - 1)["q"] == 1e9


def test_fresh_prefers_candidates_then_the_prior():
    seen = SeenPoints(SearchSpace.parse({"x": {"_type": "choice", "_value": [1, 2, 3]}}))
    rng = np.random.default_rng(0)
    seen.add({"x": 1})
    assert seen.fresh(rng, [{"x": 1}, None, {"x": 3}]) == {"x": 3}  # the first unseen proposal
    assert seen.fresh(rng, [{"x": 1.0}]) in ({"x": 2}, {"x": 3})  # 1.0 is 1: seen, so a prior draw


def test_fresh_finds_the_last_point_when_the_prior_keeps_missing_it():
    space = SearchSpace.parse(NESTED_12)
    seen = SeenPoints(space)
    grid = list(space.grid())
    for point in grid[:-1]:
        seen.add(point)
    rng = np.random.default_rng(1)
    # a prior that never draws the missing point: the fallback draws among unseen points uniformly
    last = seen.fresh(rng, sample=lambda: grid[0], tries=5)
    assert last == grid[-1]
    assert seen.add(last) and seen.exhausted
    with pytest.raises(NoMoreTrialError, match="all 12 points of the finite search space"):
        seen.fresh(rng)


def test_huge_finite_space_is_never_enumerated_and_never_declared_exhausted(monkeypatch):
    space = SearchSpace.parse(HUGE)
    monkeypatch.setattr(SearchSpace, "grid", lambda self: pytest.fail("the space was enumerated"))
    seen = SeenPoints(space)
    rng = np.random.default_rng(2)
    first = space.sample(rng)
    seen.add(first)
    for _ in range(200):  # a prior stuck on one point: the fallback probes at most len(seen) + 1 ranks
        point = seen.fresh(rng, sample=lambda: first, tries=2)
        assert seen.add(point)
    assert len(seen) == 201 and not seen.exhausted and seen.size == 10**12


def test_seen_points_survive_a_new_space_where_they_still_fit():
    seen = SeenPoints(SearchSpace.parse({"x": {"_type": "choice", "_value": [1, 2, 3]}}))
    seen.add({"x": 1})
    seen.add({"x": 3})
    wider = seen.rebuilt(SearchSpace.parse({"x": {"_type": "choice", "_value": [1, 2]}}))
    assert {"x": 1} in wider and len(wider) == 1 and wider.size == 2


def test_infinite_and_empty_spaces_never_run_out():
    seen = SeenPoints(SearchSpace.parse({"u": {"_type": "uniform", "_value": [0, 1]}}))
    rng = np.random.default_rng(3)
    for _ in range(50):
        assert seen.add(seen.fresh(rng))
    assert seen.size is None and not seen.exhausted
    empty = SeenPoints(SearchSpace.parse({}))
    assert empty.fresh(rng) == {} and empty.fresh(rng) == {} and not empty.exhausted
