"""NDS: small sweep files in the released JSON format converted, then queried with wildcards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nni_pl._checks import ArgumentError
from nni_pl.errors import StoreError
from nni_pl.nas.benchmarks import query_nds_trial_stats
from nni_pl.nas.benchmarks.nds import db_gen

RESNET_SPEC = {"ds": [1, 12, 12, 12], "ss": [1, 1, 2, 2], "ws": [16, 24, 24, 40]}


def _run(net: dict, seed: int, epochs: int = 4, base: float = 50.0) -> dict:
    return {
        "net": net,
        "optim": {"base_lr": 0.1, "wd": 5e-4, "max_ep": epochs},
        "rng_seed": seed,
        "params": 1.5e6,
        "flops": 2.4e8,
        "iter_time": 0.05,
        "train_ep_top1": [base - e for e in range(epochs)],
        "test_ep_top1": [base + 5 - e for e in range(epochs)],
        "train_ep_loss": [2.0 - e / 10 for e in range(epochs - 1)] + [float("nan")],
    }


GENOTYPE = {
    "normal": [["sep_conv_3x3", 0], ["skip_connect", 1], ["avg_pool_3x3", 2], ["dil_conv_5x5", 0]],
    "reduce": [["max_pool_3x3", 0], ["conv_1x1", 1], ["sep_conv_5x5", 1], ["none", 2], ["skip_connect", 3], ["sep_conv_7x7", 0]],
    "normal_concat": [2, 3],
    "reduce_concat": [2, 3, 4],
}  # fmt: skip


@pytest.fixture(scope="module")
def nds_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("nds")
    basic = {"block_type": "res_basic_block", **RESNET_SPEC, "bot_muls": None}
    (folder / "ResNet.json").write_text(json.dumps([_run(basic, 1), _run(basic, 2, base=40.0)]))
    cell = {"genotype": GENOTYPE, "depth": 8, "width": 16, "aux": False, "drop_prob": 0.0}
    (folder / "DARTS_fix-w-d.json").write_text(
        json.dumps({"top": [_run(cell, 3)], "mid": [_run(cell, 4, epochs=6)]})
    )
    (folder / "Vanilla_lr-wd_in.json").write_text(
        json.dumps([_run({"block_type": "double_plain_block", **RESNET_SPEC}, 5)])
    )
    db_gen.main([str(folder), "--output", str(folder / "nds.db")])
    return folder / "nds.db"


def test_nds_query_by_family_and_spec(nds_db: Path) -> None:
    rows = list(
        query_nds_trial_stats(
            "residual_basic", "resnet", "random", RESNET_SPEC, {}, "cifar10", database=nds_db
        )
    )
    assert [r["seed"] for r in rows] == [1, 2]
    r = rows[0]
    assert r["config"]["model_spec"] == RESNET_SPEC and r["config"]["cell_spec"] == {}
    assert r["config"]["num_epochs"] == 4 and r["config"]["weight_decay"] == 5e-4
    assert (r["final_train_acc"], r["final_test_acc"], r["best_test_acc"]) == (53.0, 48.0, 48.0)
    assert r["final_train_loss"] is None and r["best_train_loss"] == pytest.approx(1.8)
    assert r["parameters"] == 1.5 and r["flops"] == 240.0
    (mean,) = query_nds_trial_stats(
        "residual_basic", None, None, None, None, None, reduction="mean", database=nds_db
    )
    assert mean["final_train_acc"] == pytest.approx((53.0 + 63.0) / 2)


def test_nds_nas_cell_spec_and_settings_from_file_names(nds_db: Path) -> None:
    rows = list(
        query_nds_trial_stats(
            "nas_cell", "darts", "fix_w_d", None, None, "cifar10", include_intermediates=True, database=nds_db
        )
    )
    assert len(rows) == 2
    cell = rows[0]["config"]["cell_spec"]
    assert cell["normal_1_op_x"] == "avg_pool_3x3" and cell["normal_1_input_y"] == 0
    # the reduce cell has its own node count (3), not the normal cell's (2)
    assert cell["reduce_2_op_y"] == "sep_conv_7x7" and cell["reduce_concat"] == [2, 3, 4]
    assert rows[0]["config"]["model_spec"]["num_nodes_reduce"] == 3
    assert [i["current_epoch"] for i in rows[1]["intermediates"]] == [1, 2, 3, 4, 5, 6]
    assert len(list(query_nds_trial_stats("nas_cell", None, None, None, cell, None, database=nds_db))) == 2
    assert (
        len(list(query_nds_trial_stats(None, None, None, None, None, None, num_epochs=6, database=nds_db)))
        == 1
    )
    (van,) = query_nds_trial_stats(None, "vanilla", None, None, None, None, database=nds_db)
    assert (van["config"]["dataset"], van["config"]["generator"], van["config"]["model_family"]) == (
        "imagenet",
        "tune_lr_wd",
        "vanilla",
    )
    assert len(list(query_nds_trial_stats(None, None, None, None, None, None, database=nds_db))) == 5


def test_nds_errors(nds_db: Path, tmp_path: Path) -> None:
    with pytest.raises(ArgumentError, match=r"model_family.*'resnet'"):
        query_nds_trial_stats("resnet", None, None, None, None, None, database=nds_db)
    with pytest.raises(ArgumentError, match=r"model_spec.*must be a dict"):
        query_nds_trial_stats(None, None, None, [1, 2], None, None, database=nds_db)
    with pytest.raises(StoreError, match=r"no NDS \.json file"):
        db_gen.convert(tmp_path, tmp_path / "nds.db")
    (tmp_path / "ResNet.json").write_text(json.dumps([{"net": {"block_type": "res_basic_block"}}]))
    with pytest.raises(StoreError, match=r"ResNet.json, run 0: not an NDS run"):
        db_gen.convert(tmp_path, tmp_path / "nds.db")
