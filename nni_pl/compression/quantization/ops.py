"""Affine quantization arithmetic: ranges, scales and zero points, and the fake-quant op every quantizer uses.

``fake_quant`` is torch's own ``fake_quantize_per_tensor_affine`` / ``fake_quantize_per_channel_affine``: they are
fused kernels on CPU and CUDA, their backward is the clipped straight-through estimator NNI uses by default, and
``torch.onnx`` exports them as ``QuantizeLinear``/``DequantizeLinear`` pairs, so the graph ONNX Runtime and
TensorRT run holds exactly our scales and zero points. ONNX's quantized types are 8-bit, so
:func:`export_fake_quant` writes a narrower range as a clip to that range followed by the 8-bit pair, which
computes the same values.

Example:
    >>> import torch
    >>> from nni_pl.compression.quantization.ops import params_from_range, fake_quant
    >>> p = params_from_range(torch.tensor(-1.0), torch.tensor(1.0), bits=8, dtype="int", scheme="per_tensor_symmetric")
    >>> (p.qmin, p.qmax, int(p.zero_point))
    (-128, 127, 0)
    >>> float(fake_quant(torch.tensor([0.5004]), p)[0]) == round(0.5004 / float(p.scale)) * float(p.scale)
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["QuantParams", "export_fake_quant", "fake_quant", "params_from_range", "qrange"]

_EPS = 1e-8


def qrange(bits: int, dtype: str) -> tuple[int, int]:
    """The integer range of ``bits`` bits: signed ``[-2^(b-1), 2^(b-1)-1]`` or unsigned ``[0, 2^b-1]``."""
    if dtype == "int":
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


@dataclass(frozen=True)
class QuantParams:
    """The affine map of one quantized tensor: ``q = clamp(round(x / scale) + zero_point, qmin, qmax)``.

    Attributes:
        scale: 0-d tensor, or 1-d with one scale per channel along ``axis``.
        zero_point: int32 tensor shaped like ``scale``.
        qmin: smallest integer.
        qmax: largest integer.
        axis: channel axis for per-channel parameters, else ``None``.
        bits: bit width.
        dtype: ``"int"`` or ``"uint"``.
    """

    scale: torch.Tensor
    zero_point: torch.Tensor
    qmin: int
    qmax: int
    axis: int | None
    bits: int
    dtype: str

    def clip_range(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The smallest and largest representable real values."""
        zp = self.zero_point.to(self.scale.dtype)
        return (self.qmin - zp) * self.scale, (self.qmax - zp) * self.scale

    def to(self, device: torch.device | str) -> QuantParams:
        return QuantParams(
            self.scale.to(device),
            self.zero_point.to(device),
            self.qmin,
            self.qmax,
            self.axis,
            self.bits,
            self.dtype,
        )


def params_from_range(
    low: torch.Tensor,
    high: torch.Tensor,
    *,
    bits: int,
    dtype: str,
    scheme: str,
    axis: int | None = None,
) -> QuantParams:
    """Scale and zero point that cover ``[low, high]`` (each widened to include 0, as every scheme must).

    ``low``/``high`` are 0-d for per-tensor schemes, 1-d (one per channel) for per-channel ones. Symmetric
    schemes use a zero point of 0 (signed) or the middle of the range (unsigned); the scale of an all-zero
    tensor is a tiny positive number, never 0.
    """
    qmin, qmax = qrange(bits, dtype)
    low = torch.clamp(low.detach().float(), max=0.0)
    high = torch.clamp(high.detach().float(), min=0.0)
    if scheme.endswith("symmetric"):
        amax = torch.maximum(-low, high)
        scale = torch.clamp(amax / ((qmax - qmin) / 2), min=_EPS)
        zero = 0 if dtype == "int" else (qmin + qmax + 1) // 2
        zero_point = torch.full_like(scale, zero, dtype=torch.int32)
    else:
        scale = torch.clamp((high - low) / (qmax - qmin), min=_EPS)
        zero_point = torch.clamp(qmin - torch.round(low / scale), qmin, qmax).to(torch.int32)
    return QuantParams(
        scale, zero_point, qmin, qmax, axis if scheme.startswith("per_channel") else None, bits, dtype
    )


def _per_channel_view(t: torch.Tensor, x: torch.Tensor, axis: int) -> torch.Tensor:
    shape = [1] * x.dim()
    shape[axis] = -1
    return t.reshape(shape)


def fake_quant(x: torch.Tensor, p: QuantParams) -> torch.Tensor:
    """Quantize and dequantize ``x`` (gradient: straight through inside the range, zero outside)."""
    scale, zero_point = p.scale, p.zero_point
    if scale.device != x.device or scale.dtype != torch.float32:
        scale = scale.to(device=x.device, dtype=torch.float32)
    if zero_point.device != x.device or zero_point.dtype != torch.int32:
        zero_point = zero_point.to(device=x.device, dtype=torch.int32)
    xf = x.float() if x.dtype != torch.float32 else x
    if p.axis is None:
        y = torch.fake_quantize_per_tensor_affine(xf, scale.reshape(1), zero_point.reshape(1), p.qmin, p.qmax)
    else:
        y = torch.fake_quantize_per_channel_affine(xf, scale, zero_point, p.axis, p.qmin, p.qmax)
    return y if y.dtype == x.dtype else y.to(x.dtype)


def export_fake_quant(x: torch.Tensor, p: QuantParams) -> torch.Tensor:
    """:func:`fake_quant` in the form ``torch.onnx`` exports as ``QuantizeLinear``/``DequantizeLinear``.

    ONNX quantizes to 8-bit types only: a narrower range is clipped first, then quantized with the full 8-bit
    range of its sign, which gives the same values (every clipped value maps into ``[qmin, qmax]``).
    """
    qmin8, qmax8 = qrange(8, p.dtype)
    if (p.qmin, p.qmax) == (qmin8, qmax8):
        return fake_quant(x, p)
    if p.bits > 8:
        raise ValueError(
            f"{p.bits}-bit quantization has no ONNX QuantizeLinear type; export it at 8 bits or less"
        )
    low, high = p.clip_range()
    if p.axis is not None:
        low, high = _per_channel_view(low, x, p.axis), _per_channel_view(high, x, p.axis)
    x = torch.minimum(torch.maximum(x, low.to(x.device)), high.to(x.device))
    return fake_quant(x, QuantParams(p.scale, p.zero_point, qmin8, qmax8, p.axis, 8, p.dtype))
