"""ModelSpeedupTensorRT: everything up to the engine build runs here; the engine tests need TensorRT and a GPU.

TensorRT installs only from NVIDIA's index and needs a CUDA GPU, so the tests that build and run engines are
skipped where either is missing; they are written in full and run where both exist. The rest checks what
TensorRT would be given: the ONNX file its parser reads, the dynamic ranges by tensor name and bits by node name
(from hand-written NNI calibration dicts and from a real QAT_Quantizer), the calibration cache format, the
calibration batches, the per-layer precision decisions, and the errors.
"""

from __future__ import annotations

import importlib.util
import struct
import sys

import numpy as np
import onnx
import onnx.helper as oh
import pytest
import torch
from onnx import TensorProto, numpy_helper
from torch import nn

from nni_pl.compression.export._trt_network import TrtLayer, assign_layer_precisions
from nni_pl.compression.export._trt_runtime import cache_version, cuda_device, import_tensorrt
from nni_pl.compression.export.tensorrt import (
    CalibrationCache,
    Calibrator,
    ModelSpeedupTensorRT,
    TensorRTError,
    TensorRTPlan,
    batch_calibration_data,
    map_layers_to_onnx,
    plan_tensorrt_precision,
)
from nni_pl.errors import ConfigError, MissingDependencyError

SHAPE = (4, 1, 12, 12)


def _tensorrt_and_gpu() -> bool:
    return importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()


needs_tensorrt = pytest.mark.skipif(
    not _tensorrt_and_gpu(),
    reason="TensorRT and a CUDA GPU are not available here: TensorRT installs only from NVIDIA's index",
)


class Net(nn.Module):
    """conv-bn-relu-pool, flatten, fc-relu-fc: the ops NNI's TensorRT speed-up supports."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(4 * 5 * 5, 16)
        self.relu2 = nn.ReLU()
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        return self.fc2(self.relu2(self.fc1(torch.flatten(x, 1))))


def nni_config() -> dict:
    """A calibration dict in NNI 2.5's format (what QAT_Quantizer.export_model returns)."""
    return {
        "conv1": {
            "weight_bits": 8,
            "weight_scale": [0.01],
            "weight_zero_point": [0],
            "input_bits": 8,
            "tracked_min_input": -0.42,
            "tracked_max_input": 2.82,
        },
        "relu1": {"output_bits": 8, "tracked_min_output": 0.0, "tracked_max_output": 5.1},
        "fc1": {"weight_bits": 8, "output_bits": 8, "tracked_min_output": -3.0, "tracked_max_output": 4.0},
        "fc2": {"weight_bits": 16, "output_bits": 16},
    }


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Net, ModelSpeedupTensorRT, TensorRTPlan, onnx.ModelProto]:
    torch.manual_seed(0)
    model = Net()
    path = tmp_path_factory.mktemp("trt") / "net.onnx"
    speedup = ModelSpeedupTensorRT(model, SHAPE, config=nni_config(), batchsize=4, onnx_path=path)
    plan = speedup.export_onnx()
    return model, speedup, plan, onnx.load(str(path))


def _values(proto: onnx.ModelProto) -> set[str]:
    g = proto.graph
    return {i.name for i in g.input} | {t.name for t in g.initializer} | {o for n in g.node for o in n.output}


