"""TensorRT's int8 calibration: the cache file format, the batches of calibration data, and the calibrator.

A calibration cache is text: a header ``TRT-<version>-<algorithm>`` (``TRT-8601-EntropyCalibration2`` for
TensorRT 8.6.1), then one ``<tensor name>: <hex>`` line per tensor, where ``<hex>`` is the IEEE-754 float32 bit
pattern of the tensor's scale written as a hexadecimal number (big-endian digits, no leading zeros: ``0`` for
a zero scale), and ``scale = amax / 127`` with ``amax = max(|min|, |max|)`` of the tensor's range. TensorRT reads
such a file through a calibrator's ``read_calibration_cache`` instead of calibrating, so the ranges a
quantization-aware training tracked can be handed to it as a cache (:meth:`CalibrationCache.from_ranges`), e.g.
for ``trtexec --int8 --calib=<file>``. TensorRT skips a cache whose version or algorithm differ from its own.

Example:
    >>> cache = CalibrationCache.from_ranges({"input": (-1.0, 1.984375), "/relu/Relu_output_0": (0.0, 0.0)}, version=8601)
    >>> print(cache.to_text(), end="")
    TRT-8601-EntropyCalibration2
    input: 3c800000
    /relu/Relu_output_0: 0
    >>> CalibrationCache.from_text(cache.to_text()).ranges()["input"]
    (-1.984375, 1.984375)
"""

from __future__ import annotations

import logging
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nni_pl.compression.export._trt_runtime import cache_version, cuda_device, import_tensorrt
from nni_pl.errors import ConfigError

__all__ = ["ALGORITHMS", "CalibrationCache", "Calibrator", "batch_calibration_data", "resolve_algorithm"]

log = logging.getLogger(__name__)

ALGORITHMS: dict[str, str] = {
    "ENTROPY_CALIBRATION_2": "EntropyCalibration2",
    "ENTROPY_CALIBRATION": "EntropyCalibration",
    "MINMAX_CALIBRATION": "MinMaxCalibration",
    "LEGACY_CALIBRATION": "LegacyCalibration",
}
"""``trt.CalibrationAlgoType`` member names and the name each writes in a cache header."""

_ALIASES = {
    "entropy2": "ENTROPY_CALIBRATION_2",
    "entropy_2": "ENTROPY_CALIBRATION_2",
    "entropy": "ENTROPY_CALIBRATION",
    "minmax": "MINMAX_CALIBRATION",
    "legacy": "LEGACY_CALIBRATION",
}
_DEFAULT_VERSION = (
    8601  # TensorRT 8.6.1, the version assumed when none is given and tensorrt is not installed
)
_HEADER = re.compile(r"^TRT-(\d+)-(\w+)$")


def resolve_algorithm(algorithm: Any, field_name: str = "calibrate_type") -> str:
    """The ``trt.CalibrationAlgoType`` member name of ``algorithm`` (``None``: ``ENTROPY_CALIBRATION_2``).

    Accepts a ``trt.CalibrationAlgoType`` member, its name, or ``"entropy2"``, ``"entropy"``, ``"minmax"``,
    ``"legacy"``.

    Example:
        >>> resolve_algorithm(None), resolve_algorithm("minmax")
        ('ENTROPY_CALIBRATION_2', 'MINMAX_CALIBRATION')
    """
    if algorithm is None:
        return "ENTROPY_CALIBRATION_2"
    name = algorithm if isinstance(algorithm, str) else getattr(algorithm, "name", None)
    if isinstance(name, str):
        key = _ALIASES.get(name.lower(), name.upper())
        if key in ALGORITHMS:
            return key
    raise ConfigError(
        field_name,
        f"must be a tensorrt.CalibrationAlgoType or one of {sorted(ALGORITHMS)} / {sorted(_ALIASES)}, got "
        f"{algorithm!r}; the default ENTROPY_CALIBRATION_2 suits most models",
    )


def _scale_to_hex(scale: float) -> str:
    return format(struct.unpack(">I", struct.pack(">f", scale))[0], "x")


def _hex_to_scale(text: str) -> float:
    return struct.unpack(">f", int(text, 16).to_bytes(4, "big"))[0]


