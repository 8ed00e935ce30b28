"""ONNX export: float models, quantised models as QDQ graphs ONNX Runtime runs with integer kernels."""

from __future__ import annotations

import collections
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from nni_pl.errors import ConfigError, MissingDependencyError

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxscript", "onnxruntime")),
    reason="needs the 'onnx' extra (onnx, onnxscript, onnxruntime): pip install -e .[onnx]",
)

OUT_STEP = 0.05  # the stand-in's output quantisation step


def test_importing_the_export_package_imports_neither_torch_nor_onnx() -> None:
    code = (
        "import sys, nni_pl.compression.export as e; e.__all__; "
        "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _ops(path: Path) -> collections.Counter[str]:
    import onnx

    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def _optimized_ops(path: Path, tmp_path: Path) -> collections.Counter[str]:
    """The operators ONNX Runtime actually runs after its graph optimisations (its fusions)."""
    from nni_pl.compression.export import ort_session

    optimized = tmp_path / f"{path.stem}.optimized.onnx"
    ort_session(path, threads=1, optimized_model_path=optimized)
    return _ops(optimized)


def _initializers(path: Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


# --- float ----------------------------------------------------------------------------------------------------


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.head = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def test_float_export_agrees_with_torch_at_any_batch_size_and_restores_the_modes(tmp_path: Path) -> None:
    from nni_pl.compression.export import export_onnx, verify_onnx

    torch.manual_seed(0)
    model = _Net()
    model.train()
    model.features[1].eval()  # a mixed state comes back as it was
    path = export_onnx(model, torch.randn(1, 1, 8, 8), tmp_path / "sub" / "float.onnx")
    assert path == tmp_path / "sub" / "float.onnx"
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "float.onnx"
    ]  # one file: no float.onnx.data beside it
    assert model.training and model.head.training and not model.features[1].training
    assert "QuantizeLinear" not in _ops(path)
    for batch in (1, 7):
        report = verify_onnx(path, model, torch.randn(batch, 1, 8, 8), rtol=1e-4, atol=1e-5)
        assert report.allclose, report
        assert report.samples == batch and report.top1_agreement == 1.0
        assert report.max_abs_diff < 1e-4
    assert model.training and not model.features[1].training  # verify_onnx restores the modes too


def test_export_argument_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nni_pl.compression.export import export_onnx

    model = nn.Linear(4, 2)
    with pytest.raises(ConfigError, match=r"dummy_input.*tensor or a tuple of tensors.*got list"):
        export_onnx(model, [[1.0, 2.0]], tmp_path / "x.onnx")
    with pytest.raises(ConfigError, match=r"qdq_dtype.*'uint8', 'int8', 'u8s8' or None, got 'u8'"):
        export_onnx(model, torch.randn(1, 4), tmp_path / "x.onnx", qdq_dtype="u8")
    with pytest.raises(ConfigError, match=r"input_names.*names 1 inputs, got 2 names"):
        export_onnx(model, torch.randn(1, 4), tmp_path / "x.onnx", input_names=("a", "b"))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "onnx" else real(name))
    with pytest.raises(
        MissingDependencyError, match=r"needs the package 'onnx'.*pip install 'nni-pl\[onnx\]'"
    ):
        export_onnx(model, torch.randn(1, 4), tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


# --- a fake-quantised stand-in (torch's fake-quant ops, as the quantizers' export form) -------------------------


def _fq(x: torch.Tensor, scale: float, zero_point: int = 0) -> torch.Tensor:
    return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, -128, 127)


def _per_channel(w: torch.Tensor) -> torch.Tensor:
    scale = (w.abs().amax(dim=tuple(range(1, w.dim()))) / 127).detach()
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -128, 127)


