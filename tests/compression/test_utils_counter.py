from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from nni_pl.compression.pruning import L1NormPruner, LevelPruner, save_masks
from nni_pl.compression.speedup import ModelSpeedup
from nni_pl.compression.utils import count_flops_params
from nni_pl.errors import ConfigError


def small_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 0
        nn.ReLU(),  # 1
        nn.AdaptiveAvgPool2d(1),  # 2
        nn.Flatten(),  # 3
        nn.Linear(8, 4),  # 4
    )


def two_convs() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 6, 3, padding=1),
        nn.Flatten(),
        nn.Linear(6 * 16, 5),
    )


def test_count_flops_params_default_mode_hand_computed() -> None:
    flops, params, results = count_flops_params(small_cnn(), (1, 3, 8, 8), verbose=False)
    conv = 8 * 8 * 8 * (3 * 3) * 3  # cout * output positions * kernel * cin
    linear = 8 * 4
    assert [r["name"] for r in results] == ["0", "4"]
    assert [r["flops"] for r in results] == [conv, linear]
    assert flops == conv + linear
    assert params == (8 * 27 + 8) + (8 * 4 + 4)
    first = results[0]
    assert first["module_type"] == "Conv2d"
    assert first["weight_shape"] == (8, 3, 3, 3)
    assert first["input_size"] == (1, 3, 8, 8) and first["output_size"] == (1, 8, 8, 8)
    assert set(first) == {
        "name",
        "module_type",
        "weight_shape",
        "flops",
        "params",
        "input_size",
        "output_size",
    }


def test_count_flops_params_full_mode_counts_bias_activations_and_pooling() -> None:
    flops, _, results = count_flops_params(small_cnn(), (1, 3, 8, 8), verbose=False, mode="full")
    by_name = {r["name"]: r["flops"] for r in results}
    assert by_name == {
        "0": 8 * 64 * 27 + 8 * 64,  # + one bias add per output element
        "1": 8 * 64,  # ReLU: one op per element
        "2": (64 + 1) * 8,  # adaptive average: 64 adds + 1 division per output
        "4": 8 * 4 + 4,
    }
    assert flops == sum(by_name.values())


def test_count_flops_params_is_per_sample_and_takes_tensors() -> None:
    one = count_flops_params(small_cnn(), (1, 3, 8, 8), verbose=False)[0]
    batch = count_flops_params(small_cnn(), torch.randn(5, 3, 8, 8), verbose=False)[0]
    as_tuple = count_flops_params(small_cnn(), (torch.randn(2, 3, 8, 8),), verbose=False)[0]
    assert one == batch == as_tuple


def test_count_flops_params_grouped_conv_and_sequence_linear() -> None:
    conv = nn.Conv2d(4, 8, 3, groups=2)
    flops, _, _ = count_flops_params(conv, (1, 4, 5, 5), verbose=False)
    assert flops == 8 * 9 * 9 * 4 // 2
    lin = nn.Linear(6, 3)
    flops, _, _ = count_flops_params(lin, (2, 10, 6), verbose=False)
    assert flops == 10 * 6 * 3  # every token of the sequence


def test_count_flops_params_masked_model_counts_kept_filters_and_unmasked_weights() -> None:
    model = two_convs()
    dense_flops, dense_params, dense = count_flops_params(model, (1, 3, 4, 4), verbose=False)
    _, masks = L1NormPruner(model, [{"sparsity": 0.5, "op_names": ["0"]}]).compress()
    flops, params, results = count_flops_params(model, (1, 3, 4, 4), verbose=False)
    conv0 = results[0]
    assert conv0["flops"] == dense[0]["flops"] // 2  # 4 of 8 filters left
    assert conv0["params"] == 4 * 27 + 4
    assert results[1]["flops"] == dense[1]["flops"]  # as in NNI: its input channels still count
    assert flops == dense_flops - dense[0]["flops"] // 2
    assert params == dense_params - (4 * 27 + 4)
    # the same from the mask dict or its file, and the dense count when masks are ignored
    assert count_flops_params(model, (1, 3, 4, 4), verbose=False, masks=masks)[:2] == (flops, params)
    assert count_flops_params(model, (1, 3, 4, 4), verbose=False, masks=False)[:2] == (
        dense_flops,
        dense_params,
    )


