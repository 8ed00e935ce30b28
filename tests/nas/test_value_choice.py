"""NNI 2.x ValueChoice semantics: indexing, comparison and bitwise operators, max/min, all_options,
inner_choices and evaluate with a list of values."""

from __future__ import annotations

import math

import pytest
import torch

from nni_pl.nas import ArchitectureError, ModelSpace, ValueChoice, ValueExpr, nn


def test_value_choice_indexing_lists_and_dicts() -> None:
    pair = ValueChoice([[3, 16], [5, 32]], label="pair")
    cfg = ValueChoice([{"k": 3, "c": 8}, {"k": 5, "c": 16}], label="cfg")
    assert isinstance(pair[0], ValueExpr)
    assert pair[1].evaluate({"pair": [5, 32]}) == 32
    assert cfg["c"].evaluate({"cfg": {"k": 5, "c": 16}}) == 16
    assert list(cfg["k"].all_options()) == [3, 5]
    conv = nn.Conv2d(3, cfg["c"], kernel_size=pair[0], padding=(pair[0] - 1) // 2)
    assert (conv.out_channels, conv.kernel_size) == (8, (3, 3))
    frozen = conv.freeze({"cfg": {"k": 5, "c": 16}, "pair": [5, 32]})
    assert (frozen.out_channels, frozen.kernel_size, frozen.padding) == (16, (5, 5), (2, 2))
    with pytest.raises(TypeError, match=r"cannot be iterated"):
        list(pair)


def test_value_choice_comparison_and_bitwise_operators_are_lazy() -> None:
    a = ValueChoice([1, 4], label="a")
    b = ValueChoice([2, 3], label="b")
    cases = {
        "lt": (a < b, [True, True, False, False]),
        "le": (a <= 3, [True, True, False, False]),
        "gt": (a > b, [False, False, True, True]),
        "ge": (4 >= a, [True, True, True, True]),
        "and": (a & b, [0, 1, 0, 0]),
        "or": (a | b, [3, 3, 6, 7]),
        "xor": (a ^ b, [3, 2, 6, 7]),
        "rand": (6 & a, [0, 0, 4, 4]),
        "invert": (~a, [-2, -2, -5, -5]),
    }
    for name, (expr, expected) in cases.items():
        assert isinstance(expr, ValueExpr), name
        got = [expr.evaluate({"a": x, "b": y}) for x in (1, 4) for y in (2, 3)]
        assert got == expected, name
    flag = ValueChoice([True, False], label="flag")
    assert [(~flag & (a > 2)).evaluate({"flag": f, "a": 4}) for f in (True, False)] == [-2 & True, -1 & True]
    assert ValueChoice.condition(a > 2, "big", "small").evaluate({"a": 4}) == "big"
    with pytest.raises(TypeError, match=r"no truth value"):
        bool(a < 3)
    assert (a == a) is True and hash(a) == hash(a)  # equality keeps identity semantics


def test_value_choice_max_min_of_plain_values_and_iterables() -> None:
    assert ValueChoice.max(3, 5) == 5 and ValueChoice.min(3, 5) == 3
    assert ValueChoice.max([3, 7, 5]) == 7 and ValueChoice.min((3, 7, 5)) == 3
    a = ValueChoice([1, 8], label="a")
    assert ValueChoice.max(a, 5).evaluate({"a": 8}) == 8
    assert ValueChoice.min([a, 5]).evaluate({"a": 8}) == 5
    assert ValueChoice.to_int(2.7) == 2 and ValueChoice.to_float(2) == 2.0
    assert math.floor(a / 3).evaluate({"a": 8}) == 2 and math.ceil(a / 3).evaluate({"a": 8}) == 3
    with pytest.raises(TypeError, match=r"iterable or at least two"):
        ValueChoice.max(3)


def test_all_options_inner_choices_and_evaluate_with_a_list() -> None:
    a = ValueChoice([1, 2], label="a")
    b = ValueChoice([10, 20], label="b")
    expr = a * b + a
    assert [c.label for c in expr.inner_choices()] == ["a", "b", "a"]
    assert list(expr.all_options()) == [11, 21, 22, 42]
    assert list(a.all_options()) == [1, 2]
    assert expr.evaluate([2, 10, 2]) == 22
    assert a.evaluate([2]) == 2
    with pytest.raises(ArchitectureError, match=r"got 2 values .* for 3 choices"):
        expr.evaluate([2, 10])
    with pytest.raises(ArchitectureError, match=r"'a'.*two values"):
        expr.evaluate([1, 10, 2])
    with pytest.raises(ArchitectureError, match=r"'b'.*value 30 is not one of"):
        expr.evaluate([1, 30, 1])


def test_operators_work_inside_a_model_space() -> None:
    class Space(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            cfg = ValueChoice([[8, 0.0], [16, 0.5]], label="cfg")
            self.fc = nn.Linear(4, cfg[0])
            self.drop = nn.Dropout(cfg[1])
            self.head = nn.Linear(ValueChoice.max(cfg[0], 12), 2)
            self.pad = nn.Linear(cfg[0], ValueChoice.max(cfg[0], 12))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.pad(self.drop(self.fc(x))))

    space = Space()
    assert space.search_space() == {"cfg": {"_type": "choice", "_value": [[8, 0.0], [16, 0.5]]}}
    model = space.freeze({"cfg": [16, 0.5]})
    assert (model.fc.out_features, model.drop.p, model.head.in_features) == (16, 0.5, 16)
    assert model(torch.zeros(2, 4)).shape == (2, 2)