# -- the ONNX TensorRT parses, and the plan ------------------------------------------------------------------
def test_export_onnx_writes_a_valid_float_graph_whose_names_match_the_plan(exported) -> None:
    model, _, plan, proto = exported
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["actual_input_1"]
    assert [o.name for o in proto.graph.output] == ["output1"]
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == list(
        SHAPE
    )  # fixed batch
    ops = {n.op_type for n in proto.graph.node}
    assert "QuantizeLinear" not in ops and "BatchNormalization" not in ops  # float; BN folded into the Conv
    assert set(plan.ranges) <= _values(proto)  # every range names a tensor TensorRT will have
    assert set(plan.node_bits) <= {n.name for n in proto.graph.node}
    assert plan.node_bits == {"/conv1/Conv": 8, "/relu1/Relu": 8, "/fc1/Gemm": 8, "/fc2/Gemm": 16}
    assert plan.uses_int8 and plan.uses_fp16
    # the ONNX computes what the float model computes
    import onnxruntime as ort

    x = torch.randn(*SHAPE)
    got = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"actual_input_1": x.numpy()}
    )[0]
    model.eval()
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_plan_ranges_come_from_the_tracked_ranges_and_the_weights(exported) -> None:
    _, _, plan, proto = exported
    weights = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    conv = next(n for n in proto.graph.node if n.name == "/conv1/Conv")
    assert conv.input[1] != "conv1.weight"  # BatchNorm folded: the exporter renamed the weight
    assert plan.layers["conv1"].weight == conv.input[1]
    amax = float(np.abs(weights[conv.input[1]]).max())
    assert plan.ranges[conv.input[1]] == pytest.approx((-amax, amax))
    assert plan.ranges["actual_input_1"] == (-0.42, 2.82)  # conv1's input
    assert plan.ranges["/relu1/Relu_output_0"] == (0.0, 5.1)
    # carried over the MaxPool and the Flatten: fc1 quantizes no input, yet its input has a range
    assert plan.ranges["/pool1/MaxPool_output_0"] == (0.0, 5.1)
    assert plan.ranges[plan.layers["fc1"].inputs[0]] == (0.0, 5.1)
    assert plan.ranges["/fc1/Gemm_output_0"] == (-3.0, 4.0)
    # back from relu1's output to the conv's output, which only relu1 reads
    assert plan.ranges["/conv1/Conv_output_0"] == (-5.1, 5.1)
    fc1_amax = float(np.abs(weights["fc1.weight"]).max())
    assert plan.ranges["fc1.weight"] == pytest.approx((-fc1_amax, fc1_amax))
    assert "fc2.weight" not in plan.ranges and "output1" not in plan.ranges  # fc2 runs in fp16


def test_a_tensor_two_layers_quantize_gets_the_union_of_their_ranges(tmp_path) -> None:
    config = {
        "conv1": {
            "weight_bits": 8,
            "input_bits": 8,
            "tracked_min_input": -1.0,
            "tracked_max_input": 1.0,
            "output_bits": 8,
            "tracked_min_output": -2.0,
            "tracked_max_output": 3.0,
        },
        "relu1": {"input_bits": 8, "tracked_min_input": -1.0, "tracked_max_input": 4.0},
    }
    plan = ModelSpeedupTensorRT(
        Net(), SHAPE, config=config, batchsize=4, onnx_path=tmp_path / "m.onnx"
    ).export_onnx()
    assert plan.ranges["/conv1/Conv_output_0"] == (-2.0, 4.0)