def test_count_flops_params_masked_count_bounds_the_sped_up_model(tmp_path) -> None:
    model = two_convs().eval()
    _, masks = L1NormPruner(model, [{"sparsity": 0.5, "op_types": ["Conv2d"]}]).compress()
    path = save_masks(masks, tmp_path / "masks.pth")
    masked_flops, _, masked = count_flops_params(model, (1, 3, 4, 4), verbose=False, masks=path)
    x = torch.randn(1, 3, 4, 4)
    small = ModelSpeedup(copy.deepcopy(model), x, masks).speedup_model()
    fast_flops, fast_params, fast = count_flops_params(small, (1, 3, 4, 4), verbose=False)
    # the first layer loses only output channels: identical; later layers also lose input channels
    assert fast[0]["flops"] == masked[0]["flops"]
    assert fast[1]["flops"] == masked[1]["flops"] // 2
    assert fast_flops < masked_flops
    assert fast_params == sum(p.numel() for p in small.parameters())


def test_count_flops_params_fine_grained_masks_count_unmasked_weights() -> None:
    lin = nn.Sequential(nn.Linear(10, 10))
    LevelPruner(lin, [{"sparsity": 0.3, "op_types": ["Linear"]}]).compress()
    flops, params, _ = count_flops_params(lin, (1, 10), verbose=False)
    assert params == 70 + 10 and flops == 70
    conv = nn.Sequential(nn.Conv2d(4, 8, 3, groups=2))
    dense = count_flops_params(conv, (1, 4, 5, 5), verbose=False)[0]
    LevelPruner(conv, [{"sparsity": 0.5, "op_types": ["Conv2d"]}]).compress()
    assert count_flops_params(conv, (1, 4, 5, 5), verbose=False)[0] == dense // 2


def test_count_flops_params_custom_ops_override_a_type() -> None:
    def conv_rule(m, x, y):
        return {"flops": 7}

    flops, _, results = count_flops_params(small_cnn(), (1, 3, 8, 8), {nn.Conv2d: conv_rule}, verbose=False)
    assert results[0]["flops"] == 7 and results[0]["params"] == 8 * 27 + 8
    assert flops == 7 + 32
    # a custom op can also add a type the counter does not know
    _, _, results = count_flops_params(
        small_cnn(), (1, 3, 8, 8), {nn.ReLU: lambda m, x, y: {"flops": 1}}, False
    )
    assert [r["module_type"] for r in results] == ["Conv2d", "ReLU", "Linear"]


def test_count_flops_params_verbose_prints_nni_table(capsys: pytest.CaptureFixture[str]) -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.fc(x))

    flops, params, results = count_flops_params(Twice(), (1, 4))
    out = capsys.readouterr().out
    assert "| Index |" in out and "Weight Shape" in out and "#Params" in out and "#Call" in out
    assert f"FLOPs total: {flops}" in out and f"#Params total: {params}" in out
    assert len(results) == 2 and flops == 32 and params == 20  # a layer called twice has its params once


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "fast"}, "'mode'.*'fast'"),
        ({"x": "abc"}, "'x'"),
        ({"masks": {"nope": {"weight": torch.ones(1)}}}, r"masks\['nope'\]"),
        ({"masks": {"0": {"weight": torch.ones(1)}}}, r"masks\['0'\]\['weight'\]"),
        ({"custom_ops": {"Conv2d": print}}, "'custom_ops'"),
    ],
)
def test_count_flops_params_bad_input_names_the_argument(kwargs: dict, match: str) -> None:
    args = {"x": (1, 3, 8, 8), "verbose": False, **kwargs}
    with pytest.raises(ConfigError, match=match):
        count_flops_params(small_cnn(), **args)


def test_count_flops_params_restores_training_mode() -> None:
    model = small_cnn().train()
    count_flops_params(model, (1, 3, 8, 8), verbose=False)
    assert model.training


def test_count_flops_params_reports_quantized_layers_under_their_names() -> None:
    from nni_pl.compression.quantization import QAT_Quantizer

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 2))
    dense = count_flops_params(model, (1, 3, 8, 8), verbose=False)[0]
    QAT_Quantizer(
        model, [{"quant_types": ["weight"], "quant_bits": 8, "op_types": ["Conv2d", "Linear"]}]
    ).compress()
    flops, _, results = count_flops_params(model, (1, 3, 8, 8), verbose=False)
    assert [r["name"] for r in results] == ["0", "3"] and flops == dense
    with torch.no_grad():
        model[0].module.old_weight[0, 0, 0, 0] = 1e-6  # rounds to an exact 0 in the quantized weight
    # quantization zeros are no mask
    assert count_flops_params(model, (1, 3, 8, 8), verbose=False)[0] == dense


def test_compression_packages_import_without_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, nni_pl.compression as c, nni_pl.compression.utils as u, nni_pl.compression.auto as a\n"
        "a.AutoCompressionSearchSpaceGenerator().add_config('l1', [{'sparsity': 0.5}])\n"
        "assert 'count_flops_params' in dir(u) and 'AutoCompressionExperiment' in dir(c)\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
