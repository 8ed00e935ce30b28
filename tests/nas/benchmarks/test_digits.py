"""The shipped digits benchmark: its contents, its query, and that its batched training is per-model training."""

from __future__ import annotations

import statistics
import subprocess
import sys

import pytest

from nni_pl._checks import ArgumentError
from nni_pl.nas.benchmarks.digits import DATABASE, EDGES, OPS, query_digits_trial_stats

BEST_KNOWN = {
    "0_1": "linear",
    "0_2": "skip_connect",
    "0_3": "none",
    "1_2": "linear",
    "1_3": "skip_connect",
    "2_3": "linear",
}
ALL_NONE = dict.fromkeys(EDGES, "none")


def test_digits_database_ships_with_the_package() -> None:
    assert DATABASE.is_file()
    assert DATABASE.stat().st_size < 8 * 2**20


def test_digits_table_holds_every_architecture_three_seeds_twelve_epochs() -> None:
    rows = list(query_digits_trial_stats(None))
    assert len(rows) == len(OPS) ** len(EDGES) * 3
    archs = {tuple(sorted(r["config"]["arch"].items())) for r in rows}
    assert len(archs) == 729
    assert {r["seed"] for r in rows} == {0, 1, 2}
    assert all(0 <= r["valid_acc"] <= 100 and r["parameters"] > 0 and r["training_time"] > 0 for r in rows)
    # the spread a search can exploit: a zero cell is chance level, most cells learn digits well
    valid = sorted(r["valid_acc"] for r in rows)
    assert valid[0] < 20 and statistics.median(valid) > 85 and valid[-1] > 95


def test_digits_query_intermediates_and_mean() -> None:
    runs = list(query_digits_trial_stats(BEST_KNOWN, 12, include_intermediates=True))
    assert [r["seed"] for r in runs] == [0, 1, 2]
    inter = runs[0]["intermediates"]
    assert [i["current_epoch"] for i in inter] == list(range(1, 13))
    assert inter[-1]["valid_acc"] == runs[0]["valid_acc"] and inter[-1]["test_loss"] == runs[0]["test_loss"]
    (mean,) = query_digits_trial_stats(BEST_KNOWN, reduction="mean", include_intermediates=True)
    assert mean["valid_acc"] == pytest.approx(statistics.mean(r["valid_acc"] for r in runs))
    assert mean["intermediates"][0]["train_acc"] == pytest.approx(
        statistics.mean(r["intermediates"][0]["train_acc"] for r in runs)
    )
    (zero,) = query_digits_trial_stats(ALL_NONE, reduction="mean")
    assert zero["valid_acc"] < 20 and zero["flops"] < mean["flops"]


def test_digits_bad_arch_is_named() -> None:
    with pytest.raises(ArgumentError, match=r"query_digits_trial_stats\.arch.*'conv'"):
        query_digits_trial_stats({**ALL_NONE, "0_1": "conv"})


def test_query_modules_do_not_import_torch() -> None:
    code = (
        "import sys; import nni_pl.nas.benchmarks as b; next(b.query_digits_trial_stats(None)); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_batched_training_is_each_architecture_trained_alone() -> None:
    torch = pytest.importorskip("torch")
    from nni_pl.nas.benchmarks.digits import db_gen

    splits = db_gen.load_splits()
    archs = [BEST_KNOWN, ALL_NONE, dict.fromkeys(EDGES, "skip_connect")]
    batched = db_gen.BatchedNets(archs, seed=5)
    together = db_gen.train(archs, 5, splits, nets=batched, epochs=1)
    for i, arch in enumerate(archs):
        alone = db_gen.BatchedNets([arch], seed=5)
        with torch.no_grad():
            for p, q in zip(alone.parameters(), db_gen.BatchedNets(archs, seed=5).parameters()):
                p.copy_(q[i : i + 1])
        (metrics,) = db_gen.train([arch], 5, splits, nets=alone, epochs=1)
        assert metrics["valid_loss"][0] == pytest.approx(together[0]["valid_loss"][i], rel=1e-4)
        assert metrics["test_acc"][0] == pytest.approx(together[0]["test_acc"][i], abs=1e-3)


def test_digits_generator_writes_a_queryable_database(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    from nni_pl.nas.benchmarks.digits import db_gen

    archs = [BEST_KNOWN, ALL_NONE]
    monkeypatch.setattr(db_gen, "all_archs", lambda: [dict(a) for a in archs])
    monkeypatch.setattr(db_gen, "measure_training_times", lambda splits: dict.fromkeys(range(7), 0.5))
    out = db_gen.generate(tmp_path / "digits.db", seeds=(7,))
    rows = list(query_digits_trial_stats(None, include_intermediates=True, database=out))
    assert [(r["config"]["arch"], r["seed"], len(r["intermediates"])) for r in rows] == [
        (a, 7, 12) for a in archs
    ]
    assert rows[0]["valid_acc"] > 80 > 20 > rows[1]["valid_acc"]
    assert rows[0]["training_time"] == 0.5 and rows[0]["parameters"] > rows[1]["parameters"]