def test_map_layers_to_onnx_follows_nested_torchscript_scopes(tmp_path) -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)
            self.relu = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu(self.conv(x)) + x

    class Deep(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(1, 2, 1)
            self.layer = nn.Sequential(Block(), Block())
            self.unused = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(self.stem(x))

    speedup = ModelSpeedupTensorRT(Deep(), (1, 1, 6, 6), batchsize=1, onnx_path=tmp_path / "deep.onnx")
    speedup.export_onnx()
    proto = onnx.load(str(tmp_path / "deep.onnx"))
    layers = map_layers_to_onnx(proto, ["layer.1.conv", "layer.1", "layer.1.relu", "unused"])
    assert layers["layer.1.conv"].nodes == ("/layer/layer.1/conv/Conv",)
    assert layers["layer.1.conv"].weight == "layer.1.conv.weight"
    assert layers["layer.1.conv"].inputs == ("/layer/layer.0/Add_output_0",)
    assert layers["layer.1.relu"].outputs == ("/layer/layer.1/relu/Relu_output_0",)
    # a block: all its nodes; its inputs are what flows in (read twice: conv and the residual add)
    assert layers["layer.1"].op_types == ("Conv", "Relu", "Add")
    assert layers["layer.1"].inputs == ("/layer/layer.0/Add_output_0",)
    assert layers["unused"].nodes == ()
    with pytest.raises(
        ConfigError, match=r"config\['unused'\].*no node of this layer.*remove it from config"
    ):
        plan_tensorrt_precision(proto, {"unused": {"weight_bits": 32}})


def test_map_layers_to_onnx_reads_torch_export_scopes_and_falls_back_to_the_weight() -> None:
    def node(op: str, inputs: list[str], outputs: list[str], name: str, scopes: list[str] | None = None):
        n = oh.make_node(op, inputs, outputs, name=name)
        if scopes is not None:
            prop = n.metadata_props.add()
            prop.key, prop.value = "pkg.torch.onnx.name_scopes", repr(scopes)
        return n

    graph = oh.make_graph(
        [
            node("Gemm", ["x", "fc.weight"], ["linear"], "node_linear", ["", "fc", "linear"]),
            node("Relu", ["linear"], ["relu"], "node_relu", ["", "act", "relu"]),
            node("MatMul", ["relu", "head.weight"], ["y"], "n7"),
        ],  # no scope at all: found by its weight
        "g",
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [
            oh.make_tensor("fc.weight", TensorProto.FLOAT, [2, 2], [1, 2, 3, 4]),
            oh.make_tensor("head.weight", TensorProto.FLOAT, [2, 2], [1, -8, 3, 4]),
        ],
    )
    layers = map_layers_to_onnx(oh.make_model(graph), ["fc", "act", "head"])
    assert (layers["fc"].nodes, layers["fc"].inputs, layers["fc"].outputs) == (
        ("node_linear",),
        ("x",),
        ("linear",),
    )
    assert layers["act"].nodes == ("node_relu",)
    assert (layers["head"].nodes, layers["head"].weight, layers["head"].outputs) == (
        ("n7",),
        "head.weight",
        ("y",),
    )
    plan = plan_tensorrt_precision(
        oh.make_model(graph),
        {
            "head": {"weight_bits": 8},
            "act": {"output_bits": 8, "tracked_min_output": 0.0, "tracked_max_output": 2.0},
        },
    )
    assert plan.ranges["head.weight"] == (-8.0, 8.0)
    assert plan.ranges["relu"] == (0.0, 2.0)


def test_a_real_qat_calibration_becomes_the_plan_and_the_model_stays_wrapped(tmp_path) -> None:
    from nni_pl.compression.quantization import QAT_Quantizer

    torch.manual_seed(0)
    model = Net()
    config_list = [
        {
            "quant_types": ["input", "weight"],
            "quant_bits": {"input": 8, "weight": 8},
            "op_names": ["conv1", "fc1"],
        },
        {"quant_types": ["output"], "quant_bits": {"output": 8}, "op_names": ["relu1", "relu2"]},
    ]
    # no optimizer: building one imports torch._dynamo (seconds); a forward in training mode tracks the ranges
    quantizer = QAT_Quantizer(model, config_list, dummy_input=torch.randn(2, 1, 12, 12))
    quantizer.compress()
    model(torch.randn(8, 1, 12, 12))
    calibration = quantizer.export_model(tmp_path / "model.pth", tmp_path / "calibration.pth")
    speedup = ModelSpeedupTensorRT(
        model, SHAPE, config=calibration, batchsize=4, onnx_path=tmp_path / "qat.onnx"
    )
    plan = speedup.export_onnx()
    assert plan.ranges["actual_input_1"] == (
        calibration["conv1"]["tracked_min_input"],
        calibration["conv1"]["tracked_max_input"],
    )
    assert plan.ranges["/relu2/Relu_output_0"] == (0.0, calibration["relu2"]["tracked_max_output"])
    assert plan.ranges[plan.layers["fc1"].inputs[0]] == (
        calibration["fc1"]["tracked_min_input"],
        calibration["fc1"]["tracked_max_input"],
    )
    assert plan.node_bits == {"/conv1/Conv": 8, "/relu1/Relu": 8, "/fc1/Gemm": 8, "/relu2/Relu": 8}
    # the wrappers are back and the model is still training; the ONNX holds the float (unquantized) fc1 weight
    assert type(model.conv1).__name__ == "QuantizerModuleWrapper" and model.training
    proto = onnx.load(str(tmp_path / "qat.onnx"))
    fc1 = next(numpy_helper.to_array(t) for t in proto.graph.initializer if t.name == "fc1.weight")
    np.testing.assert_array_equal(fc1, model.fc1.module.old_weight.detach().numpy())
    assert CalibrationCache.from_ranges(plan.ranges, version="8.6.1").scales.keys() == plan.ranges.keys()


# -- the calibration cache -------------------------------------------------------------------------------------
# lines as TensorRT 8.4.1 wrote them (an unnamed helper tensor, a zero scale written as "0")
GOLDEN = (
    "TRT-8401-EntropyCalibration2\n"
    "input: 3caa54fc\n"
    "(Unnamed Layer* 64) [Shuffle]_output: 0\n"
    "/conv1/Conv_output_0: 3d5c11b5\n"
)


def test_calibration_cache_reads_and_rewrites_tensorrts_file_byte_for_byte(tmp_path) -> None:
    cache = CalibrationCache.from_text(GOLDEN.encode())
    assert (cache.version, cache.algorithm) == (8401, "EntropyCalibration2")
    assert list(cache.scales) == ["input", "(Unnamed Layer* 64) [Shuffle]_output", "/conv1/Conv_output_0"]
    assert cache.scales["input"] == struct.unpack(">f", bytes.fromhex("3caa54fc"))[0]
    assert cache.scales["(Unnamed Layer* 64) [Shuffle]_output"] == 0.0
    assert cache.to_text() == GOLDEN
    assert CalibrationCache.read(cache.write(tmp_path / "sub" / "c.cache")) == cache


def test_calibration_cache_from_ranges_round_trips_with_scale_amax_over_127() -> None:
    ranges = {"actual_input_1": (-0.42, 2.82), "/relu1/Relu_output_0": (0.0, 5.1), "w": (-1.984375, 0.5)}
    cache = CalibrationCache.from_ranges(ranges, version=100300, algorithm="minmax")
    text = cache.to_text()
    assert text.splitlines()[0] == "TRT-100300-MinMaxCalibration"
    assert "w: 3c800000" in text.splitlines()  # 1.984375 / 127 = 1/64 exactly
    back = CalibrationCache.from_text(text)
    for name, (lo, hi) in ranges.items():
        amax = max(abs(lo), abs(hi))
        assert back.scales[name] == pytest.approx(amax / 127, rel=1e-7)
        assert back.ranges()[name] == pytest.approx((-amax, amax), rel=1e-6)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("tensor: 3c800000\n", "first line must read 'TRT-<version>-<algorithm>'"),
        ("TRT-8601-EntropyCalibration2\ninput 3c800000\n", "line 2 must read"),
        ("TRT-8601-EntropyCalibration2\ninput: 0x3c80\n", "line 2 must read"),
        ("", "got ''"),
    ],
)
def test_calibration_cache_rejects_what_tensorrt_did_not_write(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        CalibrationCache.from_text(text)


def test_cache_version_counts_like_nv_tensorrt_version() -> None:
    assert [cache_version(v) for v in ("7.1.3.4", "8.2.0.6", "8.6.1.post1", "10.0.1", "10.14.1")] == [
        7103,
        8200,
        8601,
        100001,
        101401,
    ]


# -- calibration batches and the calibrator --------------------------------------------------------------------
def test_batch_calibration_data_makes_contiguous_float32_batches_from_a_dataloader() -> None:
    data = torch.utils.data.TensorDataset(torch.randn(10, 1, 12, 12, dtype=torch.float64), torch.zeros(10))
    loader = torch.utils.data.DataLoader(data, batch_size=3)
    batches = batch_calibration_data(loader, 4, (1, 12, 12))
    assert len(batches) == 2  # 10 samples: two batches of 4, the last 2 dropped
    assert all(b.shape == (4, 1, 12, 12) and b.dtype == np.float32 and b.flags.c_contiguous for b in batches)
    np.testing.assert_allclose(batches[1], data.tensors[0][4:8].numpy(), rtol=1e-6)
    assert len(batch_calibration_data(torch.randn(8, 3), 8)) == 1  # a plain tensor


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (np.zeros((8, 1, 11, 12)), r"samples of shape \(1, 11, 12\).*input is \(1, 12, 12\)"),
        (np.zeros((3, 1, 12, 12)), "holds 3 samples, fewer than one batch of batchsize=4"),
        ("images/", "must be a DataLoader, a tensor or an array"),
        ([("a", 1)], "got an item of type str"),
    ],
)
def test_batch_calibration_data_errors_name_the_argument(data, match: str) -> None:
    with pytest.raises(ConfigError, match=rf"'calib_data_loader': .*{match}"):
        batch_calibration_data(data, 4, (1, 12, 12))


