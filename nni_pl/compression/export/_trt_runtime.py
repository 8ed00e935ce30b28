"""TensorRT and CUDA at the point of use: the import with its install hint, version facts, device buffers.

``tensorrt`` installs from NVIDIA's package index only (the ``tensorrt`` extra); device memory comes from
``pycuda`` when it is installed, else from torch's CUDA tensors (``data_ptr()``). Nothing here imports either
before it is needed, so the rest of the package works on machines without a GPU.

Example:
    >>> cache_version("8.6.1"), cache_version("10.14.1")
    (8601, 101401)
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import re
from collections.abc import Iterator
from typing import Any

from nni_pl.errors import MissingDependencyError, NniPlError

__all__ = [
    "INSTALL_HINT",
    "CudaDevice",
    "TensorRTError",
    "cache_version",
    "cuda_device",
    "import_tensorrt",
    "tensorrt_major",
]

INSTALL_HINT = "pip install 'nni-pl[tensorrt]' --extra-index-url https://pypi.nvidia.com"


class TensorRTError(NniPlError, RuntimeError):
    """TensorRT cannot build or run the engine here (no GPU, an unsupported version, a failed build)."""


def import_tensorrt(feature: str) -> Any:
    """The ``tensorrt`` module, or :class:`~nni_pl.errors.MissingDependencyError` naming the extra to install.

    Args:
        feature: what needs it, for the message (``"ModelSpeedupTensorRT.compress()"``).

    Raises:
        MissingDependencyError: tensorrt is not installed.
        TensorRTError: it is installed but does not load (its CUDA libraries), or its version is not 8, 9 or 10
            (TensorRT 11 removed the implicit int8 quantization this builds on).
    """
    try:
        trt = importlib.import_module("tensorrt")
    except ModuleNotFoundError as e:
        if e.name not in (None, "tensorrt"):
            raise TensorRTError(
                f"{feature}: tensorrt is installed but importing it failed ({e}); reinstall it with: {INSTALL_HINT}"
            ) from e
        err = MissingDependencyError("tensorrt", "tensorrt", feature)
        err.msg = (  # ImportError prints .msg
            f"{err.args[0]} --extra-index-url https://pypi.nvidia.com (TensorRT's wheels come from NVIDIA's "
            "package index; a CUDA GPU is needed to use it)"
        )
        err.args = (err.msg,)
        raise err from e
    except (ImportError, OSError) as e:  # e.g. libnvinfer.so or the CUDA runtime cannot be loaded
        raise TensorRTError(
            f"{feature}: tensorrt is installed but does not load ({type(e).__name__}: {e}); install the CUDA "
            f"libraries it was built for, or reinstall it with: {INSTALL_HINT}"
        ) from e
    major = tensorrt_major(trt)
    if major < 8 or major >= 11:
        raise TensorRTError(
            f"{feature}: needs TensorRT 8.x to 10.x, found {trt.__version__}"
            + (
                "; TensorRT 11 removed implicit int8 quantization (BuilderFlag.INT8, calibrators, dynamic ranges): "
                "export a QDQ model with nni_pl.compression.export.export_onnx(model, x, path, quantized=True) and "
                "build it with trtexec --onnx=path, or install tensorrt<11"
                if major >= 11
                else f"; upgrade with: {INSTALL_HINT}"
            )
        )
    return trt


def tensorrt_major(trt: Any) -> int:
    """The major version of an imported ``tensorrt`` module."""
    match = re.match(r"(\d+)", str(getattr(trt, "__version__", "0")))
    return int(match.group(1)) if match else 0


def cache_version(version: str) -> int:
    """The number TensorRT writes in a calibration cache's header for its version (``NV_TENSORRT_VERSION``).

    TensorRT 8 and earlier count ``major*1000 + minor*100 + patch`` (8.6.1 -> 8601), TensorRT 10 and later
    ``major*10000 + minor*100 + patch`` (10.3.0 -> 100300).

    Example:
        >>> cache_version("7.1.3.4"), cache_version("10.3.0")
        (7103, 100300)
    """
    parts = [int(p) for p in re.findall(r"\d+", str(version))[:3]]
    major, minor, patch = [*parts, 0, 0, 0][:3]
    return major * (10000 if major >= 10 else 1000) + minor * 100 + patch


class _Buffer:
    """Device memory: ``ptr`` is the address TensorRT is given."""

    def __init__(self, handle: Any, ptr: int, nbytes: int) -> None:
        self.handle = handle
        self.ptr = ptr
        self.nbytes = nbytes


class CudaDevice:
    """Device buffers, copies and a stream, through pycuda (preferred) or torch's CUDA tensors."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        if backend == "pycuda":
            import pycuda.driver as cuda

            cuda.init()
            if cuda.Device.count() == 0:
                raise TensorRTError("pycuda finds no CUDA GPU")
            self._cuda = cuda
            # the primary context is the one the CUDA runtime (TensorRT, torch) uses: memory stays shared with them
            self._context = cuda.Device(0).retain_primary_context()
            with self.active():
                self._stream = cuda.Stream()
            self.stream_handle = int(self._stream.handle)
        else:
            import torch

            if not torch.cuda.is_available():
                raise TensorRTError("torch.cuda.is_available() is False")
            self._torch = torch
            self._stream = torch.cuda.Stream()
            self.stream_handle = int(self._stream.cuda_stream)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """The CUDA context (pycuda) or stream (torch) current for the block."""
        if self.backend == "pycuda":
            self._context.push()
            try:
                yield
            finally:
                self._cuda.Context.pop()
        else:
            with self._torch.cuda.stream(self._stream):
                yield

    def alloc(self, nbytes: int) -> _Buffer:
        nbytes = max(int(nbytes), 1)
        with self.active():
            if self.backend == "pycuda":
                handle = self._cuda.mem_alloc(nbytes)
                return _Buffer(handle, int(handle), nbytes)
            handle = self._torch.empty(nbytes, dtype=self._torch.uint8, device="cuda")
            return _Buffer(handle, int(handle.data_ptr()), nbytes)

    def upload(self, buffer: _Buffer, host: Any) -> None:
        """Copy the contiguous numpy array ``host`` into ``buffer`` (ordered before later work on the stream)."""
        import numpy as np

        raw = np.ascontiguousarray(host).reshape(-1).view(np.uint8)
        with self.active():
            if self.backend == "pycuda":
                self._cuda.memcpy_htod(buffer.handle, raw)
            else:
                buffer.handle[: raw.size].copy_(self._torch.from_numpy(raw))

    def download(self, buffer: _Buffer, host: Any) -> None:
        """Copy ``buffer`` into the contiguous numpy array ``host`` after the stream's work is done."""
        import numpy as np

        self.synchronize()
        raw = host.reshape(-1).view(np.uint8)
        with self.active():
            if self.backend == "pycuda":
                self._cuda.memcpy_dtoh(raw, buffer.handle)
            else:
                self._torch.from_numpy(raw).copy_(buffer.handle[: raw.size])

    def synchronize(self) -> None:
        with self.active():
            self._stream.synchronize()


def cuda_device(feature: str) -> CudaDevice:
    """A :class:`CudaDevice` on GPU 0: pycuda when installed, else torch.

    Raises:
        TensorRTError: no CUDA GPU is visible to either (the message says what was tried).
    """
    tried = []
    if importlib.util.find_spec("pycuda") is not None:
        try:
            return CudaDevice("pycuda")
        except Exception as e:  # pycuda without a driver/GPU: torch may still have one
            tried.append(f"pycuda: {type(e).__name__}: {e}")
    else:
        tried.append("pycuda: not installed")
    try:
        return CudaDevice("torch")
    except Exception as e:
        tried.append(f"torch: {e}")
    raise TensorRTError(
        f"{feature}: TensorRT needs a CUDA GPU and none is visible ({'; '.join(tried)}); run on a machine with an "
        "NVIDIA GPU and driver (check nvidia-smi and CUDA_VISIBLE_DEVICES)"
    )
