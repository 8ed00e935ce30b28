"""Hardware-aware NAS: the latency table measured on this CPU, its predictions, and LatencyFilter in strategies."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from nni_pl._checks import ArgumentError
from nni_pl.nas import InputChoice, LayerChoice, ModelSpace, Repeat, ValueChoice, nn
from nni_pl.nas.hardware import LatencyFilter, LatencyPredictor, measure_latency_table, predictor_error
from nni_pl.nas.strategy import Random, RegularizedEvolution, Strategy, simulate

X = torch.zeros(1, 3, 16, 16)


class ConvStack(ModelSpace):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.op = LayerChoice(
            {
                "conv3x3": nn.Conv2d(16, 16, 3, padding=1),
                "conv5x5": nn.Conv2d(16, 16, 5, padding=2),
                "identity": nn.Identity(),
            },
            label="op",
        )
        ch = ValueChoice([8, 32, 64], label="ch")
        self.conv = nn.Conv2d(16, ch, 3, padding=1)
        self.fc = nn.Linear(ch, 10)

    def forward(self, x):
        x = self.conv(self.op(self.stem(x)).relu())
        return self.fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def predictor():
    return measure_latency_table(ConvStack(), X, repeats=15, warmup=3)


def _arch(op, ch):
    return {"op": op, "ch": ch}


def test_latency_table_has_an_entry_per_label_value(predictor):
    assert set(predictor.table) == {"op", "ch"}
    assert len(predictor.table["op"]) == 3 and len(predictor.table["ch"]) == 3
    assert all(ms >= 0 for row in predictor.table.values() for ms in row)
    meta = predictor.meta
    assert meta["input_shape"] == [1, 3, 16, 16] and meta["machine"]["torch"] == torch.__version__
    assert meta["machine"]["cpu_count"] and meta["machine"]["threads"] == 1


def test_latency_bigger_op_is_predicted_slower_than_identity(predictor):
    conv5, identity = predictor.table["op"][1], predictor.table["op"][2]
    assert conv5 > identity
    assert predictor.predict(_arch("conv5x5", 64)) > predictor.predict(_arch("identity", 8))


def test_latency_predictions_are_within_a_loose_factor_of_measured(predictor):
    archs = [_arch("conv3x3", 8), _arch("conv5x5", 64), _arch("identity", 32)]
    rows = predictor_error(predictor, ConvStack(), X, archs, repeats=15, warmup=3)
    assert [r[0] for r in rows] == archs
    for arch, predicted, measured in rows:
        assert measured / 3 <= predicted <= measured * 3, (arch, predicted, measured)


def test_latency_expected_latency_with_one_hot_probs_equals_predict_and_has_gradients(predictor):
    for op_i, op in enumerate(["conv3x3", "conv5x5", "identity"]):
        probs = {"op": torch.eye(3)[op_i], "ch": torch.eye(3)[2]}
        assert float(predictor.expected_latency(probs)) == pytest.approx(predictor.predict(_arch(op, 64)))
    logits = {"op": torch.zeros(3, requires_grad=True), "ch": torch.zeros(3, requires_grad=True)}
    expected = predictor.expected_latency({k: v.softmax(0) for k, v in logits.items()})
    expected.backward()
    assert logits["op"].grad is not None and logits["op"].grad.abs().sum() > 0
    # more weight on the slowest op raises the expectation
    slowest = max(range(3), key=lambda i: predictor.table["op"][i])
    assert logits["op"].grad[slowest] > 0


def test_latency_predictor_save_load_round_trip(predictor, tmp_path):
    path = tmp_path / "table.json"
    predictor.save(path)
    data = json.loads(path.read_text())
    assert data["format"] == "nni_pl.latency_table" and data["unit"] == "ms"
    assert data["meta"]["machine"]["processor"] and data["meta"]["input_shape"] == [1, 3, 16, 16]
    loaded = LatencyPredictor.load(path)
    assert loaded.table == predictor.table and loaded.base == predictor.base
    for arch in [_arch("conv3x3", 8), _arch("identity", 64)]:
        assert loaded.predict(arch) == predictor.predict(arch)


def test_latency_predict_refuses_an_unknown_value_naming_the_label(predictor):
    with pytest.raises(ValueError, match=r"'ch'.*128 is not one of its values"):
        predictor.predict(_arch("identity", 128))
    with pytest.raises(ValueError, match=r"'op'.*missing"):
        predictor.predict({"ch": 8})


def test_latency_filter_rejects_slow_archs_in_random_search_and_round_trips(predictor):
    space = ConvStack().search_space()
    latencies = sorted(
        predictor.predict(_arch(op, ch)) for op in ["conv3x3", "conv5x5", "identity"] for ch in [8, 32, 64]
    )
    threshold = latencies[4]  # the five fastest architectures are kept
    strategy = Random(model_filter=LatencyFilter(threshold=threshold, predictor=predictor))
    runs = simulate(strategy, space, lambda arch: 0.0, budget=20, seed=0)
    assert len(runs) == 5
    assert all(predictor.predict(arch) <= threshold for arch, _ in runs)
    rejected = [r for r in strategy.history if r.trial_id is None]
    assert len(rejected) == 4 and all(r.status == "failed" for r in rejected)

    config = json.loads(json.dumps(strategy.to_config()))  # as stored in the experiment's config
    assert config["kwargs"]["model_filter"]["class"] == "nni_pl.nas.hardware:LatencyFilter"
    rebuilt = Strategy.from_config(config)
    assert isinstance(rebuilt.model_filter, LatencyFilter) and rebuilt.model_filter.threshold == threshold
    assert [a for a, _ in simulate(rebuilt, space, lambda arch: 0.0, budget=20, seed=0)] == [
        a for a, _ in runs
    ]


def test_latency_filter_combines_with_the_space_constraint_filter(predictor):
    space = ConvStack().search_space()
    keep = LatencyFilter(threshold=1e9, predictor=predictor)
    strategy = RegularizedEvolution(population_size=2, sample_size=1, model_filter=keep)
    strategy.arch_filter = lambda arch: arch["ch"] != 64  # what StrategyTuner sets for a constrained space
    runs = simulate(strategy, space, lambda arch: 1.0, budget=30, seed=0)
    assert runs and all(arch["ch"] != 64 for arch, _ in runs)
    assert strategy.model_filter is keep and strategy.accepts(_arch("identity", 8))
    assert not strategy.accepts(_arch("identity", 64))


@pytest.mark.parametrize(
    ("threshold", "shown"), [(-1, "-1"), ("fast", "'fast'"), (float("nan"), "nan"), (True, "True")]
)
def test_latency_filter_refuses_a_bad_threshold_naming_the_field(predictor, threshold, shown):
    with pytest.raises(
        ArgumentError, match=rf"'LatencyFilter\.threshold': must be a number >= 0, got {shown}"
    ):
        LatencyFilter(threshold=threshold, predictor=predictor)


def test_latency_filter_bad_threshold_in_a_config_is_named_under_model_filter(predictor):
    config = Random(model_filter=LatencyFilter(10.0, predictor)).to_config()
    config["kwargs"]["model_filter"]["kwargs"]["threshold"] = -5
    with pytest.raises(ArgumentError, match=r"strategy\.kwargs\.model_filter\.kwargs\.threshold.*got -5"):
        Strategy.from_config(config)


def test_latency_filter_refuses_a_bad_predictor_and_strategies_a_bad_filter(tmp_path):
    with pytest.raises(ArgumentError, match=r"'LatencyFilter\.predictor'.*got 3"):
        LatencyFilter(threshold=1, predictor=3)
    with pytest.raises(ArgumentError, match=r"'LatencyFilter\.predictor'.*cannot read"):
        LatencyFilter(threshold=1, predictor=tmp_path / "missing.json")
    with pytest.raises(ArgumentError, match=r"'Random\.model_filter'.*callable.*got 5"):
        Random(model_filter=5)
    with pytest.raises(ArgumentError, match=r"'Random\.model_filter'.*cannot be stored"):
        Random(model_filter=lambda arch: True).to_config()


def test_latency_filter_accepts_a_model_frozen_from_the_space(predictor):
    keep = LatencyFilter(threshold=1e9, predictor=predictor)
    assert keep(ConvStack().freeze(_arch("conv3x3", 8)))
    with pytest.raises(TypeError, match="architecture dict or a frozen model"):
        keep(object())


class Nested(ModelSpace):
    """A LayerChoice inside a LayerChoice candidate, a Repeat with a chosen depth, and an InputChoice."""

    def __init__(self):
        super().__init__()
        inner = LayerChoice([nn.Conv2d(8, 8, 5, padding=2), nn.Identity()], label="inner")
        self.outer = LayerChoice([nn.Sequential(nn.Conv2d(8, 8, 1), inner), nn.Identity()], label="outer")
        self.blocks = Repeat(lambda i: nn.Conv2d(8, 8, 3, padding=1), (1, 3), label="depth")
        self.pick = InputChoice(2, 1, label="pick")

    def forward(self, x):
        a = self.outer(x)
        return self.pick([a, self.blocks(a)]).mean()


def test_latency_nested_choices_count_only_when_the_outer_picks_them_and_repeat_sums_blocks():
    x = torch.zeros(1, 8, 12, 12)
    p = measure_latency_table(Nested(), x, repeats=5, warmup=1)
    arch = {"outer": "0", "inner": "0", "depth": 1, "pick": [0]}
    assert "inner" not in p.table and "depth" in p.table
    # the inner choice matters only when the outer picks the candidate holding it
    off = {**arch, "outer": "1"}
    assert p.predict({**off, "inner": "0"}) == p.predict({**off, "inner": "1"})
    assert p.predict(arch) > p.predict({**arch, "inner": "1"})
    depth = p.table["depth"]
    assert depth[0] < depth[1] < depth[2]  # each block adds its own time
    probs = {
        "outer": torch.eye(2)[0],
        "inner": torch.eye(2)[0],
        "depth": torch.eye(3)[2],
        "pick": torch.eye(2)[0],
    }
    assert float(p.expected_latency(probs)) == pytest.approx(p.predict({**arch, "depth": 3}))


class WidthThenOp(ModelSpace):
    def __init__(self):
        super().__init__()
        ch = ValueChoice([4, 64], label="ch")
        self.conv = nn.Conv2d(3, ch, 3, padding=1)
        self.op = LayerChoice([nn.Conv2d(ch, ch, 3, padding=1), nn.Identity()], label="op")

    def forward(self, x):
        return self.op(self.conv(x)).mean()


def test_latency_a_choice_after_a_searched_width_is_timed_per_width_and_threads_are_restored():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        p = measure_latency_table(WidthThenOp(), X, repeats=5, warmup=1, threads=1)
        assert torch.get_num_threads() == 2 and p.meta["machine"]["threads"] == 1
    finally:
        torch.set_num_threads(before)
    op = next(t for t in p.terms if t.kind == "LayerChoice")
    assert op.labels == ["ch", "op"] and len(op.values) == 4  # the op's input changes with ch
    assert set(p.table) == set()  # neither label adds up on its own
    # the inner conv of op is a ValueChoice layer, counted only when op picks it
    assert p.predict({"ch": 64, "op": "0"}) > p.predict({"ch": 4, "op": "0"})
    with pytest.raises(ArgumentError, match=r"'measure_latency_table\.threads'.*got 0"):
        measure_latency_table(WidthThenOp(), X, threads=0)


def test_latency_strategy_import_stays_free_of_torch():
    code = "import sys, nni_pl.nas.strategy, nni_pl.nas.hardware; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_latency_table_of_the_proxylessnas_hub_space_predicts_whole_models():
    from nni_pl.nas.hub.proxyless import ProxylessNAS

    space, x = ProxylessNAS(), torch.zeros(1, 3, 32, 32)
    p = measure_latency_table(space, x, repeats=10, warmup=2)
    assert {t.kind for t in p.terms} == {"Repeat", "ValueLayer"}
    rows = predictor_error(p, space, x, [space.random_arch(seed=i) for i in range(4)], repeats=10, warmup=2)
    mape = sum(abs(pred - real) / real for _, pred, real in rows) / len(rows)
    assert mape < 0.5, rows  # about 1% on an idle machine; blocks in a Repeat count up to the chosen depth
