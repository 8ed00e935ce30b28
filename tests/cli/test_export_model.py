"""`nni-pl export-model`: a Lightning checkpoint's model as ONNX (float or int8 QDQ) or a TensorRT engine."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from nni_pl.cli import export_model
from nni_pl.cli.main import main

ONNX = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxscript", "onnxruntime")),
    reason="needs the 'onnx' extra (onnx, onnxscript, onnxruntime): pip install -e .[onnx]",
)

MODULE = textwrap.dedent(
    """
    import torch
    from torch import nn
    import lightning.pytorch as pl


    class Net(pl.LightningModule):
        def __init__(self, hidden: int = 8):
            super().__init__()
            self.save_hyperparameters()
            self.conv = nn.Conv2d(1, hidden, 3, padding=1)
            self.relu = nn.ReLU()
            self.fc = nn.Linear(hidden * 64, 10)
            self.example_input_array = torch.zeros(1, 1, 8, 8)

        def forward(self, x):
            return self.fc(self.relu(self.conv(x)).flatten(1))

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-2)


    class NoExample(Net):
        def __init__(self, hidden: int = 8):
            super().__init__(hidden)
            self.example_input_array = None
    """
)
QUANT_CONFIG = [
    {"quant_types": ["weight", "input"], "quant_bits": 8, "op_types": ["Conv2d", "Linear"]},
    {"quant_types": ["output"], "quant_bits": 8, "op_types": ["ReLU"]},
]


@pytest.fixture
def code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with ``netmod.py`` (the LightningModules); the modules it imported are forgotten afterwards."""
    (tmp_path / "netmod.py").write_text(MODULE)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "netmod", raising=False)
    yield tmp_path
    sys.modules.pop("netmod", None)


def _net(code: Path, hidden: int = 4) -> Any:
    sys.path.insert(0, str(code))
    import netmod

    return netmod.Net(hidden=hidden)