def test_calibrator_batches_and_cache_file_without_a_gpu(tmp_path, monkeypatch) -> None:
    calib = Calibrator(np.ones((9, 2), np.float32), tmp_path / "cal.cache", batch_size=4, algorithm="entropy")
    assert (calib.get_batch_size(), len(calib.batches), calib.algorithm) == (4, 2, "ENTROPY_CALIBRATION")
    assert calib.read_calibration_cache() is None
    calib.write_calibration_cache(memoryview(GOLDEN.encode()))
    assert calib.read_calibration_cache() == GOLDEN.encode()
    calib.current_index = len(calib.batches)
    assert calib.get_batch(["actual_input_1"]) is None  # all batches given: calibration ends
    calib.reset()
    _no_gpu(monkeypatch)
    with pytest.raises(TensorRTError, match="TensorRT needs a CUDA GPU and none is visible"):
        calib.get_batch(["actual_input_1"])


# -- decisions per TensorRT layer ------------------------------------------------------------------------------
def test_assign_layer_precisions_on_the_layers_the_onnx_parser_makes(exported) -> None:
    _, _, plan, proto = exported
    nodes = {n.name: list(n.output) for n in proto.graph.node}
    layers = [  # the shape of what TensorRT's parser makes of the graph (Gemm: constant, transpose, MatMul, bias)
        TrtLayer(0, "/conv1/Conv", "CONVOLUTION", ("actual_input_1",), ("/conv1/Conv_output_0",)),
        TrtLayer(1, "/relu1/Relu", "ACTIVATION", ("/conv1/Conv_output_0",), ("/relu1/Relu_output_0",)),
        TrtLayer(2, "/pool1/MaxPool", "POOLING", ("/relu1/Relu_output_0",), ("/pool1/MaxPool_output_0",)),
        TrtLayer(3, "/Flatten", "SHUFFLE", ("/pool1/MaxPool_output_0",), ("/Flatten_output_0",)),
        TrtLayer(
            4,
            "(Unnamed Layer* 4) [Constant]",
            "CONSTANT",
            (),
            ("(Unnamed Layer* 4) [Constant]_output",),
            constant_amax=0.25,
        ),
        TrtLayer(5, "/fc1/Gemm_transpose", "SHUFFLE", ("(Unnamed Layer* 4) [Constant]_output",), ("w_t",)),
        TrtLayer(6, "/fc1/Gemm", "MATRIX_MULTIPLY", ("/Flatten_output_0", "w_t"), ("/fc1/Gemm_mm",)),
        TrtLayer(7, "/fc1/Gemm_bias", "ELEMENTWISE", ("/fc1/Gemm_mm", "b"), ("/fc1/Gemm_output_0",)),
        TrtLayer(8, "/relu2/Relu", "ACTIVATION", ("/fc1/Gemm_output_0",), ("/relu2/Relu_output_0",)),
        TrtLayer(9, "/fc2/Gemm", "MATRIX_MULTIPLY", ("/relu2/Relu_output_0", "w2"), ("output1",)),
        TrtLayer(10, "(Unnamed Layer* 10) [Shuffle]", "SHUFFLE", ("output1",), ("extra",)),
        TrtLayer(11, "/shape", "SHAPE", ("output1",), ("s",), float_io=False),
    ]
    assigned = assign_layer_precisions(layers, plan, onnx_nodes=nodes, strict=True)
    assert assigned.ranges["w_t"] == assigned.ranges["(Unnamed Layer* 4) [Constant]_output"] == (-0.25, 0.25)
    assert assigned.precision[0] == 8 and assigned.output_bits[(0, 0)] == 8  # conv: int8 in and out
    assert assigned.precision[6] == 8 and (6, 0) not in assigned.output_bits  # MatMul: int8 in, float out
    assert 7 not in assigned.precision  # the bias add reads the MatMul's float output: left in float
    assert assigned.precision[9] == 16 and assigned.output_bits[(9, 0)] == 16  # fc2: fp16
    assert assigned.precision[8] == 32 and assigned.output_bits[(8, 0)] == 32  # other layers of nodes: fp32
    assert 2 not in assigned.precision and 3 not in assigned.precision  # MaxPool, Flatten between int8 layers
    assert 4 not in assigned.precision and 10 not in assigned.precision and 11 not in assigned.precision
    loose = assign_layer_precisions(layers, plan, onnx_nodes=nodes, strict=False)
    assert 8 not in loose.precision and loose.precision[0] == 8  # not strict: only the planned layers


