"""NAS-Bench-201: a small file in the official .pth format converted, then queried in NNI's record format."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from nni_pl._checks import ArgumentError
from nni_pl.errors import StoreError
from nni_pl.nas.benchmarks import BenchmarkNotFoundError, query_nb201_trial_stats
from nni_pl.nas.benchmarks.nasbench201 import db_gen

torch = pytest.importorskip("torch")

ARCH_STRS = [
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
]
ARCH0 = {
    "0_1": "avg_pool_3x3",
    "0_2": "conv_1x1",
    "1_2": "skip_connect",
    "0_3": "conv_1x1",
    "1_3": "skip_connect",
    "2_3": "skip_connect",
}


def _result(base: float, epochs: int, splits: tuple[str, ...]) -> dict:
    """One (dataset, seed) result as the official file stores it: per-epoch dicts, eval keys '<split>@<epoch>'."""
    return {
        "params": 0.5 + base / 1000,
        "flop": 80.0 + base,
        "latency": [0.01 + base / 1e4],
        "train_acc1es": {e: base + e for e in range(epochs)},
        "train_losses": {
            e: (math.nan if e == epochs - 1 and base >= 60 else 2.0 - e / 10) for e in range(epochs)
        },
        "train_times": {e: 10.0 for e in range(epochs)},
        "eval_acc1es": {f"{s}@{e}": base + e + i for e in range(epochs) for i, s in enumerate(splits)},
        "eval_losses": {f"{s}@{e}": 1.0 for e in range(epochs) for s in splits},
        "eval_times": {f"{s}@{e}": 0.5 for e in range(epochs) for s in splits},
    }


def make_official_file(path: Path) -> Path:
    arch2infos = {}
    for index, arch_str in enumerate(ARCH_STRS):
        results = {}
        for dataset, splits in (
            ("cifar10-valid", ("x-valid", "ori-test")),
            ("ImageNet16-120", ("x-valid", "x-test", "ori-test")),
        ):
            for seed, base in ((777, 40.0 + index), (888, 50.0 + index)):
                results[(dataset, seed)] = _result(
                    base + (20 if dataset != "cifar10-valid" else 0), 12, splits
                )
        arch2infos[index] = {"less": {"arch_str": arch_str, "all_results": results}}
    torch.save({"meta_archs": ARCH_STRS, "arch2infos": arch2infos, "total_archs": 2}, path)
    return path


@pytest.fixture(scope="module")
def nb201_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("nb201")
    src = make_official_file(folder / "NAS-Bench-201-small.pth")
    db_gen.main([str(src), "--output", str(folder / "nasbench201.db")])
    return folder / "nasbench201.db"


def test_nb201_query_returns_nni_records(nb201_db: Path) -> None:
    rows = list(query_nb201_trial_stats(ARCH0, 12, "cifar10-valid", database=nb201_db))
    assert [r["seed"] for r in rows] == [777, 888]
    r = rows[0]
    assert r["config"] == {
        "id": r["config"]["id"],
        "arch": ARCH0,
        "num_epochs": 12,
        "num_channels": 16,
        "num_cells": 5,
        "dataset": "cifar10-valid",
    }
    # cifar10-valid: valid is x-valid, test and ori-test are ori-test (split index 1)
    assert (r["train_acc"], r["valid_acc"], r["test_acc"], r["ori_test_acc"]) == (51.0, 51.0, 52.0, 52.0)
    assert r["training_time"] == 120.0 and r["latency"] == pytest.approx(0.014)
    assert "intermediates" not in r


def test_nb201_intermediates_wildcards_and_nan(nb201_db: Path) -> None:
    rows = list(
        query_nb201_trial_stats(None, None, "imagenet16-120", include_intermediates=True, database=nb201_db)
    )
    assert len(rows) == 4
    inter = rows[0]["intermediates"]
    assert [i["current_epoch"] for i in inter] == list(range(1, 13))
    assert "trial" not in inter[0] and inter[0]["ori_test_acc"] == 60.0 + 2
    # a NaN loss is stored as None
    assert rows[0]["train_loss"] is None and inter[-1]["train_loss"] is None
    assert len(list(query_nb201_trial_stats(None, None, None, database=nb201_db))) == 8
    assert list(query_nb201_trial_stats(ARCH0, 200, None, database=nb201_db)) == []


def test_nb201_mean_averages_seeds(nb201_db: Path) -> None:
    (mean,) = query_nb201_trial_stats(
        ARCH0, 12, "cifar10-valid", reduction="mean", include_intermediates=True, database=nb201_db
    )
    assert "seed" not in mean and "id" not in mean
    assert mean["valid_acc"] == pytest.approx((51.0 + 61.0) / 2)
    assert mean["config"]["arch"] == ARCH0
    assert mean["intermediates"][0]["train_acc"] == pytest.approx(45.0)
    assert len(mean["intermediates"]) == 12


def test_nb201_database_found_through_nasbenchmark_dir(
    nb201_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NASBENCHMARK_DIR", str(nb201_db.parent))
    assert len(list(query_nb201_trial_stats(ARCH0, None, None))) == 4


def test_nb201_missing_database_says_how_to_generate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NASBENCHMARK_DIR", str(tmp_path))
    with pytest.raises(
        BenchmarkNotFoundError,
        match=r"nasbench201\.db.*python -m nni_pl\.nas\.benchmarks\.nasbench201\.db_gen",
    ):
        query_nb201_trial_stats(ARCH0, 200, "cifar100")


def test_nb201_bad_arguments_are_named(nb201_db: Path) -> None:
    with pytest.raises(ArgumentError, match=r"query_nb201_trial_stats\.arch.*conv_5x5"):
        query_nb201_trial_stats({**ARCH0, "0_1": "conv_5x5"}, 200, None, database=nb201_db)
    with pytest.raises(ArgumentError, match=r"dataset.*'cifar1000'"):
        query_nb201_trial_stats(None, 200, "cifar1000", database=nb201_db)
    with pytest.raises(ArgumentError, match=r"reduction.*'median'"):
        query_nb201_trial_stats(None, 200, None, reduction="median", database=nb201_db)


def test_nb201_parse_arch_str_and_bad_file(tmp_path: Path) -> None:
    assert db_gen.parse_arch_str(ARCH_STRS[0]) == ARCH0
    with pytest.raises(StoreError, match="architecture string"):
        db_gen.parse_arch_str("|conv_9x9~0|")
    torch.save({"something": 1}, tmp_path / "x.pth")
    with pytest.raises(StoreError, match="arch2infos"):
        db_gen.convert(tmp_path / "x.pth", tmp_path / "out.db")


def test_nb201_simulate_a_model_space_against_the_table(nb201_db: Path) -> None:
    from nni_pl.nas import LayerChoice, ModelSpace
    from nni_pl.nas.benchmarks import get_benchmark, simulate
    from nni_pl.nas.strategy import GridSearch

    arch1 = db_gen.parse_arch_str(ARCH_STRS[1])

    class TwoWay(ModelSpace):
        """Each edge chooses between the two table architectures' ops, labelled like NasBench201Cell's."""

        def __init__(self) -> None:
            super().__init__()
            self.edges = torch.nn.ModuleList(
                LayerChoice(
                    {op: torch.nn.Linear(4, 4) for op in dict.fromkeys((ARCH0[e], arch1[e]))},
                    label=f"cell/{e}",
                )
                for e in sorted(ARCH0)
            )

        def forward(self, x):
            return sum(edge(x) for edge in self.edges)

    table = get_benchmark("nasbench201", database=nb201_db, dataset="cifar10-valid", num_epochs=12)
    assert len(table) == 2
    result = simulate(TwoWay(), GridSearch(), max_trials=100, seed=0, benchmark=table, reduction="mean")
    assert len(result.trials) == 64
    found = [t for t in result.trials if t.value is not None]
    assert len(found) == 2  # the two architectures of the table; the others are failed trials
    assert {t.arch["cell/0_1"] for t in found} == {"avg_pool_3x3", "conv_3x3"}
    assert result.trajectory[-1] == pytest.approx(max(t.value for t in found))