def _save(module: Any, path: Path, **extra: Any) -> Path:
    """A checkpoint as Lightning writes one (what ``load_from_checkpoint`` reads from it)."""
    import lightning
    import torch

    ckpt = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "pytorch-lightning_version": lightning.__version__,
        **extra,
    }
    torch.save(ckpt, path)
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["export-model", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_parsing_the_command_imports_no_torch() -> None:
    code = (
        "import sys; from nni_pl.cli.main import build_parser; "
        "build_parser().parse_args(['export-model', 'm.ckpt', '-m', 'a:B', '--to', 'onnx-int8']); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_export_results_command_is_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    from nni_pl.cli.main import build_parser

    args = build_parser().parse_args(["export", "abc", "--format", "json"])
    assert (args.id, args.format, args.func.__name__) == ("abc", "json", "cmd_export")


@ONNX
@pytest.mark.extended  # torch.export's first ONNX export in a process takes 10-30 s here; the int8 test is quick
def test_float_checkpoint_exports_with_the_modules_example_input(
    code: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import onnx

    ckpt = _save(_net(code), tmp_path / "net.ckpt")
    rc, out, err = _run(capsys, str(ckpt), "-m", "netmod:Net", "--code-dir", str(code), "--verify")
    assert rc == 0, err
    path = tmp_path / "net.onnx"  # the default name: the checkpoint's, with .onnx
    assert f"wrote float ONNX model {path}" in out
    assert "ONNX Runtime vs PyTorch: 1 samples" in out and "within rtol" in out and "NOT" not in out
    model = onnx.load(str(path))
    assert "QuantizeLinear" not in {n.op_type for n in model.graph.node}
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # the batch is dynamic


@ONNX
def test_quantized_checkpoint_is_requantized_and_exported_as_int8(
    code: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx
    import torch

    from nni_pl.compression.quantization import QAT_Quantizer

    calls = []

    def restore(module: Any, checkpoint: dict[str, Any]) -> None:  # what QuantizationCallback.restore does
        calls.append(sorted(checkpoint))
        QAT_Quantizer(module, checkpoint[export_model.QUANT_STATE_KEY]["config_list"])

    torch.manual_seed(0)
    net = _net(code)
    QAT_Quantizer(net, QUANT_CONFIG)
    net.train()
    net(torch.rand(32, 1, 8, 8))  # the activation ranges are tracked
    ckpt = _save(net, tmp_path / "qat.ckpt", nni_pl_quantization={"config_list": QUANT_CONFIG})
    monkeypatch.setattr(export_model, "_quantization_restore", lambda: restore)
    argv = [str(ckpt), "-m", "netmod:Net", "--code-dir", str(code), "--to", "onnx-int8"]
    rc, out, err = _run(capsys, *argv, "--verify")  # the module's example_input_array, the default file name
    assert rc == 0, err
    assert calls and "nni_pl_quantization" in calls[0]
    default = tmp_path / "qat.int8.onnx"
    assert f"wrote int8 QDQ ONNX model {default}" in out
    assert "ONNX Runtime vs PyTorch: 1 samples" in out and "top-1 agreement 100.00%" in out
    graph = onnx.load(str(default)).graph
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm"} <= {n.op_type for n in graph.node}
    assert {t.data_type for t in graph.initializer} >= {onnx.TensorProto.UINT8, onnx.TensorProto.INT32}
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # the batch is dynamic

    out_path = tmp_path / "out" / "qat.onnx"
    rc, out, err = _run(capsys, *argv, "-o", str(out_path), "--input-shape", "4,1,8,8", "--static-batch")
    assert rc == 0, err
    assert f"wrote int8 QDQ ONNX model {out_path}" in out
    assert onnx.load(str(out_path)).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4

    monkeypatch.setattr(
        export_model, "_quantization_restore", lambda: None
    )  # no QuantizationCallback.restore
    rc, _, err = _run(capsys, *argv)
    assert rc == 2
    assert "holds a quantised model (key 'nni_pl_quantization')" in err
    assert "no QuantizationCallback.restore" in err


@ONNX
def test_checkpoint_of_a_quantization_callback_fit_exports_as_int8(
    code: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real QuantizationCallback: its checkpoint goes through QuantizationCallback.restore."""
    import lightning.pytorch as pl
    import onnx
    import torch
    from sklearn.datasets import load_digits
    from torch.utils.data import DataLoader, TensorDataset

    from nni_pl.callbacks import QuantizationCallback
    from nni_pl.compression.export import ort_session

    digits = load_digits()
    x = torch.tensor(digits.images[:256], dtype=torch.float32).unsqueeze(1) / 16
    data = DataLoader(TensorDataset(x, torch.tensor(digits.target[:256])), batch_size=64)
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=[QuantizationCallback(quantizer="qat", config_list=QUANT_CONFIG, start_epoch=0)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(_net(code), data)
    trainer.save_checkpoint(tmp_path / "fit.ckpt")

    rc, out, err = _run(
        capsys, str(tmp_path / "fit.ckpt"), "-m", "netmod:Net", "--code-dir", str(code), "--verify"
    )
    assert rc == 0, err
    assert "wrote int8 QDQ ONNX model" in out and "top-1 agreement 100.00%" in out, out
    optimized = tmp_path / "optimized.onnx"
    ort_session(tmp_path / "fit.onnx", optimized_model_path=optimized)
    ops = {n.op_type for n in onnx.load(str(optimized)).graph.node}
    assert {"QLinearConv", "QGemm"} <= ops, ops


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--input-shape", "1x8"], "'--input-shape': must be comma-separated positive integers, batch first, got '1x8'"),
        (["-m", "torch.nn:Linear"], "'--module': must name a LightningModule subclass, got 'torch.nn:Linear'"),
        (["-m", "netmod:Nope"], "'--module': module 'netmod' has no class 'Nope'"),
        (["-m", "netmod:NoExample"], "'--input-shape': not given, and NoExample has no example_input_array"),
        (["--to", "onnx-int8"], "'--to': onnx-int8 needs a quantised model, but"),
    ],
)  # fmt: skip
def test_argument_errors_are_one_line_naming_the_field(
    code: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    ckpt = _save(_net(code), tmp_path / "net.ckpt")
    args = [str(ckpt), "-m", "netmod:Net", "--code-dir", str(code), *extra]
    rc, out, err = _run(capsys, *args)
    assert rc == 2 and out == ""
    assert err.startswith("error: config field ") and err.count("\n") == 1, err
    assert message in err
    assert not (tmp_path / "net.onnx").exists()


def test_missing_checkpoint_and_missing_tensorrt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rc, _, err = _run(capsys, str(tmp_path / "none.ckpt"), "-m", "lightning.pytorch:LightningModule")
    assert rc == 2 and "config field 'checkpoint': no such file:" in err and "none.ckpt" in err
    not_a_ckpt = tmp_path / "junk.ckpt"
    not_a_ckpt.write_text("not a checkpoint")
    rc, _, err = _run(capsys, str(not_a_ckpt), "-m", "lightning.pytorch:LightningModule")
    assert rc == 2 and "config field 'checkpoint': cannot read" in err

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n: None if n == "tensorrt" else real(n))
    rc, _, err = _run(capsys, str(tmp_path / "none.ckpt"), "-m", "x:Y", "--to", "tensorrt")
    assert rc == 2
    assert "needs the package 'tensorrt'" in err and "pip install 'nni-pl[tensorrt]'" in err
