"""NNI 2.5's quantizers: config_list errors, the wrapper layout, each algorithm's arithmetic, BN folding, export."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

from nni_pl.compression.quantization import (
    BNNQuantizer,
    DoReFaQuantizer,
    LsqQuantizer,
    NaiveQuantizer,
    ObserverQuantizer,
    QAT_Quantizer,
    QuantGrad,
    Quantizer,
    QuantType,
    find_wrappers,
    reset_quant_scheme_dtype,
    set_quant_scheme_dtype,
    unwrapped,
)
from nni_pl.errors import ConfigError, NniPlError

W8 = [{"quant_types": ["weight"], "quant_bits": 8, "op_types": ["Conv2d", "Linear"]}]
FULL8 = [
    {"quant_types": ["weight", "input"], "quant_bits": 8, "op_types": ["Conv2d", "Linear"]},
    {"quant_types": ["output"], "quant_bits": 8, "op_types": ["ReLU"]},
]


def cnn(bn: bool = True) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(1, 8, 3, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(8))
    layers += [nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4)]
    return nn.Sequential(*layers)


@pytest.fixture(autouse=True)
def _global_settings():
    yield
    reset_quant_scheme_dtype()


# -- config_list errors -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("entry", "field", "says"),
    [
        (
            {"quant_types": ["weight"], "quant_bits": 8, "op_types": ["Linear"], "quant_bit": 8},
            "quant_bit",
            "did you mean",
        ),
        ({"quant_types": ["weights"], "quant_bits": 8, "op_types": ["Linear"]}, "quant_types", "'weights'"),
        (
            {"quant_types": ["weight", "input"], "quant_bits": {"weight": 8}, "op_types": ["Linear"]},
            "quant_bits",
            "['input']",
        ),
        (
            {"quant_types": ["weight"], "quant_bits": 0, "op_types": ["Linear"]},
            "quant_bits",
            "from 1 to 16, got 0",
        ),
        ({"quant_types": ["weight"], "quant_bits": 8.0, "op_types": ["Linear"]}, "quant_bits", "got 8.0"),
        (
            {"quant_types": ["weight"], "quant_bits": {"output": 8}, "op_types": ["Linear"]},
            "quant_bits",
            "'output'",
        ),
        (
            {
                "quant_types": ["output"],
                "quant_bits": 8,
                "quant_scheme": "per_channel_affine",
                "op_types": ["Linear"],
            },
            "quant_scheme",
            "weights only",
        ),
        (
            {
                "quant_types": ["weight"],
                "quant_bits": 8,
                "quant_scheme": "per_tensor",
                "op_types": ["Linear"],
            },
            "quant_scheme",
            "'per_tensor'",
        ),
        (
            {"quant_types": ["weight"], "quant_bits": 8, "quant_dtype": "int8", "op_types": ["Linear"]},
            "quant_dtype",
            "'int8'",
        ),
        (
            {"quant_types": ["weight"], "quant_bits": 8, "quant_start_step": -1, "op_types": ["Linear"]},
            "quant_start_step",
            "-1",
        ),
        ({"quant_types": ["weight"], "quant_bits": 8}, "config_list[0]", "selects no layers"),
        ({"quant_bits": 8, "op_types": ["Linear"]}, "config_list[0]", "no quant_types"),
        ({"quant_types": ["weight"], "op_types": ["Linear"]}, "config_list[0]", "no quant_bits"),
        (
            {"quant_types": ["weight"], "quant_bits": 8, "op_names": ["fc"]},
            "op_names",
            "'fc' matches no module",
        ),
        ({"quant_types": ["weight"], "quant_bits": 8, "op_types": ["ReLU"]}, "quant_types", "is a ReLU"),
    ],
)
def test_config_list_errors_name_the_entry_key_and_value(entry, field, says) -> None:
    with pytest.raises(ConfigError) as err:
        QAT_Quantizer(cnn(), [entry])
    assert field in str(err.value) and says in str(err.value)


def test_empty_and_non_list_config_lists_are_refused() -> None:
    with pytest.raises(ConfigError, match="is empty"):
        QAT_Quantizer(cnn(), [])
    with pytest.raises(ConfigError, match="list of dicts"):
        QAT_Quantizer(cnn(), {"quant_types": ["weight"]})


def test_later_entries_override_and_exclude_removes() -> None:
    model = cnn(bn=False)
    q = QAT_Quantizer(
        model,
        [
            {"quant_types": ["weight"], "quant_bits": 8, "op_types": ["Conv2d", "Linear"]},
            {"quant_types": ["weight"], "quant_bits": 4, "op_names": ["0"]},
            {"exclude": True, "op_names": ["3"]},
        ],
    )
    assert [(w.name, w.settings["weight"].bits) for w in q.get_modules_wrapper()] == [("0", 4)]


def test_global_scheme_setting_applies_unless_the_entry_says_otherwise() -> None:
    set_quant_scheme_dtype("weight", "per_channel_symmetric", "int")
    model = cnn(bn=False)
    q = QAT_Quantizer(
        model,
        [
            {"quant_types": ["weight"], "quant_bits": 8, "op_types": ["Conv2d"]},
            {
                "quant_types": ["weight"],
                "quant_bits": 8,
                "op_types": ["Linear"],
                "quant_scheme": "per_tensor_affine",
            },
        ],
    )
    settings = {w.name: w.settings["weight"] for w in q.get_modules_wrapper()}
    assert settings["0"].scheme == "per_channel_symmetric" and settings["3"].scheme == "per_tensor_affine"
    assert q.quant_params(q.get_modules_wrapper()[0], "weight").scale.shape == (8,)
    with pytest.raises(ConfigError, match="weights only"):
        set_quant_scheme_dtype("output", "per_channel_affine")


def test_a_model_is_quantized_once() -> None:
    model = cnn()
    NaiveQuantizer(model)
    with pytest.raises(NniPlError, match="already quantized"):
        QAT_Quantizer(model, W8)


# -- the wrapper ------------------------------------------------------------------------------------------------
def test_wrapping_keeps_the_parameter_objects_so_an_earlier_optimizer_still_trains_them() -> None:
    model = cnn(bn=False)
    weight = model[0].weight
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    QAT_Quantizer(model, W8, opt)
    assert model[0].module.old_weight is weight
    before = weight.detach().clone()
    model(torch.randn(4, 1, 6, 6)).sum().backward()
    opt.step()
    assert not torch.equal(before, weight.detach())
    assert int(model[0].steps) == 1  # the optimizer hook counted the step


def test_a_model_after_forward_deep_copies_and_pickles() -> None:
    model = cnn()
    QAT_Quantizer(model, FULL8, dummy_input=torch.randn(1, 1, 6, 6))
    model(torch.randn(4, 1, 6, 6)).sum().backward()
    copy.deepcopy(model)
    pickle.dumps(model)


def test_unwrapped_gives_the_float_model_back_temporarily() -> None:
    model = cnn()
    QAT_Quantizer(model, FULL8, dummy_input=torch.randn(1, 1, 6, 6))
    with unwrapped(model):
        assert [type(m).__name__ for m in model] == ["Conv2d", "BatchNorm2d", "ReLU", "Flatten", "Linear"]
        assert isinstance(model[0].weight, nn.Parameter)
    assert [type(m).__name__ for m in model][:3] == [
        "QuantizerModuleWrapper",
        "Identity",
        "QuantizerModuleWrapper",
    ]


# -- QAT ---------------------------------------------------------------------------------------------------------
def test_qat_quantizes_after_quant_start_step_optimizer_steps_only() -> None:
    model = nn.Sequential(nn.Linear(4, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    QAT_Quantizer(
        model,
        [{"quant_types": ["output"], "quant_bits": 2, "quant_start_step": 2, "op_types": ["Linear"]}],
        opt,
    )
    x = torch.randn(32, 4)
    for expect_quantized in (False, False, True):
        out = model(x)
        assert (len(torch.unique(out)) <= 4) is expect_quantized
        out.sum().backward()
        opt.step()


def test_qat_tracks_activation_ranges_by_moving_average_in_training_only() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    q = QAT_Quantizer(
        model, [{"quant_types": ["output"], "quant_bits": 8, "op_types": ["ReLU"]}], ema_decay=0.5
    )
    model[0].weight.data = torch.eye(2)
    model[0].bias.data.zero_()
    model(torch.tensor([[4.0, 0.0]]))
    model(torch.tensor([[2.0, 0.0]]))
    assert q.calibration_config()["1"]["tracked_max_output"] == pytest.approx(3.0)
    model.eval()
    model(torch.tensor([[100.0, 0.0]]))
    assert q.calibration_config()["1"]["tracked_max_output"] == pytest.approx(3.0)


def test_bn_folding_computes_the_conv_bn_function() -> None:
    torch.manual_seed(1)
    reference = cnn()
    reference.train()
    reference(torch.randn(16, 1, 6, 6) * 2 + 1)  # non-trivial running statistics
    model = copy.deepcopy(reference)
    # 16-bit weights: quantization error far below the tolerance, so this checks the folding itself
    QAT_Quantizer(
        model,
        [{"quant_types": ["weight"], "quant_bits": 16, "op_types": ["Conv2d"]}],
        dummy_input=torch.randn(1, 1, 6, 6),
    )
    assert isinstance(model[1], nn.Identity) and model[0].bn_module is not None
    x = torch.randn(8, 1, 6, 6)
    for mode in ("eval", "train"):
        getattr(reference, mode)()
        getattr(model, mode)()
        torch.testing.assert_close(model(x), reference(x), atol=2e-3, rtol=1e-3)
    # the BatchNorm's running statistics moved in the training forward, as the reference's did
    torch.testing.assert_close(model[0].bn_module.running_mean, reference[1].running_mean)


def test_bn_folded_training_has_batchnorms_gradient_so_running_statistics_stay_true() -> None:
    torch.manual_seed(2)
    reference = cnn()
    model = copy.deepcopy(reference)
    QAT_Quantizer(
        model,
        [{"quant_types": ["weight"], "quant_bits": 16, "op_types": ["Conv2d"]}],
        dummy_input=torch.randn(1, 1, 6, 6),
    )
    x = torch.randn(16, 1, 6, 6)
    reference(x).pow(2).sum().backward()
    model(x).pow(2).sum().backward()
    # the gradient flows through the batch mean and variance, as through BatchNorm (detached statistics let
    # the weights drift in scale during QAT and leave the running statistics behind: eval accuracy collapsed)
    torch.testing.assert_close(
        model[0].module.old_weight.grad, reference[0].weight.grad, atol=1e-3, rtol=1e-2
    )
    torch.testing.assert_close(model[0].bn_module.weight.grad, reference[1].weight.grad, atol=1e-3, rtol=1e-2)


def test_export_model_restores_bn_and_saves_a_loadable_float_state_dict(tmp_path) -> None:
    model = cnn()
    q = QAT_Quantizer(model, FULL8, dummy_input=torch.randn(1, 1, 6, 6))
    model(torch.randn(8, 1, 6, 6))
    calibration = q.export_model(tmp_path / "model.pth", tmp_path / "calibration.pth")
    assert set(calibration) == {"0", "2", "4"}
    assert {"weight_bits", "tracked_min_input", "tracked_max_input", "input_bits"} <= set(calibration["0"])
    assert calibration["2"]["output_bits"] == 8 and calibration["2"]["tracked_min_output"] == 0.0
    assert torch.load(tmp_path / "calibration.pth") == calibration
    plain = cnn()
    plain.load_state_dict(torch.load(tmp_path / "model.pth"))  # strict: keys of the float model, BN included
    assert type(model[0]).__name__ == "QuantizerModuleWrapper"  # still quantized: training can go on
    with pytest.raises(ConfigError, match="input_shape"):
        q.export_model(tmp_path / "m.pth", onnx_path=tmp_path / "m.onnx")


def test_saved_weights_are_the_simulated_quantized_values(tmp_path) -> None:
    model = cnn(bn=False)
    q = QAT_Quantizer(model, [{"quant_types": ["weight"], "quant_bits": 3, "op_types": ["Linear"]}])
    q.export_model(tmp_path / "model.pth")
    assert len(torch.unique(torch.load(tmp_path / "model.pth")["3.weight"])) <= 8


def test_load_calibration_config_starts_qat_from_a_ptq_calibration() -> None:
    ptq_model = cnn(bn=False)
    ptq = ObserverQuantizer(ptq_model, FULL8)
    with torch.no_grad():
        ptq_model(torch.randn(16, 1, 6, 6))
    ptq.compress()
    calibration = ptq.calibration_config()
    qat = QAT_Quantizer(cnn(bn=False), FULL8)
    qat.load_calibration_config(calibration)
    got = qat.calibration_config()
    for layer in ("0", "1", "3"):
        for key in ("tracked_min_input", "tracked_max_input", "tracked_min_output", "tracked_max_output"):
            if key in calibration[layer]:
                assert got[layer][key] == pytest.approx(calibration[layer][key])
    with pytest.raises(ConfigError, match="names no quantized layer"):
        qat.load_calibration_config({"fc9": {}})


# -- Observer (PTQ) ----------------------------------------------------------------------------------------------
def test_observer_only_observes_until_compress_then_keeps_its_scales() -> None:
    model = cnn(bn=False)
    q = ObserverQuantizer(model, FULL8)
    x = torch.randn(16, 1, 6, 6)
    with torch.no_grad():
        reference = cnn(bn=False)(x)
        torch.testing.assert_close(model(x), reference)  # calibration: nothing quantized yet
    model = q.compress()
    assert not model.training
    before = q.calibration_config()
    with torch.no_grad():
        quantized = model(x * 10)  # out of range now: clipped, ranges unchanged
    assert q.calibration_config() == before
    assert not torch.allclose(quantized, reference)


def test_observer_defaults_are_symmetric_int8_weights_and_affine_uint8_activations() -> None:
    model = cnn(bn=False)
    q = ObserverQuantizer(model, FULL8)
    conv = q.get_modules_wrapper()[0]
    assert (conv.settings["weight"].scheme, conv.settings["weight"].dtype) == ("per_tensor_symmetric", "int")
    assert (conv.settings["input"].scheme, conv.settings["input"].dtype) == ("per_tensor_affine", "uint")


def test_quantizers_take_nnis_parameter_names() -> None:
    """NNI 2.5's signatures: ``(model, config_list, optimizer[, dummy_input])``, so keyword calls carry over."""
    import inspect

    from nni_pl.compression import quantization

    for name, extra in [
        ("NaiveQuantizer", []),
        ("QAT_Quantizer", ["dummy_input"]),
        ("LsqQuantizer", ["dummy_input"]),
        ("DoReFaQuantizer", []),
        ("BNNQuantizer", []),
        ("ObserverQuantizer", []),
    ]:
        params = list(inspect.signature(getattr(quantization, name)).parameters)
        assert params[: 3 + len(extra)] == ["model", "config_list", "optimizer", *extra], (name, params)
    model = cnn(bn=False).eval()
    assert ObserverQuantizer(model=model, config_list=FULL8, optimizer=None).get_modules_wrapper()


