from __future__ import annotations

import pytest
import torch
from torch import nn

from nni_pl.compression.pruning.config import resolve, validate_config_list
from nni_pl.errors import ConfigError


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten(), nn.LazyLinear(4)
    )


def _model() -> nn.Module:
    m = _net()
    m(torch.randn(1, 3, 8, 8))
    return m


def test_config_default_then_override_then_exclude() -> None:
    targets = resolve(
        _model(),
        [
            {"sparsity": 0.8, "op_types": ["default"]},
            {"sparsity": 0.6, "op_names": ["3"]},
            {"exclude": True, "op_names": ["5"]},
        ],
        default_op_types=("Conv2d", "Linear"),
    )
    assert [(t.name, t.sparsity) for t in targets] == [("0", 0.8), ("3", 0.6)]


def test_config_sparsity_per_layer_alias_and_total() -> None:
    targets = resolve(_model(), [{"sparsity_per_layer": 0.5, "op_types": ["Conv2d"]}])
    assert [t.sparsity for t in targets] == [0.5, 0.5]
    targets = resolve(
        _model(), [{"total_sparsity": 0.5, "max_sparsity_per_layer": 0.9, "op_types": ["Conv2d"]}]
    )
    assert all(t.group_total == 0.5 and t.max_sparsity == 0.9 for t in targets)


def test_config_op_types_and_op_names_intersect() -> None:
    targets = resolve(_model(), [{"sparsity": 0.5, "op_types": ["Conv2d"], "op_names": ["0", "5"]}])
    assert [t.name for t in targets] == ["0"]


@pytest.mark.parametrize(
    ("config_list", "match"),
    [
        ({"sparsity": 0.5}, r"config_list.*must be a list"),
        ([], r"is empty"),
        ([3], r"config_list\[0\].*must be a dict"),
        (
            [{"sparsity": 0.5, "op_names": ["conv9"]}],
            r"config_list\[0\]\.op_names.*'conv9' matches no module",
        ),
        ([{"sparsity": 1.0, "op_types": ["Conv2d"]}], r"config_list\[0\]\.sparsity.*\[0, 1\).*1\.0"),
        ([{"sparsity": -0.1, "op_types": ["Conv2d"]}], r"config_list\[0\]\.sparsity.*-0\.1"),
        ([{"sparsity": "0.5", "op_types": ["Conv2d"]}], r"config_list\[0\]\.sparsity.*number"),
        ([{"total_sparsity": 1.2, "op_types": ["Conv2d"]}], r"config_list\[0\]\.total_sparsity"),
        ([{"sparsity": 0.5, "total_sparsity": 0.5, "op_types": ["Conv2d"]}], r"total_sparsity.*contradicts"),
        ([{"sparsity": 0.5, "sparsity_per_layer": 0.5, "op_types": ["Conv2d"]}], r"contradicts 'sparsity'"),
        (
            [{"exclude": True, "sparsity": 0.5, "op_names": ["0"]}],
            r"config_list\[0\]\.sparsity.*exclude entry",
        ),
        ([{"exclude": "yes", "op_names": ["0"]}], r"config_list\[0\]\.exclude.*'yes'"),
        ([{"sparsity": 0.5, "op_types": ["Conv2d"], "max_sparsity_per_layer": 0.9}], r"only applies with"),
        (
            [{"total_sparsity": 0.5, "op_types": ["Conv2d"], "max_sparsity_per_layer": 0.3}],
            r"below total_sparsity",
        ),
        ([{"sparsity": 0.5, "op_type": ["Conv2d"]}], r"config_list\[0\]\.op_type.*did you mean 'op_types'"),
        ([{"sparsity": 0.5}], r"config_list\[0\].*selects no layers"),
        ([{"op_types": ["Conv2d"]}], r"config_list\[0\].*has no sparsity"),
        ([{"sparsity": 0.5, "op_types": "Conv2d"}], r"config_list\[0\]\.op_types.*list of strings"),
        ([{"sparsity": 0.5, "op_types": []}], r"config_list\[0\]\.op_types.*empty"),
        (
            [{"sparsity": 0.5, "op_types": ["Conv2d"]}, {"sparsity": 0.5, "op_names": ["2"]}],
            r"config_list\[1\]\.op_names.*'2' is a ReLU",
        ),
        (
            [{"sparsity": 0.5, "op_types": ["Linear"], "op_names": ["0"]}],
            r"config_list\[0\].*match no module together",
        ),
        ([{"sparsity": 0.5, "op_types": ["Conv2D"]}], r"config_list\[0\]\.op_types.*did you mean 'Conv2d'"),
    ],
)
def test_config_bad_entries_name_the_entry(config_list: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        resolve(_model(), config_list, supported_op_types=("Conv2d", "Linear"))  # type: ignore[arg-type]


def test_config_extra_keys_accepted_only_when_declared() -> None:
    with pytest.raises(ConfigError, match="unknown key 'rho'"):
        validate_config_list([{"sparsity": 0.5, "op_types": ["Linear"], "rho": 1e-3}])
    targets = resolve(_model(), [{"sparsity": 0.5, "op_types": ["Linear"], "rho": 1e-3}], extra_keys=("rho",))
    assert targets[0].extra == {"rho": 1e-3}