class _FakeQuantNet(nn.Module):
    """int8 activations (the input asymmetric), per-channel int8 weights, biases, a quantised output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _fq(x, 1 / 127, -128)  # [0, 2]: the full int8 range, where u8s8 kernels would saturate
        # after a ReLU the range starts at 0, so the zero point is the type's minimum (as an affine observer
        # makes it): ONNX Runtime then drops the Relu and fuses Conv -> Q into QLinearConv
        y = nn.functional.conv2d(x, _per_channel(self.conv1.weight), self.conv1.bias, padding=1)
        y = _fq(torch.relu(y), 0.02, -128)
        y = nn.functional.conv2d(y, _per_channel(self.conv2.weight), self.conv2.bias, padding=1)
        y = _fq(torch.relu(y), 0.02, -128)
        y = _fq(nn.functional.max_pool2d(y, 2).flatten(1), 0.02, -128)
        return _fq(nn.functional.linear(y, _per_channel(self.fc.weight), self.fc.bias), OUT_STEP)


@pytest.fixture(scope="module")
def fake_quant(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path, Path]:
    from nni_pl.compression.export import export_onnx

    folder = tmp_path_factory.mktemp("qdq")
    model = _FakeQuantNet()
    sample = torch.rand(1, 1, 8, 8)
    signed = export_onnx(model, sample, folder / "int8.onnx", quantized=True, qdq_dtype="int8")
    unsigned = export_onnx(model, sample, folder / "uint8.onnx", quantized=True)
    return model, signed, unsigned


def test_qdq_export_has_int8_weights_int32_biases_and_passes_the_checker(fake_quant: Any) -> None:
    import onnx

    _, path, _ = fake_quant
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    ops = _ops(path)
    assert "Constant" not in ops and "Cast" not in ops
    assert ops["QuantizeLinear"] == 5  # the activations only: the weights' were folded into initializers
    inits = _initializers(path)
    weights = [a for a in inits.values() if a.ndim >= 2]
    assert sorted(a.shape for a in weights) == [(8, 1, 3, 3), (8, 8, 3, 3), (10, 128)]
    assert all(a.dtype == np.int8 for a in weights)  # no float weight is left
    biases = [a for a in inits.values() if a.dtype == np.int32 and a.any()]  # (their zero points are 0)
    assert sorted(a.shape for a in biases) == [(8,), (8,), (10,)]  # int32, behind a DequantizeLinear
    assert ops["DequantizeLinear"] == 5 + 3 + 3  # activations, weights, biases


def test_qdq_export_runs_as_qlinearconv_and_agrees_within_one_step(fake_quant: Any, tmp_path: Path) -> None:
    from nni_pl.compression.export import verify_onnx

    model, signed, unsigned = fake_quant
    torch.manual_seed(1)
    x = torch.rand(64, 1, 8, 8) * 2
    for path in (signed, unsigned):
        ops = _optimized_ops(path, tmp_path)
        assert ops["QLinearConv"] == 2, ops
        assert ops["QGemm"] + ops["QLinearMatMul"] == 1, ops
    for batch in (1, 7, 64):
        report = verify_onnx(unsigned, model, x[:batch])
        assert report.samples == batch
        assert report.max_abs_diff <= OUT_STEP * 1.001, report  # at most one step of the output
        assert report.mean_abs_diff < OUT_STEP / 10, report
        assert report.top1_agreement is not None and report.top1_agreement >= 0.95
    # uint8 and int8 files hold the same numbers: without ONNX Runtime's int8 kernels they agree exactly
    np.testing.assert_allclose(
        _unoptimized_run(signed, x[:8].numpy()), _unoptimized_run(unsigned, x[:8].numpy())
    )


def test_u8s8_keeps_8_bit_weights_int8_under_uint8_activations(fake_quant: Any, tmp_path: Path) -> None:
    """``qdq_dtype='u8s8'``: quantize_static's layout for CPUs with VNNI/AMX, whatever the weights' range."""
    from nni_pl.compression.export import export_onnx

    model, _, unsigned = fake_quant
    path = export_onnx(
        model, torch.rand(1, 1, 8, 8), tmp_path / "u8s8.onnx", quantized=True, qdq_dtype="u8s8"
    )
    inits = _initializers(path)
    weights = [a for a in inits.values() if a.ndim >= 2]
    assert len(weights) == 3 and all(a.dtype == np.int8 for a in weights)
    assert max(int(np.abs(a).max()) for a in weights) == 127  # 8-bit weights: "auto" would pick uint8
    assert {a.dtype for a in inits.values() if a.ndim == 0 and a.dtype.itemsize == 1} == {np.dtype(np.uint8)}
    assert _optimized_ops(path, tmp_path)["QLinearConv"] == 2
    x = torch.rand(8, 1, 8, 8).numpy() * 2
    np.testing.assert_allclose(_unoptimized_run(path, x), _unoptimized_run(unsigned, x))  # the same numbers


def _unoptimized_run(model: Any, x: np.ndarray) -> np.ndarray:
    """The model's first output by ONNX Runtime without its graph optimisations (no integer kernels)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