# -- LSQ ---------------------------------------------------------------------------------------------------------
def test_lsq_trains_its_scales_and_puts_values_on_the_grid() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    LsqQuantizer(model, [{"quant_types": ["weight", "output"], "quant_bits": 3, "op_types": ["Linear"]}], opt)
    x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
    model(x)
    scale0 = model[0].weight_scale.detach().clone()
    assert scale0 > 0 and bool(model[0].weight_initialized)
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        assert model[0].weight_scale.grad is not None
        opt.step()
    assert not torch.equal(scale0, model[0].weight_scale.detach())
    with torch.no_grad():
        out = model[0](x)
    steps = out / model[0].output_scale
    torch.testing.assert_close(steps, torch.round(steps))
    assert steps.min() >= -4 and steps.max() <= 3
    with pytest.raises(ConfigError, match="one scale per tensor"):
        LsqQuantizer(
            nn.Sequential(nn.Linear(2, 2)),
            [
                {
                    "quant_types": ["weight"],
                    "quant_bits": 8,
                    "op_types": ["Linear"],
                    "quant_scheme": "per_channel_symmetric",
                }
            ],
        )


# -- DoReFa, BNN, Naive ------------------------------------------------------------------------------------------
def test_dorefa_weights_take_two_to_the_k_values_in_minus_one_one_and_train() -> None:
    model = nn.Sequential(nn.Linear(32, 8))
    DoReFaQuantizer(model, [{"quant_types": ["weight"], "quant_bits": 2, "op_types": ["Linear"]}])
    model(torch.randn(4, 32)).sum().backward()
    values = torch.unique(model[0].module.weight)
    assert len(values) <= 4 and values.min() >= -1 and values.max() <= 1
    assert model[0].module.old_weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="'input' is not quantized by this quantizer"):
        DoReFaQuantizer(
            nn.Sequential(nn.Linear(2, 2)),
            [{"quant_types": ["input"], "quant_bits": 2, "op_types": ["Linear"]}],
        )


