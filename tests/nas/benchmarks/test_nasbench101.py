"""NAS-Bench-101: the graph hash, the pure-Python tfrecord reader, and a small official-format file converted."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import pytest

from nni_pl._checks import ArgumentError
from nni_pl.errors import StoreError
from nni_pl.nas.benchmarks import query_nb101_trial_stats
from nni_pl.nas.benchmarks.nasbench101 import (
    db_gen,
    hash_module,
    infer_num_vertices,
    nasbench_format_to_architecture_repr,
)
from nni_pl.nas.benchmarks.nasbench101.tfrecord import (
    NasBench101Record,
    decode_model_metrics,
    encode_model_metrics,
    read_tfrecord,
    write_tfrecord,
)

# the example cell of NNI's docs
ARCH = {
    "op1": "conv3x3-bn-relu",
    "op2": "maxpool3x3",
    "op3": "conv3x3-bn-relu",
    "op4": "conv3x3-bn-relu",
    "op5": "conv1x1-bn-relu",
    "input1": [0],
    "input2": [1],
    "input3": [2],
    "input4": [0],
    "input5": [0, 3, 4],
    "input6": [2, 5],
}


def _matrix(arch: dict, n: int) -> list[list[int]]:
    m = [[0] * n for _ in range(n)]
    for i in range(1, n):
        for k in arch[f"input{i}"]:
            m[k][i] = 1
    return m


def _relabel(arch: dict, n: int, perm: list[int]) -> dict:
    """The same cell with inner vertices renumbered by ``perm`` (a topological order is kept by the caller)."""
    where = {0: 0, n - 1: n - 1, **{old: new for new, old in enumerate(perm, start=1)}}
    out = {f"op{where[i]}": arch[f"op{i}"] for i in range(1, n - 1)}
    for i in range(1, n):
        out[f"input{where[i]}"] = sorted(where[k] for k in arch[f"input{i}"])
    return out


def test_hash_is_invariant_to_vertex_numbering_and_sees_ops() -> None:
    n = infer_num_vertices(ARCH)
    assert n == 7
    h = hash_module(ARCH, n)
    # ops 1 and 4 are both fed only by the input path order-independently: swap 1<->4 keeps a topological order?
    # build every renumbering that keeps edges going forward and check they hash alike
    same = 0
    for perm in itertools.permutations(range(1, n - 1)):
        other = _relabel(ARCH, n, list(perm))
        if all(k < i for i in range(1, n) for k in other[f"input{i}"]):
            assert hash_module(other, n) == h
            same += 1
    assert same > 1
    assert hash_module({**ARCH, "op5": "maxpool3x3"}, n) != h
    assert hash_module({**ARCH, "input6": [2, 4, 5]}, n) != h


def test_nasbench_format_round_trip() -> None:
    n, arch = nasbench_format_to_architecture_repr(
        _matrix(ARCH, 7), ["input", *(ARCH[f"op{i}"] for i in range(1, 6)), "output"]
    )
    assert (n, arch) == (7, ARCH)


def test_tfrecord_framing_and_protobuf_round_trip() -> None:
    buf = io.BytesIO()
    write_tfrecord(buf, [b"", b"x" * 300])
    raw = buf.getvalue()
    assert list(read_tfrecord(io.BytesIO(raw), check_crc=True)) == [b"", b"x" * 300]
    damaged = raw[:-5] + bytes([raw[-5] ^ 1]) + raw[-4:]
    with pytest.raises(StoreError, match="checksum"):
        list(read_tfrecord(io.BytesIO(damaged), check_crc=True))
    with pytest.raises(StoreError, match="truncated"):
        list(read_tfrecord(io.BytesIO(raw[:-2])))
    metrics = {
        "evaluation_data": [{"current_epoch": 0.0, "training_time": 0.0, "train_accuracy": 0.1,
                             "validation_accuracy": 0.1, "test_accuracy": 0.1}],
        "trainable_parameters": 2694282,
        "total_time": 1155.85,
    }  # fmt: skip
    assert decode_model_metrics(encode_model_metrics(metrics)) == metrics


def _record(arch: dict, n: int, epochs: int, repeat: int) -> NasBench101Record:
    ops = ["input", *(arch[f"op{i}"] for i in range(1, n - 1)), "output"]
    evaluations = [
        {"current_epoch": e, "training_time": t, "train_accuracy": acc, "validation_accuracy": acc - 0.05,
         "test_accuracy": acc - 0.06}
        for e, t, acc in ((0, 0.0, 0.1), (epochs / 2, 300.0 * epochs, 0.7 + repeat / 100), (epochs, 600.0 * epochs, 0.9 + repeat / 100))
    ]  # fmt: skip
    metrics = {"evaluation_data": evaluations, "trainable_parameters": 2694282 + n, "total_time": 1.0}
    return NasBench101Record(hash_module(arch, n), epochs, _matrix(arch, n), ops, metrics)


SMALL = {"op1": "maxpool3x3", "op2": "conv1x1-bn-relu", "input1": [0], "input2": [0], "input3": [1, 2]}


@pytest.fixture(scope="module")
def nb101_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("nb101")
    records = [
        _record(a, infer_num_vertices(a), e, r) for a in (ARCH, SMALL) for e in (4, 108) for r in range(3)
    ]
    with open(folder / "nasbench_small.tfrecord", "wb") as f:
        write_tfrecord(f, [rec.to_row() for rec in records])
    db_gen.main([str(folder / "nasbench_small.tfrecord"), "--output", str(folder / "nasbench101.db")])
    return folder / "nasbench101.db"


def test_nb101_query_records_and_intermediates(nb101_db: Path) -> None:
    rows = list(query_nb101_trial_stats(ARCH, 108, include_intermediates=True, database=nb101_db))
    assert len(rows) == 3
    r = rows[0]
    assert (
        r["config"]["arch"] == ARCH and r["config"]["num_vertices"] == 7 and r["config"]["num_epochs"] == 108
    )
    assert r["config"]["hash"] == hash_module(ARCH, 7)
    assert r["valid_acc"] == pytest.approx(85.0) and r["test_acc"] == pytest.approx(84.0)
    assert r["parameters"] == pytest.approx(2.694289) and r["training_time"] == 600.0 * 108
    assert [(i["current_epoch"], round(i["train_acc"], 6)) for i in r["intermediates"]] == [
        (54, 70.0),
        (108, 90.0),
    ]
    assert len(list(query_nb101_trial_stats(None, None, database=nb101_db))) == 12


def test_nb101_isomorphism_matches_renumbered_cell(nb101_db: Path) -> None:
    swapped = {"op1": "conv1x1-bn-relu", "op2": "maxpool3x3", "input1": [0], "input2": [0], "input3": [1, 2]}
    assert len(list(query_nb101_trial_stats(swapped, 4, database=nb101_db))) == 3
    assert list(query_nb101_trial_stats(swapped, 4, isomorphism=False, database=nb101_db)) == []
    assert len(list(query_nb101_trial_stats(SMALL, 4, isomorphism=False, database=nb101_db))) == 3
    (mean,) = query_nb101_trial_stats(SMALL, 4, reduction="mean", database=nb101_db)
    assert mean["train_acc"] == pytest.approx(91.0)


def test_nb101_bad_arch_and_bad_file(nb101_db: Path, tmp_path: Path) -> None:
    with pytest.raises(ArgumentError, match=r"input3 must be a list of earlier vertices.*\[3\]"):
        query_nb101_trial_stats({**SMALL, "input3": [3]}, 4, database=nb101_db)
    with pytest.raises(ArgumentError, match="op1 must be one of"):
        query_nb101_trial_stats({**SMALL, "op1": "conv5x5"}, 4, database=nb101_db)
    bad = _record(SMALL, 4, 4, 0)
    bad.module_hash = "0" * 32
    with open(tmp_path / "bad.tfrecord", "wb") as f:
        write_tfrecord(f, [bad.to_row()])
    with pytest.raises(StoreError, match="hashes to"):
        db_gen.convert(tmp_path / "bad.tfrecord", tmp_path / "out.db")
    with open(tmp_path / "junk.tfrecord", "wb") as f:
        write_tfrecord(f, [b"not json"])
    with pytest.raises(StoreError, match="record 0 is not a NAS-Bench-101 row"):
        db_gen.convert(tmp_path / "junk.tfrecord", tmp_path / "out.db")