@dataclass(frozen=True)
class CalibrationCache:
    """A TensorRT int8 calibration cache: per tensor name, its scale (``amax / 127``).

    Attributes:
        scales: ``{tensor_name: scale}`` in file order.
        version: the TensorRT version number of the header (8601 = 8.6.1, 100300 = 10.3.0).
        algorithm: the header's algorithm (``EntropyCalibration2``, ``EntropyCalibration``, ``MinMaxCalibration``).
    """

    scales: Mapping[str, float] = field(default_factory=dict)
    version: int = _DEFAULT_VERSION
    algorithm: str = "EntropyCalibration2"

    @classmethod
    def from_ranges(
        cls,
        ranges: Mapping[str, tuple[float, float]],
        *,
        version: int | str | None = None,
        algorithm: Any = None,
    ) -> CalibrationCache:
        """The cache of a table of ``{tensor_name: (min, max)}`` (e.g. :attr:`TensorRTPlan.ranges`).

        Args:
            ranges: dynamic ranges by TensorRT (= ONNX) tensor name.
            version: the header's version: a number (8601), a version string (``"8.6.1"``), or ``None`` for the
                installed TensorRT's (8601 when it is not installed).
            algorithm: the calibrator the cache is for (see :func:`resolve_algorithm`).
        """
        scales = {name: max(abs(float(lo)), abs(float(hi))) / 127.0 for name, (lo, hi) in ranges.items()}
        return cls(
            scales=scales,
            version=_version_number(version),
            algorithm=ALGORITHMS[resolve_algorithm(algorithm)],
        )

    @classmethod
    def from_text(cls, text: str | bytes) -> CalibrationCache:
        """Parse a cache TensorRT (or :meth:`to_text`) wrote.

        Raises:
            ConfigError: the text is not a TensorRT calibration cache (the message quotes the bad line).
        """
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        match = _HEADER.match(lines[0]) if lines else None
        if match is None:
            first = lines[0] if lines else ""
            raise ConfigError(
                "calibration_cache",
                f"the first line must read 'TRT-<version>-<algorithm>' (e.g. 'TRT-8601-EntropyCalibration2'), got "
                f"{first!r}; give a cache TensorRT wrote",
            )
        scales: dict[str, float] = {}
        for number, line in enumerate(lines[1:], start=2):
            name, sep, value = line.rpartition(": ")
            if not sep or not name or not re.fullmatch(r"[0-9a-fA-F]{1,8}", value):
                raise ConfigError(
                    "calibration_cache",
                    f"line {number} must read '<tensor name>: <hex float32 scale>', got {line!r}",
                )
            scales[name] = _hex_to_scale(value)
        return cls(scales=scales, version=int(match.group(1)), algorithm=match.group(2))

    @classmethod
    def read(cls, path: str | Path) -> CalibrationCache:
        """Parse the cache file at ``path``."""
        return cls.from_text(Path(path).read_bytes())

    def to_text(self) -> str:
        """The file TensorRT reads (and writes): the header, then ``name: hex`` per tensor."""
        lines = [f"TRT-{self.version}-{self.algorithm}"]
        lines += [f"{name}: {_scale_to_hex(scale)}" for name, scale in self.scales.items()]
        return "\n".join(lines) + "\n"

    def write(self, path: str | Path) -> Path:
        """Write :meth:`to_text` to ``path`` (its folder is created); return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_text(), encoding="utf-8")
        return path

    def ranges(self) -> dict[str, tuple[float, float]]:
        """``{tensor_name: (-amax, amax)}``: the symmetric ranges TensorRT derives from the scales."""
        return {name: (-scale * 127.0, scale * 127.0) for name, scale in self.scales.items()}


def _version_number(version: int | str | None) -> int:
    if version is None:
        try:
            return cache_version(import_tensorrt("CalibrationCache").__version__)
        except Exception:  # not installed (or unusable) here: the cache is for another machine
            return _DEFAULT_VERSION
    if isinstance(version, int):
        return version
    return cache_version(version)


# -- calibration data ---------------------------------------------------------------------------------------
def _as_array(x: Any, field_name: str) -> Any:
    import numpy as np

    if hasattr(x, "detach"):  # a torch tensor (on any device)
        x = x.detach().cpu().numpy()
    if isinstance(x, (str, bytes)) or not hasattr(x, "__array__"):
        raise ConfigError(
            field_name,
            f"must hold tensors or numpy arrays (or (input, target) pairs of them), got an item of type "
            f"{type(x).__name__}; pass a DataLoader, a tensor or an array of inputs",
        )
    x = np.asarray(x)
    if x.ndim == 0:
        raise ConfigError(
            field_name, "holds a scalar where a batch of inputs was expected; give (N, ...) arrays"
        )
    return x


def batch_calibration_data(
    data: Any,
    batch_size: int,
    sample_shape: Sequence[int] | None = None,
    *,
    field_name: str = "calib_data_loader",
) -> list[Any]:
    """Split calibration data into contiguous float32 numpy batches of exactly ``batch_size`` samples.

    Args:
        data: a tensor or numpy array of inputs ``(N, ...)``, or an iterable (a ``DataLoader``, a list) of such
            batches or of ``(input, target)`` pairs, whose first item is used.
        batch_size: samples per batch (the engine's batch size); a last, smaller batch is dropped.
        sample_shape: the shape of one sample (``input_shape[1:]``); checked when given.
        field_name: the argument name used in error messages.

    Raises:
        ConfigError: an item is not an array, a sample has another shape, or there are fewer than
            ``batch_size`` samples.

    Example:
        >>> import numpy as np
        >>> batches = batch_calibration_data([(np.ones((3, 2)), 0), (np.zeros((2, 2)), 1)], 2)
        >>> [b.shape for b in batches], batches[0].dtype, batches[0].flags.c_contiguous
        ([(2, 2), (2, 2)], dtype('float32'), True)
    """
    import numpy as np

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError("batchsize", f"must be a positive integer, got {batch_size!r}")
    if data is None or isinstance(data, (str, bytes, Mapping)):
        raise ConfigError(
            field_name, f"must be a DataLoader, a tensor or an array of inputs, got {type(data).__name__}"
        )
    if hasattr(data, "__array__") or hasattr(data, "detach"):
        parts = [_as_array(data, field_name)]
    elif isinstance(data, Iterable):
        parts = []
        for item in data:
            if isinstance(item, (tuple, list)):
                if not item:
                    raise ConfigError(field_name, "yielded an empty batch")
                item = item[0]
            parts.append(_as_array(item, field_name))
    else:
        raise ConfigError(
            field_name, f"must be a DataLoader, a tensor or an array of inputs, got {type(data).__name__}"
        )
    expected = tuple(sample_shape) if sample_shape is not None else (parts[0].shape[1:] if parts else ())
    for part in parts:
        if tuple(part.shape[1:]) != tuple(expected):
            raise ConfigError(
                field_name,
                f"holds samples of shape {tuple(part.shape[1:])}, but the model's input is {tuple(expected)} per "
                "sample (input_shape[1:]); give inputs of that shape",
            )
    total = sum(p.shape[0] for p in parts)
    if total < batch_size:
        raise ConfigError(
            field_name,
            f"holds {total} samples, fewer than one batch of batchsize={batch_size}; give at least {batch_size} "
            "samples (a few hundred calibrate well) or lower batchsize",
        )
    joined = np.concatenate(parts, axis=0).astype(np.float32, copy=False)
    count = total // batch_size
    if total % batch_size:
        log.info(
            "calibration: the last %d of %d samples do not fill a batch and are left out",
            total % batch_size,
            total,
        )
    return [np.ascontiguousarray(joined[i * batch_size : (i + 1) * batch_size]) for i in range(count)]


# -- the calibrator -----------------------------------------------------------------------------------------
class Calibrator:
    """NNI's TensorRT int8 calibrator: feeds calibration batches to TensorRT and keeps its cache in a file.

    TensorRT's calibrator classes exist only once ``tensorrt`` is imported, so this class holds the data and
    the cache, and :meth:`to_tensorrt` makes the ``trt.IInt8EntropyCalibrator2`` (or the class of
    ``algorithm``) that TensorRT calls, which delegates to it.

    Args:
        training_data: calibration inputs (see :func:`batch_calibration_data`).
        cache_file: where the calibration cache is read from (if it exists) and written to; ``None``: no cache.
        batch_size: samples per calibration batch.
        algorithm: a ``trt.CalibrationAlgoType`` or its name (``None``: ``ENTROPY_CALIBRATION_2``).

    Example:
        >>> import numpy as np
        >>> calib = Calibrator(np.zeros((10, 3), dtype=np.float32), "calib.cache", batch_size=4)
        >>> calib.get_batch_size(), len(calib.batches), calib.read_calibration_cache() is None
        (4, 2, True)
        >>> calib.write_calibration_cache(b"TRT-8601-EntropyCalibration2\\n")
        >>> calib.read_calibration_cache()
        b'TRT-8601-EntropyCalibration2\\n'
    """

    def __init__(
        self, training_data: Any, cache_file: str | Path | None, batch_size: int = 64, algorithm: Any = None
    ) -> None:
        self.batches = batch_calibration_data(training_data, batch_size, field_name="training_data")
        self.cache_file = Path(cache_file) if cache_file is not None else None
        self.batch_size = batch_size
        self.algorithm = resolve_algorithm(algorithm, "algorithm")
        self.current_index = 0
        self._device: Any = None
        self._buffer: Any = None

    @classmethod
    def _from_batches(
        cls, batches: list[Any], cache_file: str | Path | None, algorithm: Any = None
    ) -> Calibrator:
        """A calibrator over batches :func:`batch_calibration_data` already made (no second copy of the data)."""
        calib = cls.__new__(cls)
        calib.batches = list(batches)
        calib.cache_file = Path(cache_file) if cache_file is not None else None
        calib.batch_size = int(batches[0].shape[0])
        calib.algorithm = resolve_algorithm(algorithm, "algorithm")
        calib.current_index = 0
        calib._device = None
        calib._buffer = None
        return calib

    def get_algorithm(self) -> Any:
        """The ``trt.CalibrationAlgoType`` member (imports tensorrt)."""
        trt = import_tensorrt("Calibrator.get_algorithm()")
        return getattr(trt.CalibrationAlgoType, self.algorithm)

    def get_batch_size(self) -> int:
        """Samples per batch."""
        return self.batch_size

    def reset(self) -> None:
        """Start again from the first batch."""
        self.current_index = 0

    def get_batch(self, names: Sequence[str]) -> list[int] | None:
        """Copy the next batch to the GPU; the device pointer per input name, or ``None`` when all were given.

        Raises:
            TensorRTError: no CUDA GPU is visible.
        """
        if self.current_index >= len(self.batches):
            return None
        if len(names) != 1:
            raise ConfigError(
                "input_names", f"calibration feeds one network input, the network has {list(names)}"
            )
        batch = self.batches[self.current_index]
        if self._device is None:
            self._device = cuda_device("Calibrator.get_batch()")
            self._buffer = self._device.alloc(batch.nbytes)
        self._device.upload(self._buffer, batch)
        self._device.synchronize()
        if self.current_index % 10 == 0:
            log.info(
                "calibrating batch %d of %d (%d samples each)",
                self.current_index + 1,
                len(self.batches),
                self.batch_size,
            )
        self.current_index += 1
        return [self._buffer.ptr]

    def read_calibration_cache(self) -> bytes | None:
        """The cache file's bytes when it exists (TensorRT then skips calibrating), else ``None``."""
        if self.cache_file is not None and self.cache_file.is_file():
            return self.cache_file.read_bytes()
        return None

    def write_calibration_cache(self, cache: Any) -> None:
        """Write the cache TensorRT produced to :attr:`cache_file` (nothing when it is ``None``)."""
        if self.cache_file is None:
            return
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        self.cache_file.write_bytes(bytes(cache))
        log.info("calibration cache written to %s", self.cache_file)

    def to_tensorrt(self) -> Any:
        """The TensorRT calibrator object for ``builder_config.int8_calibrator`` (imports tensorrt)."""
        trt = import_tensorrt("Calibrator.to_tensorrt()")
        return _adapter_class(trt, self.algorithm)(self)


def _adapter_class(trt: Any, algorithm: str) -> type:
    base = {
        "ENTROPY_CALIBRATION_2": trt.IInt8EntropyCalibrator2,
        "ENTROPY_CALIBRATION": trt.IInt8EntropyCalibrator,
        "MINMAX_CALIBRATION": trt.IInt8MinMaxCalibrator,
        "LEGACY_CALIBRATION": trt.IInt8LegacyCalibrator,
    }[algorithm]

    class _TensorRTCalibrator(base):  # type: ignore[misc, valid-type]
        def __init__(self, owner: Calibrator) -> None:
            base.__init__(self)  # the pybind11 trampoline must be initialised explicitly
            self.owner = owner

        def get_batch_size(self) -> int:
            return self.owner.get_batch_size()

        def get_batch(self, names: list[str]) -> list[int] | None:
            return self.owner.get_batch(names)

        def read_calibration_cache(self) -> bytes | None:
            return self.owner.read_calibration_cache()

        def write_calibration_cache(self, cache: Any) -> None:
            self.owner.write_calibration_cache(cache)

        # IInt8LegacyCalibrator's extra methods (TensorRT's documented defaults)
        def get_quantile(self) -> float:
            return 0.9999

        def get_regression_cutoff(self) -> float:
            return 1.0

        def read_histogram_cache(self, *args: Any) -> None:
            return None

        def write_histogram_cache(self, *args: Any) -> None:
            return None

    return _TensorRTCalibrator