def test_bnn_binarizes_and_passes_gradients_only_inside_the_unit_interval() -> None:
    model = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Hardtanh())
    BNNQuantizer(
        model,
        [
            {"quant_types": ["weight"], "quant_bits": 1, "op_types": ["Linear"]},
            {"quant_types": ["output"], "quant_bits": 1, "op_types": ["Hardtanh"]},
        ],
    )
    with torch.no_grad():
        model[0].module.old_weight.copy_(torch.tensor([[0.5, -2.0, 0.0]] * 3))
    x = torch.ones(1, 3, requires_grad=True)
    out = model(x)
    assert set(out.flatten().tolist()) <= {-1.0, 1.0}
    assert set(model[0].module.weight.flatten().tolist()) == {-1.0, 1.0}
    out.sum().backward()
    assert model[0].module.old_weight.grad[:, 1].abs().sum() == 0  # |w| > 1: clipped
    with pytest.raises(ConfigError, match="quant_bits must be 1, got 2"):
        BNNQuantizer(
            nn.Sequential(nn.Linear(2, 2)),
            [{"quant_types": ["weight"], "quant_bits": 2, "op_types": ["Linear"]}],
        )


def test_naive_quantizer_needs_no_config_and_quantizes_weights_to_8_bits() -> None:
    model = cnn(bn=False)
    ref = cnn(bn=False)
    NaiveQuantizer(model)
    weight = model[0].module.weight
    assert len(torch.unique(weight)) <= 256
    step = weight.abs().max() / 127
    assert (weight - ref[0].weight).abs().max() <= step / 2 + 1e-6
    with pytest.raises(ConfigError, match="'output' is not quantized"):
        NaiveQuantizer(cnn(), [{"quant_types": ["output"], "quant_bits": 8, "op_types": ["ReLU"]}])


