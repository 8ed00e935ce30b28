"""``nni-pl export-model``: a Lightning checkpoint's model as an ONNX file (float or int8) or a TensorRT engine.

``nni-pl export`` exports an experiment's trial results; this command exports a trained model::

    nni-pl export-model model.ckpt --module mypkg.models:Net --input-shape 1,1,8,8 -o net.onnx
    nni-pl export-model qat.ckpt --module mypkg.models:Net --to onnx-int8 --verify
    nni-pl export-model qat.ckpt --module mypkg.models:Net --to tensorrt -o net.engine

The module class is loaded with ``LightningModule.load_from_checkpoint``. A checkpoint written with quantisation
state (the ``nni_pl_quantization`` key a ``QuantizationCallback`` saves) has its model re-quantised through
``QuantizationCallback.restore(module, checkpoint)`` before its weights are loaded, so ``onnx``/``onnx-int8``
write a QDQ model ONNX Runtime runs in int8, and ``tensorrt`` gets the quantiser's calibration ranges. Without
``--input-shape`` the module's ``example_input_array`` is the sample input. torch is imported only when the
command runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import io
import warnings
from pathlib import Path
from typing import Any

from nni_pl.errors import ConfigError, MissingDependencyError

__all__ = ["QUANT_STATE_KEY", "add_parser", "cmd_export_model", "parse_shape"]

#: where a QuantizationCallback keeps its state in a Lightning checkpoint
QUANT_STATE_KEY = "nni_pl_quantization"
TARGETS = ("onnx", "onnx-int8", "tensorrt")
_SUFFIX = {"onnx": ".onnx", "onnx-int8": ".int8.onnx", "tensorrt": ".engine"}


def add_parser(sub: Any) -> None:
    """Add ``export-model`` to the ``nni-pl`` subcommands."""
    s = sub.add_parser(
        "export-model",
        help="export a Lightning checkpoint's model to ONNX (float or int8 QDQ) or a TensorRT engine",
        description="Export a Lightning checkpoint's model as an ONNX file (float, or int8 QDQ for a quantised "
        "model) or a TensorRT engine.",
    )
    s.add_argument("checkpoint", help="the Lightning checkpoint (.ckpt)")
    s.add_argument(
        "--module", "-m", required=True, help="the LightningModule class, 'package.module:ClassName'"
    )
    s.add_argument(
        "--to",
        choices=TARGETS,
        default="onnx",
        help="onnx: the model as it is (int8 QDQ when the checkpoint is quantised); onnx-int8: the same, but "
        "the checkpoint must be quantised; tensorrt: a TensorRT engine (the tensorrt extra, a CUDA GPU)",
    )
    s.add_argument(
        "--input-shape",
        help="the sample input's shape, batch first, e.g. 1,3,32,32 (default: the module's example_input_array)",
    )
    s.add_argument(
        "--output", "-o", help="file to write (default: the checkpoint's name with .onnx/.int8.onnx/.engine)"
    )
    s.add_argument(
        "--opset", type=int, help="ONNX opset (default: 17 for int8, the exporter's own for float)"
    )
    s.add_argument(
        "--static-batch", action="store_true", help="fix the batch size to the sample's (default: dynamic)"
    )
    s.add_argument(
        "--qdq-dtype",
        choices=("auto", "uint8", "u8s8", "int8", "keep"),
        default="auto",
        help="8-bit type of an int8 model's tensors: auto (u8s8 when the weights fit 7 bits, else uint8; "
        "default), uint8 (exact on every CPU), u8s8 (uint8 activations, int8 weights: faster on x86, exact "
        "with VNNI/AMX), int8, keep",
    )
    s.add_argument(
        "--verify", action="store_true", help="run the ONNX file in ONNX Runtime and compare with PyTorch"
    )
    s.add_argument(
        "--code-dir",
        default=".",
        help="folder put first on sys.path to import --module from (default: the current folder)",
    )
    s.set_defaults(func=cmd_export_model)


def parse_shape(value: str, field: str = "--input-shape") -> tuple[int, ...]:
    """``"1,3,32,32"`` -> ``(1, 3, 32, 32)``; a one-line :class:`~nni_pl.errors.ConfigError` otherwise.

    Example:
        >>> parse_shape("1, 3,32,32")
        (1, 3, 32, 32)
        >>> parse_shape("1x3")
        Traceback (most recent call last):
        ...
        nni_pl.errors.ConfigError: config field '--input-shape': must be comma-separated positive integers, batch first, got '1x3'; e.g. --input-shape 1,3,32,32
    """
    parts = [p.strip() for p in value.split(",")]
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(
            field,
            f"must be comma-separated positive integers, batch first, got {value!r}; e.g. {field} 1,3,32,32",
        )
    return tuple(int(p) for p in parts)


def cmd_export_model(args: argparse.Namespace) -> int:
    from nni_pl.cli._common import console

    target = args.to
    if target == "tensorrt" and importlib.util.find_spec("tensorrt") is None:
        raise MissingDependencyError("tensorrt", "tensorrt", "nni-pl export-model --to tensorrt")
    if target != "tensorrt":
        from nni_pl.compression.export import require_onnx

        require_onnx("nni-pl export-model", runtime=args.verify)
    shape = parse_shape(args.input_shape) if args.input_shape else None
    checkpoint = Path(args.checkpoint).expanduser()
    output = Path(args.output) if args.output else _default_output(checkpoint, target)

    module, quantized = load_checkpoint(checkpoint, args.module, code_dir=args.code_dir)
    if target == "onnx-int8" and not quantized:
        raise ConfigError(
            "--to",
            f"onnx-int8 needs a quantised model, but {str(checkpoint)!r} carries no quantisation state (key "
            f"{QUANT_STATE_KEY!r}); train with QuantizationCallback, or export it float with --to onnx",
        )
    sample = _sample_input(module, shape)
    out = console()
    if target == "tensorrt":
        _build_tensorrt(module, sample, output)
        out.print(f"wrote TensorRT engine {output} ({_size(output)})")
        return 0

    from nni_pl.compression.export import export_onnx, verify_onnx

    export_onnx(
        module,
        sample,
        output,
        quantized=quantized or None,
        dynamic_batch=not args.static_batch,
        opset_version=args.opset,
        qdq_dtype=None if args.qdq_dtype == "keep" else args.qdq_dtype,
    )
    kind = "int8 QDQ" if quantized else "float"
    out.print(f"wrote {kind} ONNX model {output} ({_size(output)})")
    if args.verify:
        report = verify_onnx(output, module, sample, rtol=1e-3, atol=1e-4)
        out.print(f"ONNX Runtime vs PyTorch: {report}")
    return 0


def load_checkpoint(checkpoint: Path, module_path: str, *, code_dir: str | None = ".") -> tuple[Any, bool]:
    """The LightningModule of ``checkpoint`` (on the CPU, in eval mode) and whether it was re-quantised."""
    import lightning.pytorch as pl
    import torch

    from nni_pl._imports import import_object

    cls = import_object(module_path, "--module", code_directory=code_dir, what="class")
    if not (isinstance(cls, type) and issubclass(cls, pl.LightningModule)):
        raise ConfigError(
            "--module",
            f"must name a LightningModule subclass, got {module_path!r} ({type(cls).__name__}); "
            "give 'package.module:ClassName'",
        )
    if not checkpoint.is_file():
        raise ConfigError("checkpoint", f"no such file: {str(checkpoint)!r}; give the path of a .ckpt file")
    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ConfigError(
            "checkpoint", f"cannot read {str(checkpoint)!r} ({type(e).__name__}: {e}); give a Lightning .ckpt"
        ) from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ConfigError(
            "checkpoint", f"{str(checkpoint)!r} is not a Lightning checkpoint (no 'state_dict'); give a .ckpt"
        )
    quantized = QUANT_STATE_KEY in ckpt
    restore = _quantization_restore() if quantized else None
    if quantized and restore is None:
        raise ConfigError(
            "checkpoint",
            f"{str(checkpoint)!r} holds a quantised model (key {QUANT_STATE_KEY!r}), but this nni-pl has no "
            "QuantizationCallback.restore to re-quantise it; install an nni-pl with nni_pl.callbacks.quantization",
        )
    # the user's own file, read in full (hyperparameters are Python objects); Lightning >= 2.5 asks
    load_parameters = inspect.signature(cls.load_from_checkpoint).parameters
    trusted = {"weights_only": False} if "weights_only" in load_parameters else {}
    try:
        if quantized:
            # the module is built float from the hyperparameters (no weights: a quantised checkpoint's keys are
            # the wrappers', conv.module.old_weight, and a pruned one's shapes are smaller); restore() re-quantises
            # it, then the weights load
            buffer = io.BytesIO()
            torch.save({**ckpt, "state_dict": {}}, buffer)
            buffer.seek(0)
            with warnings.catch_warnings():  # Lightning's notes on the empty state dict: empty on purpose
                warnings.filterwarnings("ignore", message=".*(contains no parameters|not in the checkpoint)")
                module = cls.load_from_checkpoint(buffer, map_location="cpu", strict=False, **trusted)
        else:
            module = cls.load_from_checkpoint(checkpoint, map_location="cpu", **trusted)
        if restore is not None:
            restored = restore(module, ckpt)
            module = restored if isinstance(restored, torch.nn.Module) else module
            module.load_state_dict(ckpt["state_dict"])
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(
            "checkpoint",
            f"cannot load {str(checkpoint)!r} into {module_path!r} ({type(e).__name__}: "
            f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}); check --module names the class "
            "that wrote the checkpoint",
        ) from e
    return module.cpu().eval(), quantized


def _quantization_restore() -> Any:
    """``QuantizationCallback.restore`` when the callbacks package has it (another part of nni-pl), else None."""
    try:
        from nni_pl.callbacks.quantization import QuantizationCallback
    except ImportError:
        return None
    return getattr(QuantizationCallback, "restore", None)


def _sample_input(module: Any, shape: tuple[int, ...] | None) -> Any:
    import torch

    if shape is not None:
        return torch.rand(*shape)
    sample = getattr(module, "example_input_array", None)
    if sample is None:
        raise ConfigError(
            "--input-shape",
            f"not given, and {type(module).__name__} has no example_input_array; pass --input-shape (batch "
            "first, e.g. 1,3,32,32) or set self.example_input_array in the module",
        )
    if isinstance(sample, (list, tuple)):
        return tuple(s.cpu() if isinstance(s, torch.Tensor) else s for s in sample)
    return sample.cpu() if isinstance(sample, torch.Tensor) else sample


def _build_tensorrt(module: Any, sample: Any, output: Path) -> None:
    import torch

    from nni_pl.compression.export import ModelSpeedupTensorRT

    if not isinstance(sample, torch.Tensor):
        raise ConfigError(
            "--input-shape",
            "TensorRT engines here take one input tensor, but the sample input is a tuple; pass --input-shape",
        )
    from nni_pl.compression.quantization import find_wrappers

    config = None
    wrappers = find_wrappers(module)
    if wrappers:  # the quantiser's tracked ranges become TensorRT's int8 dynamic ranges
        config = wrappers[0].quantizer.calibration_config()
    shape = tuple(sample.shape)
    engine = ModelSpeedupTensorRT(
        module,
        shape,
        config=config,
        onnx_path=output.with_suffix(".onnx"),
        batchsize=shape[0],
        calibration_cache=None,
    )
    engine.compress()
    engine.export_quantized_model(output)


def _default_output(checkpoint: Path, target: str) -> Path:
    return checkpoint.with_name(checkpoint.name.removesuffix(checkpoint.suffix) + _SUFFIX[target])


def _size(path: Path) -> str:
    size = path.stat().st_size
    return f"{size / 1024:.1f} KiB" if size < 1024 * 1024 else f"{size / 1024 / 1024:.1f} MiB"