class _SymmetricReluNet(nn.Module):
    """Symmetric int8 activations (zero point 0, as LSQ makes them) after a ReLU."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.conv2d(_fq(x, 1 / 127), _per_channel(self.conv.weight), padding=1)
        return _fq(torch.relu(y), 0.01)


def test_relu_before_a_symmetric_quantize_becomes_max_and_the_conv_runs_in_int8(tmp_path: Path) -> None:
    from nni_pl.compression.export import export_onnx, verify_onnx

    model = _SymmetricReluNet()
    path = export_onnx(model, torch.rand(1, 1, 8, 8), tmp_path / "relu.onnx", quantized=True)
    ops = _ops(path)
    assert ops["Max"] == 1 and "Relu" not in ops  # Q(relu(x)) == max(Q(x), zero point)
    assert _optimized_ops(path, tmp_path)["QLinearConv"] == 1
    x = torch.rand(16, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(_unoptimized_run(path, x.numpy()), expected, atol=1e-6)  # the same numbers
    assert verify_onnx(path, model, x).max_abs_diff <= 0.01 * 1.001  # int8 kernels: within one step


def test_finalize_qdq_keeps_the_values_of_a_graph_it_rewrites() -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from nni_pl.compression.export import finalize_qdq

    rng = np.random.default_rng(0)
    init = [
        numpy_helper.from_array(rng.normal(size=(3, 4)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([0.02, 0.01, 0.03], np.float32), "ws"),
        numpy_helper.from_array(np.zeros(3, np.int8), "wz"),
        numpy_helper.from_array(np.array([0.5, -0.25, 0.125], np.float32), "b"),
        numpy_helper.from_array(
            np.array([0.05], np.float32), "xs"
        ),  # a one-element scale, as torch writes it
        numpy_helper.from_array(np.array([-3], np.int8), "xz"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        helper.make_node("Cast", ["xd"], ["xc"], to=TensorProto.FLOAT),
        helper.make_node("QuantizeLinear", ["w", "ws", "wz"], ["wq"], axis=0),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
        helper.make_node("Gemm", ["xc", "wd", "b"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.normal(size=(5, 4)).astype(np.float32)
    before = _unoptimized_run(model, x)
    finalize_qdq(model)
    onnx.checker.check_model(model, full_check=True)
    after = _unoptimized_run(model, x)
    # the bias is rounded to a multiple of xs * ws: at most half of that apart
    np.testing.assert_allclose(after, before, atol=0.5 * 0.05 * 0.03 + 1e-6)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert [n.op_type for n in model.graph.node] == [
        "QuantizeLinear", "DequantizeLinear", "DequantizeLinear", "DequantizeLinear", "Gemm"
    ]  # fmt: skip
    assert inits["wq"].dtype == np.uint8 and inits["xz"].dtype == np.uint8 and inits["xz"].shape == ()
    assert inits["xz"] == 125  # -3 + 128
    bias = next(a for a in inits.values() if a.dtype == np.int32 and a.shape == (3,))
    np.testing.assert_array_equal(bias, np.round(np.array([0.5, -0.25, 0.125]) / (0.05 * inits["ws"])))


# --- a real quantizer: QAT on 8x8 digits -------------------------------------------------------------------------


def _digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    return x[:1400], y[:1400], x[1400:], y[1400:]  # the last 397 images are held out


def test_qat_quantized_cnn_runs_in_int8_in_onnx_runtime_and_agrees_with_torch(tmp_path: Path) -> None:
    from nni_pl.compression.export import export_onnx, verify_onnx
    from nni_pl.compression.quantization import QAT_Quantizer

    torch.manual_seed(0)
    x_train, y_train, x_test, y_test = _digits()
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )
    config = [
        {"quant_types": ["weight", "input"], "quant_bits": 8, "op_types": ["Conv2d", "Linear"]},
        {"quant_types": ["output"], "quant_bits": 8, "op_types": ["ReLU"]},
    ]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    QAT_Quantizer(model, config, optimizer, dummy_input=x_train[:1])  # BatchNorm folded into the conv
    for _ in range(25):
        batch = torch.randint(0, len(x_train), (128,))
        loss = nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    state = {k: v.clone() for k, v in model.state_dict().items()}

    path = export_onnx(model, x_train[:1], tmp_path / "qat.onnx")  # recognised as quantised: QDQ
    assert model.training  # its mode is back, and the export changed no weight or tracked range
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    ops = _optimized_ops(path, tmp_path)
    assert ops["QLinearConv"] == 2 and ops["QGemm"] == 1, ops
    report = verify_onnx(path, model, x_test)
    assert report.top1_agreement is not None and report.top1_agreement >= 0.99, report
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    assert accuracy > 0.7  # trained, so the agreement is about real decisions


def test_auto_qdq_type_keeps_int8_weights_only_when_they_fit_7_bits(tmp_path) -> None:
    """u8s8 (ONNX Runtime's fast kernels) only where they cannot saturate; uint8 everywhere otherwise."""
    import onnx
    from onnx import numpy_helper

    from nni_pl.compression.export import export_onnx, verify_onnx
    from nni_pl.compression.quantization import QAT_Quantizer

    def weight_types(bits: int) -> set[int]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(64, 3)
        )
        QAT_Quantizer(
            model,
            [
                {
                    "quant_types": ["weight", "input"],
                    "quant_bits": {"weight": bits, "input": 8},
                    "quant_scheme": {"weight": "per_channel_symmetric", "input": "per_tensor_affine"},
                    "op_types": ["Conv2d", "Linear"],
                },
                {"quant_types": ["output"], "quant_bits": 8, "op_types": ["ReLU"]},
            ],
        )
        model(torch.rand(8, 1, 6, 6))
        model.eval()
        path = export_onnx(model, torch.rand(1, 1, 6, 6), tmp_path / f"w{bits}.onnx")
        graph = onnx.load(path).graph
        inits = {t.name: t for t in graph.initializer}
        weights = {
            n.input[0]
            for n in graph.node
            if n.op_type == "DequantizeLinear"
            and n.input[0] in inits
            and inits[n.input[0]].data_type != onnx.TensorProto.INT32  # biases
        }
        assert weights
        for name in weights:
            assert numpy_helper.to_array(inits[name]).dtype in (np.int8, np.uint8)
        activations = {
            inits[n.input[2]].data_type
            for n in graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in inits and len(n.input) > 2
        }
        assert activations == {onnx.TensorProto.UINT8}
        report = verify_onnx(path, model, torch.rand(16, 1, 6, 6))
        assert report.top1_agreement == 1.0
        return {inits[name].data_type for name in weights}

    assert weight_types(7) == {onnx.TensorProto.INT8}
    assert weight_types(8) == {onnx.TensorProto.UINT8}