def test_assign_layer_precisions_carries_ranges_through_the_reshapes_around_a_fully_connected_layer(
    exported,
) -> None:
    _, _, plan, proto = exported
    nodes = {n.name: list(n.output) for n in proto.graph.node}
    layers = [  # TensorRT 8's Gemm: reshape to 4-D, FullyConnected (kernel weights), reshape back
        TrtLayer(0, "(Unnamed Layer* 0) [Shuffle]", "SHUFFLE", ("/Flatten_output_0",), ("pre",)),
        TrtLayer(1, "/fc1/Gemm", "FULLY_CONNECTED", ("pre",), ("fc",)),
        TrtLayer(2, "(Unnamed Layer* 2) [Shuffle]", "SHUFFLE", ("fc",), ("/fc1/Gemm_output_0",)),
    ]
    assigned = assign_layer_precisions(layers, plan, onnx_nodes=nodes)
    assert assigned.ranges["pre"] == plan.ranges["/Flatten_output_0"]
    assert assigned.ranges["fc"] == plan.ranges["/fc1/Gemm_output_0"] == (-3.0, 4.0)
    # the FullyConnected runs in int8 with an int8 output; the reshape back writes the Gemm's ONNX output, so it
    # belongs to the Gemm's node and runs in int8 too; the reshape before it belongs to no node
    assert assigned.precision == {1: 8, 2: 8} and assigned.output_bits == {(1, 0): 8, (2, 0): 8}