# -- customising ------------------------------------------------------------------------------------------------
def test_qat_gradient_is_straight_through_inside_the_range_and_zero_outside() -> None:
    model = nn.Sequential(nn.Identity(), nn.ReLU())
    q = QAT_Quantizer(model, [{"quant_types": ["output"], "quant_bits": 8, "op_types": ["ReLU"]}])
    q.load_calibration_config({"1": {"tracked_min_output": 0.0, "tracked_max_output": 1.0}})
    model.eval()  # fixed range [0, 1]
    x = torch.tensor([0.25, 0.5, 2.0, 3.0], requires_grad=True)
    model(x).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 0.0, 0.0]


def test_a_custom_quant_grad_replaces_the_straight_through_backward() -> None:
    seen = []

    class Doubling(QuantGrad):
        @staticmethod
        def quant_backward(tensor, grad_output, quant_type, scale, zero_point, qmin, qmax):
            seen.append(quant_type)
            return grad_output * 2

    class MyQAT(QAT_Quantizer):
        quant_grad = Doubling

    model = nn.Sequential(nn.Linear(2, 1, bias=False))
    MyQAT(model, [{"quant_types": ["weight"], "quant_bits": 8, "op_types": ["Linear"]}])
    x = torch.ones(1, 2)
    model(x).sum().backward()
    assert seen == [QuantType.WEIGHT]
    torch.testing.assert_close(model[0].module.old_weight.grad, torch.full((1, 2), 2.0))


def test_a_custom_quantizer_written_nni_style_works() -> None:
    class Ternary(Quantizer):
        def quantize_weight(self, wrapper, **kwargs):
            w = wrapper.module.weight
            return torch.sign(w) * (w.abs() > 0.5 * w.abs().mean())

    model = nn.Sequential(nn.Linear(16, 4))
    Ternary(model, [{"quant_types": ["weight"], "quant_bits": 2, "op_types": ["Linear"]}]).compress()
    model(torch.randn(2, 16))
    assert set(torch.unique(model[0].module.weight).tolist()) <= {-1.0, 0.0, 1.0}
    assert find_wrappers(model)[0].name == "0"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_qat_step_on_cuda() -> None:
    model = cnn().cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    QAT_Quantizer(model, FULL8, opt, dummy_input=torch.randn(1, 1, 6, 6, device="cuda"))
    loss = model(torch.randn(8, 1, 6, 6, device="cuda")).sum()
    loss.backward()
    opt.step()
    model.eval()
    out = model(torch.randn(2, 1, 6, 6, device="cuda"))
    assert out.is_cuda and torch.isfinite(out).all()