def test_qat_with_7_bit_weights_exports_int8_weights_that_run_exactly_in_u8s8_kernels(tmp_path: Path) -> None:
    """``quant_bits: {weight: 7}``: int8 weights in [-64, 64] (ONNX Runtime's u8s8 kernels), which cannot
    saturate ``vpmaddubsw`` (x86 without VNNI) even under uint8 inputs at 255; the same outputs as the exact
    u8u8 file, and the fake-quantised model's decisions."""
    from nni_pl.compression.export import export_onnx, ort_session, verify_onnx
    from nni_pl.compression.quantization import QAT_Quantizer

    torch.manual_seed(0)
    x_train, y_train, x_test, _ = _digits()
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )
    config = [
        {
            "quant_types": ["weight", "input"],
            "quant_bits": {"weight": 7, "input": 8},
            "quant_scheme": {"weight": "per_channel_symmetric", "input": "per_tensor_affine"},
            "op_types": ["Conv2d", "Linear"],
        },
        {"quant_types": ["output"], "quant_bits": 8, "op_types": ["ReLU"]},
    ]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    QAT_Quantizer(model, config, optimizer, dummy_input=x_train[:1])
    for _ in range(25):
        batch = torch.randint(0, len(x_train), (128,))
        loss = nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    path = export_onnx(model, x_train[:1], tmp_path / "w7.onnx")  # qdq_dtype="auto"
    exact = export_onnx(model, x_train[:1], tmp_path / "u8u8.onnx", qdq_dtype="uint8")
    inits = _initializers(path)
    weights = [a for a in inits.values() if a.ndim >= 2]
    assert len(weights) == 3 and all(a.dtype == np.int8 for a in weights)
    assert max(int(np.abs(a).max()) for a in weights) == 64  # the whole 7-bit range, and no more
    assert all(a.dtype == np.uint8 for a in inits.values() if a.ndim == 0 and a.dtype.itemsize == 1)
    ops = _optimized_ops(path, tmp_path)
    assert ops["QLinearConv"] == 2 and ops["QGemm"] == 1, ops
    # the first convolution's input reaches the top of its uint8 range: 255 * 64 * 2 < 32767, no saturation
    assert float(x_test.max()) == 1.0
    report = verify_onnx(path, model, x_test)
    assert report.top1_agreement is not None and report.top1_agreement >= 0.99, report
    model.eval()
    with torch.no_grad():
        logits = model(x_test)
    assert report.max_abs_diff < 0.05 * float(logits.abs().max()), report  # rounding of a step, no saturation
    fast, slow = ort_session(path, threads=1), ort_session(exact, threads=1)
    feed = x_test.numpy()
    np.testing.assert_allclose(
        fast.run(None, {fast.get_inputs()[0].name: feed})[0],
        slow.run(None, {slow.get_inputs()[0].name: feed})[0],
        atol=1e-4,
    )