# -- argument validation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"extra_layer_bits": 4}, r"'extra_layer_bits': must be 8, 16 or 32 .*got 4"),
        ({"extra_layer_bits": 8}, r"'extra_layer_bits': is 8, .*calib_data_loader is None"),
        (
            {"input_shape": (2, 1, 12, 12)},
            r"'input_shape': .*must equal batchsize=4, got input_shape=\(2, 1, 12, "
            r"12\); pass input_shape=\(4, 1, 12, 12\) or batchsize=2",
        ),
        ({"input_shape": (4, 0, 12)}, r"'input_shape': must be a tuple of positive ints"),
        ({"batchsize": 0}, r"'batchsize': must be a positive integer, got 0"),
        (
            {"config": {"conv9": {"weight_bits": 8}}},
            r"config\['conv9'\]\": the model has no module named 'conv9' "
            r"\(did you mean 'conv1'\?\)",
        ),
        ({"config": {"conv1": {"weight_bits": 4}}}, r"TensorRT runs 8, 16 or 32 bits, got 4"),
        (
            {"config": {"relu1": {"output_bits": 8}}},
            r"has output_bits=8 but no tracked_min_output or "
            r"tracked_max_output",
        ),
        (
            {"config": {"relu1": {"output_bits": 8, "tracked_min_output": 2.0, "tracked_max_output": 1.0}}},
            r"tracked_min_output <= tracked_max_output must hold, got \(2.0, 1.0\)",
        ),
        ({"config": {"relu1": {}}}, "quantizes nothing"),
        ({"config": [("conv1", 8)]}, r"'config': must be the calibration dict"),
        ({"input_names": ["a", "b"]}, r"'input_names': must be a list of one name"),
        ({"output_names": []}, r"'output_names': must be a list of distinct"),
        (
            {"calibrate_type": "percentile"},
            r"'calibrate_type': must be a tensorrt.CalibrationAlgoType.*'percentile'",
        ),
        ({"strict_datatype": "yes"}, r"'strict_datatype': must be True or False, got 'yes'"),
        ({"calib_data_loader": torch.zeros(8, 3, 12, 12)}, r"'calib_data_loader': holds samples of shape"),
        ({"model": "net.pth"}, r"'model': must be a torch.nn.Module, got str"),
    ],
)
def test_invalid_arguments_raise_one_line_errors_that_name_them(kwargs: dict, match: str) -> None:
    args = {"model": Net(), "input_shape": SHAPE, "batchsize": 4} | kwargs
    with pytest.raises(ConfigError, match=match) as info:
        ModelSpeedupTensorRT(**args)
    assert "\n" not in str(info.value)


def test_an_int8_weight_whose_input_has_no_range_is_an_error(tmp_path) -> None:
    speedup = ModelSpeedupTensorRT(
        Net(), SHAPE, config={"conv1": {"weight_bits": 8}}, batchsize=4, onnx_path=tmp_path / "m.onnx"
    )
    with pytest.raises(
        ConfigError,
        match=r"config\['conv1'\].*nothing gives its input 'actual_input_1' a range.*"
        r"add 'input' to the layer's quant_types",
    ):
        speedup.export_onnx()


def test_output_names_must_name_every_output(tmp_path) -> None:
    class Two(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x + 1, x * 2

    speedup = ModelSpeedupTensorRT(Two(), (1, 2), batchsize=1, onnx_path=tmp_path / "two.onnx")
    with pytest.raises(ConfigError, match=r"'output_names': the model has 2 output\(s\)"):
        speedup.export_onnx()


# -- without TensorRT or a GPU ---------------------------------------------------------------------------------
def _no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_missing_tensorrt_names_the_extra_and_nvidias_index(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as when it is not installed
    with pytest.raises(MissingDependencyError) as info:
        import_tensorrt("ModelSpeedupTensorRT.compress()")
    assert str(info.value).startswith("ModelSpeedupTensorRT.compress() needs the package 'tensorrt'")
    assert "pip install 'nni-pl[tensorrt]' --extra-index-url https://pypi.nvidia.com" in str(info.value)
    speedup = ModelSpeedupTensorRT(
        Net(), SHAPE, config=nni_config(), batchsize=4, onnx_path=tmp_path / "m.onnx"
    )
    with pytest.raises(MissingDependencyError, match=r"nni-pl\[tensorrt\]"):
        speedup.compress()
    assert not (tmp_path / "m.onnx").exists()  # it fails before any work
    with pytest.raises(
        MissingDependencyError, match=r"Calibrator.to_tensorrt\(\) needs the package 'tensorrt'"
    ):
        Calibrator(np.zeros((4, 2)), None, batch_size=4).to_tensorrt()
    # the cache for another machine still gets a header: TensorRT 8.6.1's
    assert CalibrationCache.from_ranges({"x": (0.0, 1.0)}).version == 8601


def test_no_gpu_is_a_clear_error(monkeypatch) -> None:
    _no_gpu(monkeypatch)
    with pytest.raises(
        TensorRTError,
        match=r"^build: TensorRT needs a CUDA GPU and none is visible \(pycuda: not "
        r"installed; torch: torch.cuda.is_available\(\) is False\)",
    ):
        cuda_device("build")


def test_inference_before_compress_says_what_to_call() -> None:
    speedup = ModelSpeedupTensorRT(Net(), SHAPE, batchsize=4)
    with pytest.raises(TensorRTError, match=r"call compress\(\) or load_quantized_model\(path\) first"):
        speedup.inference(torch.randn(*SHAPE))
    with pytest.raises(TensorRTError, match="no engine yet"):
        speedup.export_quantized_model("engine.trt")


# -- TensorRT on a GPU -----------------------------------------------------------------------------------------
def _qat_model(tmp_path) -> tuple[Net, dict, torch.Tensor]:
    """A QAT-trained Net (BN folded) on a learnable toy task, its calibration dict and test inputs."""
    from nni_pl.compression.quantization import QAT_Quantizer

    torch.manual_seed(0)
    model = Net()
    config_list = [
        {
            "quant_types": ["input", "weight"],
            "quant_bits": {"input": 8, "weight": 8},
            "op_names": ["conv1", "fc1"],
        },
        {"quant_types": ["output"], "quant_bits": {"output": 8}, "op_names": ["relu1", "relu2"]},
    ]
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    quantizer = QAT_Quantizer(model, config_list, optimizer, dummy_input=torch.randn(2, 1, 12, 12))
    quantizer.compress()
    for _ in range(60):
        x = torch.randn(32, 1, 12, 12)
        y = (x.mean((1, 2, 3)) > 0).long() + (x[:, :, :6].mean((1, 2, 3)) > 0.1).long()
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    calibration = quantizer.export_model(tmp_path / "model.pth", tmp_path / "calibration.pth")
    model.eval()
    return model, calibration, torch.randn(10, 1, 12, 12)  # 10: the last batch of 4 is padded


@needs_tensorrt
def test_int8_engine_from_a_qat_calibration_matches_torch(tmp_path) -> None:
    model, calibration, x = _qat_model(tmp_path)
    with torch.no_grad():
        expected = model(x)  # the fake-quantized forward
    speedup = ModelSpeedupTensorRT(
        model, SHAPE, config=calibration, batchsize=4, onnx_path=tmp_path / "m.onnx"
    )
    speedup.compress()
    output, seconds = speedup.inference(x)
    assert output.shape == expected.shape and seconds > 0
    assert (output.argmax(1) == expected.argmax(1)).float().mean() >= 0.8
    assert (output - expected).abs().max() <= 0.1 * expected.abs().max() + 0.05


@needs_tensorrt
def test_engine_export_and_load_round_trip(tmp_path) -> None:
    model, calibration, x = _qat_model(tmp_path)
    built = ModelSpeedupTensorRT(model, SHAPE, config=calibration, batchsize=4, onnx_path=tmp_path / "m.onnx")
    built.compress()
    built.export_quantized_model(tmp_path / "engine.trt")
    loaded = ModelSpeedupTensorRT(model, SHAPE, config=calibration, batchsize=4)
    loaded.load_quantized_model(tmp_path / "engine.trt")
    torch.testing.assert_close(loaded.inference(x)[0], built.inference(x)[0])


@needs_tensorrt
def test_post_training_calibration_writes_a_cache_tensorrt_reuses(tmp_path) -> None:
    torch.manual_seed(0)
    model = Net().eval()
    data = torch.utils.data.TensorDataset(torch.randn(64, 1, 12, 12), torch.zeros(64))
    loader = torch.utils.data.DataLoader(data, batch_size=16)
    cache = tmp_path / "calibration.cache"
    speedup = ModelSpeedupTensorRT(
        model,
        SHAPE,
        extra_layer_bits=8,
        strict_datatype=False,
        calib_data_loader=loader,
        calibration_cache=cache,
        batchsize=4,
        onnx_path=tmp_path / "m.onnx",
    )
    speedup.compress()
    written = CalibrationCache.read(cache)
    trt = import_tensorrt("test")
    assert written.version == cache_version(trt.__version__) and written.algorithm == "EntropyCalibration2"
    assert "actual_input_1" in written.scales
    x = torch.randn(8, 1, 12, 12)
    with torch.no_grad():
        expected = model(x)
    output, _ = speedup.inference(x)
    assert (output - expected).abs().max() <= 0.1 * expected.abs().max() + 0.05
    before = cache.read_bytes()
    again = ModelSpeedupTensorRT(
        model,
        SHAPE,
        extra_layer_bits=8,
        strict_datatype=False,
        calib_data_loader=loader,
        calibration_cache=cache,
        batchsize=4,
        onnx_path=tmp_path / "m2.onnx",
    )
    again.compress()  # reads the cache instead of calibrating
    assert cache.read_bytes() == before
    torch.testing.assert_close(again.inference(x)[0], output)


@needs_tensorrt
def test_a_qat_calibration_handed_to_tensorrt_as_a_cache(tmp_path) -> None:
    model, calibration, x = _qat_model(tmp_path)
    plan = ModelSpeedupTensorRT(
        model, SHAPE, config=calibration, batchsize=4, onnx_path=tmp_path / "m.onnx"
    ).export_onnx()
    cache = CalibrationCache.from_ranges(plan.ranges).write(tmp_path / "qat.cache")
    speedup = ModelSpeedupTensorRT(
        model,
        SHAPE,
        extra_layer_bits=8,
        strict_datatype=False,
        calib_data_loader=torch.randn(8, 1, 12, 12),
        calibration_cache=cache,
        batchsize=4,
        onnx_path=tmp_path / "c.onnx",
    )
    speedup.compress()
    with torch.no_grad():
        expected = model(x)
    output, _ = speedup.inference(x)
    assert (output.argmax(1) == expected.argmax(1)).float().mean() >= 0.8


@needs_tensorrt
def test_fp16_engine_matches_the_float_model(tmp_path) -> None:
    torch.manual_seed(0)
    model = Net().eval()
    speedup = ModelSpeedupTensorRT(
        model, SHAPE, extra_layer_bits=16, batchsize=4, onnx_path=tmp_path / "m.onnx"
    )
    speedup.compress()
    x = torch.randn(4, 1, 12, 12)
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(speedup.inference(x)[0], expected, rtol=1e-2, atol=1e-2)
